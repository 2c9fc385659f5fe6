"""openai-whisper (PyTorch) ASR backend, from a local ``.pt`` checkpoint.

The reference implementation of Whisper, kept as the alternative to
faster-whisper: the same model, in float32 PyTorch on CPU. Audio is passed as
a float32 16 kHz numpy array, so openai-whisper never calls ffmpeg. Silences
are skipped as in the faster-whisper backend (the VAD stage's regions, joined,
word times mapped back: :mod:`pipeline.asr.speech_only`), so the two backends
decode the same audio.

References
----------
.. [1] Radford, A. et al. (2023). Robust Speech Recognition via Large-Scale
   Weak Supervision. ICML.
.. [2] openai/whisper: the reference PyTorch implementation.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from pipeline.errors import BackendUnavailableError, not_a_file
from pipeline.types import Transcript, Word


def load_checkpoint(path: Path):
    """Build an openai-whisper model from a checkpoint written by :func:`pipeline.asr.convert.convert_model`
    (or one of openai-whisper's own ``.pt`` files).

    Parameters
    ----------
    path : Path
        The ``.pt`` checkpoint.

    Returns
    -------
    whisper.model.Whisper
        In evaluation mode, float32, on CPU.

    Raises
    ------
    BackendUnavailableError
        openai-whisper is not installed, or the checkpoint is missing or unreadable.
    """
    try:
        import torch
        from whisper.model import ModelDimensions, Whisper
    except ImportError as exc:
        raise BackendUnavailableError("openai-whisper is not installed; run `make install`") from exc
    path = Path(path)
    check_checkpoint_file(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(checkpoint, dict) or not {"dims", "model_state_dict"} <= set(checkpoint):
            raise ValueError("it holds no 'dims' and 'model_state_dict'")
        model = Whisper(ModelDimensions(**checkpoint["dims"]))
        model.load_state_dict(checkpoint["model_state_dict"])
        heads = checkpoint.get("alignment_heads")
        if heads:
            model.set_alignment_heads(heads.encode("ascii") if isinstance(heads, str) else heads)
    except Exception as exc:  # torch.load and unpickling raise many kinds; all mean the same here
        raise BackendUnavailableError(f"{path}: not a usable openai-whisper checkpoint "
                                      f"({exc.__class__.__name__}: {str(exc)[:200]}); convert it again with "
                                      "`alliance convert-model`") from exc
    return model.float().eval()


def check_checkpoint_file(path: Path) -> None:
    """Cheap checks before loading: the file exists, is not empty and is a PyTorch (zip) checkpoint.

    Only the first 4 bytes are read: ``torch.save`` writes a zip archive,
    which starts with ``PK\\x03\\x04``.

    Parameters
    ----------
    path : Path
        The ``.pt`` checkpoint.

    Returns
    -------
    None

    Raises
    ------
    BackendUnavailableError
        Naming the file and the problem.
    """
    path = Path(path)
    setting = "ALLIANCE_ASR__CHECKPOINT"
    kind = not_a_file(path)
    if kind is not None:
        what = {"a folder": "is a folder, not a .pt file", "missing": "not found"}.get(
            kind, f"is not a regular file ({kind})")
        raise BackendUnavailableError(f"{path}: openai-whisper checkpoint {what}; run `alliance convert-model` "
                                      f"or fix {setting}")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise BackendUnavailableError(f"{path}: cannot read the checkpoint ({exc.strerror}) ({setting})") from exc
    if not head:
        raise BackendUnavailableError(f"{path}: the checkpoint file is empty; convert it again with "
                                      f"`alliance convert-model` ({setting})")
    if head != b"PK\x03\x04":  # torch.save writes a zip archive
        raise BackendUnavailableError(f"{path}: not a PyTorch checkpoint (torch.save writes a zip archive); "
                                      f"convert it again with `alliance convert-model` ({setting})")


class OpenAIWhisperBackend:
    """Whisper through openai-whisper, float32 on CPU.

    Decoding options match :class:`~pipeline.asr.faster_whisper_backend.FasterWhisperBackend`:
    beam search of ``beam_size`` (best of 5 when sampling at a fallback
    temperature), temperature fallback 0.0–1.0, no conditioning on the
    previous window, word timestamps from cross-attention alignment.

    Parameters
    ----------
    checkpoint : Path
        Local ``.pt`` checkpoint.
    cpu_threads : int >= 0
        PyTorch intra-op threads (a process-wide setting); 0 leaves PyTorch's default.
    beam_size : int >= 1
        Beam width.
    vad_parameters : dict, optional
        Silero VAD options, as for faster-whisper's ``vad_filter``.
    random_seed : int >= 0
        Seed of PyTorch's generator for the sampling at fallback temperatures, set before each recording.

    Raises
    ------
    BackendUnavailableError
        See :func:`load_checkpoint`.
    """

    name = "openai-whisper"

    def __init__(self, checkpoint: Path, *, cpu_threads: int = 0, beam_size: int = 5,
                 vad_parameters: dict | None = None, random_seed: int = 0) -> None:
        import torch

        if cpu_threads > 0:
            from pipeline.settings import available_cores

            torch.set_num_threads(min(cpu_threads, available_cores()))  # more only compete for the cores
        self.checkpoint = Path(checkpoint)
        self.beam_size = beam_size
        self.random_seed = random_seed
        self.vad_parameters = dict(vad_parameters or {})
        self._model = load_checkpoint(self.checkpoint)
        # openai-whisper decodes by installing forward hooks on the shared model (key/value cache, and the
        # cross-attention capture for word timing), so two threads must never decode with it at once
        self._lock = threading.Lock()

    def language_probabilities(self, samples: np.ndarray) -> dict[str, float]:
        """Whisper's language probabilities for a stretch of audio (its first 30 s), summing to 1."""
        import torch
        import whisper

        audio = whisper.pad_or_trim(np.asarray(samples, dtype=np.float32))
        mel = whisper.log_mel_spectrogram(torch.from_numpy(audio), n_mels=self._model.dims.n_mels)
        with self._lock, torch.no_grad():
            _, probs = whisper.detect_language(self._model, mel)
        return {str(lang): float(p) for lang, p in probs.items()}

    def _speech_only(self, samples: np.ndarray):
        from faster_whisper.vad import SpeechTimestampsMap

        from pipeline.asr.speech_only import speech_only

        speech, chunks = speech_only(samples, self.vad_parameters)
        return speech, (SpeechTimestampsMap(chunks, 16000) if chunks else None)

    def transcribe(self, samples: np.ndarray, *, language: str | None, progress=None) -> Transcript:
        """Transcribe 16 kHz mono float32 audio (shape (n_samples,)) with word timestamps in seconds.

        ``language`` None detects it on the speech (first 30 s), as faster-whisper does.
        """
        import torch
        import whisper

        samples = np.asarray(samples, dtype=np.float32)
        duration = samples.size / 16000.0
        speech, ts_map = self._speech_only(samples)
        if ts_map is None or speech.size == 0:
            if progress is not None:
                progress(1.0)
            return Transcript(words=(), language=language or "unknown", language_probability=0.0,
                              duration_s=duration)
        probability, detected = 1.0, language is None
        if detected:
            probs = self.language_probabilities(speech)
            language = max(probs, key=probs.get)
            probability = probs[language]
        with self._lock, torch.no_grad():
            torch.manual_seed(self.random_seed)  # the sampling at fallback temperatures starts afresh
            result = whisper.transcribe(
                self._model, speech, language=language, task="transcribe", beam_size=self.beam_size, best_of=5,
                patience=1.0, temperature=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0), compression_ratio_threshold=2.4,
                logprob_threshold=-1.0, no_speech_threshold=0.6, condition_on_previous_text=False,
                word_timestamps=True, fp16=False, verbose=None)
        words: list[Word] = []
        for seg in result["segments"]:
            for w in seg.get("words") or ():
                text = w["word"].strip()
                if not text:
                    continue
                chunk = ts_map.get_chunk_index((w["start"] + w["end"]) / 2)
                words.append(Word(float(ts_map.get_original_time(w["start"], chunk)),
                                  float(ts_map.get_original_time(w["end"], chunk)), text, float(w["probability"])))
        if progress is not None:
            progress(1.0)
        if not words and detected:  # nothing was said: a guess on noise is not a language
            return Transcript(words=(), language="unknown", language_probability=0.0, duration_s=duration)
        return Transcript(words=tuple(words), language=language, language_probability=float(probability),
                          duration_s=duration)
