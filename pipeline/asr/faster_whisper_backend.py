"""faster-whisper (CTranslate2) ASR backend.

References
----------
.. [1] Radford, A. et al. (2023). Robust Speech Recognition via Large-Scale
   Weak Supervision. ICML.
.. [2] SYSTRAN faster-whisper: Whisper inference with CTranslate2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import BackendUnavailableError
from pipeline.types import Transcript, Word

DEFAULT_CPU_THREADS = 4  # faster-whisper's documented default for cpu_threads=0


class FasterWhisperBackend:
    """Whisper through faster-whisper, on CPU.

    Decoding takes only the speech the VAD stage finds (:mod:`pipeline.asr.speech_only`, joined as
    faster-whisper's ``vad_filter`` joins its own, times mapped back by its ``restore_speech_timestamps``), so
    long silences produce no text, and word timestamps come from cross-attention alignment
    (``word_timestamps=True``).

    Parameters
    ----------
    model_dir : Path
        Local CTranslate2 model directory.
    compute_type : str
        CTranslate2 compute type (``int8`` by default).
    cpu_threads : int >= 0
        Threads; 0 means 4 (faster-whisper's default), whatever OMP_NUM_THREADS says.
    beam_size : int >= 1
        Beam width.
    vad_parameters : dict, optional
        :class:`pipeline.settings.VadSettings` fields (threshold, min_speech_duration_ms, min_silence_duration_ms,
        speech_pad_ms, restart_after_s); its defaults when omitted.

    Raises
    ------
    BackendUnavailableError
        faster-whisper is not installed or the model cannot be loaded.
    """

    name = "faster-whisper"

    def __init__(self, model_dir: Path, *, compute_type: str = "int8", cpu_threads: int = 0,
                 beam_size: int = 5, vad_parameters: dict | None = None) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:  # pragma: no cover - faster-whisper is a core dependency
            raise BackendUnavailableError("faster-whisper is not installed; run `make install`") from exc
        self.model_dir = Path(model_dir)
        self.beam_size = beam_size
        self.vad_parameters = dict(vad_parameters or {})
        # 0 means faster-whisper's own default of 4 threads, given explicitly: left at 0, CTranslate2 takes
        # OMP_NUM_THREADS instead, which Dask sets to 1 in its workers, and int8 decoding with another thread count
        # can choose other words (the Dask run and the threaded run of one batch must give the same transcript)
        threads = cpu_threads or DEFAULT_CPU_THREADS
        try:
            self._model = WhisperModel(str(self.model_dir), device="cpu", compute_type=compute_type,
                                       cpu_threads=threads, local_files_only=True)
        except (RuntimeError, ValueError, OSError) as exc:
            raise BackendUnavailableError(f"{self.model_dir}: cannot load the Whisper model ({exc})") from exc

    def language_probabilities(self, samples: np.ndarray) -> dict[str, float]:
        """Whisper's language probabilities for a stretch of audio (its first 30 s), summing to 1."""
        _, _, probs = self._model.detect_language(np.asarray(samples, dtype=np.float32))
        return {str(lang): float(p) for lang, p in probs}

    def transcribe(self, samples: np.ndarray, *, language: str | None, progress=None) -> Transcript:
        from faster_whisper.transcribe import restore_speech_timestamps

        from pipeline.asr.speech_only import speech_only

        duration = samples.size / 16000.0
        speech, chunks = speech_only(samples, self.vad_parameters)
        if not chunks:
            if progress is not None:
                progress(1.0)
            return Transcript(words=(), language=language or "unknown", language_probability=0.0,
                              duration_s=duration)
        segments, info = self._model.transcribe(
            speech, language=language, beam_size=self.beam_size, vad_filter=False, word_timestamps=True,
            condition_on_previous_text=False)
        segments = restore_speech_timestamps(segments, chunks, 16000)
        words: list[Word] = []
        for seg in segments:
            for w in seg.words or ():
                text = w.word.strip()
                if text:
                    words.append(Word(float(w.start), float(w.end), text, float(w.probability)))
            if progress is not None and duration > 0:
                progress(min(1.0, seg.end / duration))
        if progress is not None:
            progress(1.0)
        if not words and language is None:
            # nothing was said: Whisper's guess on silence or noise is not a language
            return Transcript(words=(), language="unknown", language_probability=0.0, duration_s=duration)
        return Transcript(words=tuple(words), language=info.language,
                          language_probability=float(info.language_probability), duration_s=duration)
