"""faster-whisper (CTranslate2) ASR backend.

References
----------
.. [1] Radford, A. et al. (2023). Robust Speech Recognition via Large-Scale
   Weak Supervision. ICML.
.. [2] SYSTRAN faster-whisper: Whisper inference with CTranslate2.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np

from pipeline.errors import BackendUnavailableError
from pipeline.settings import available_cores
from pipeline.types import Transcript, Word

MIN_PART_S = 60.0  # a recording is cut into parts of at least this much speech, so short clips decode in one piece
MAX_DECODERS = 4


def split_chunks(chunks: list[dict], parts: int) -> list[list[dict]]:
    """Group consecutive speech regions into ``parts`` groups of about equal speech.

    Parameters
    ----------
    chunks : list of dict
        Speech regions in time order, ``start`` and ``end`` in samples (as :func:`pipeline.asr.speech_only.speech_chunks` returns them).
    parts : int >= 1
        Groups wanted; fewer come back when there are fewer regions.

    Returns
    -------
    list of list of dict
        Non-empty groups, in time order, together holding every region once.
    """
    lengths = np.array([c["end"] - c["start"] for c in chunks], dtype=float)
    if parts <= 1 or len(chunks) <= 1:
        return [list(chunks)]
    # cut where the running speech total passes k/parts of the whole (each cut between two regions)
    ends = np.cumsum(lengths)
    cuts = sorted({int(np.searchsorted(ends, ends[-1] * k / parts)) + 1 for k in range(1, parts)})
    groups, start = [], 0
    for cut in [*cuts, len(chunks)]:
        cut = min(cut, len(chunks))
        if cut > start:
            groups.append(list(chunks[start:cut]))
            start = cut
    return groups


#: Whisper's temperature fallback (Radford et al. 2022, section 4.5), the same steps as faster-whisper's default
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class TemperaturesUntil(tuple):
    """Whisper's fallback temperatures that stop at a deadline: the first always, each later one only before it.

    faster-whisper walks a window's ``temperature`` tuple one step at a time, decoding again at each while the
    result is too repetitive or too unlikely, and yields nothing until the window is done; a deadline checked per
    yielded segment can be overrun by a window's whole fallback (over 100 s with a large ``best_of``). Given as
    ``temperature``, this tuple ends the fallback of the window in flight at the deadline, and of every window
    after it; faster-whisper then keeps the best result it has (its rule when every step fails).

    Parameters
    ----------
    temperatures : sequence of float
        The steps, first to last.
    deadline : float
        ``time.monotonic()`` after which no step but the first is started.
    """

    def __new__(cls, temperatures, deadline: float):
        self = super().__new__(cls, temperatures)
        self.deadline = deadline
        self.stopped = False  # whether a step was left out
        return self

    def __iter__(self):
        import time

        items = tuple.__iter__(self)
        first = next(items, None)
        if first is None:
            return
        yield first
        for t in items:
            if time.monotonic() > self.deadline:
                self.stopped = True
                return
            yield t


class FasterWhisperBackend:
    """Whisper through faster-whisper, on CPU.

    Decoding takes only the speech the VAD stage finds (:func:`pipeline.asr.speech_only.speech_chunks`, joined as
    faster-whisper's ``vad_filter`` joins its own, times mapped back by its ``restore_speech_timestamps``), so
    long silences produce no text, and word timestamps come from cross-attention alignment
    (``word_timestamps=True``).

    A recording with more than ``2 * MIN_PART_S`` of speech is cut between speech regions into up to
    ``decoders`` parts of about equal speech, decoded at the same time by one single-threaded decoder each (a
    CTranslate2 model of its own, so each part's sampled windows draw from its own random generator: the words do
    not depend on which decoder happened to be free, and a recording analysed twice gives the same words). On the
    2-core machines this project targets, two independent decoders are about three times as fast as one decoder
    with two or four threads, whose threads wait on each other at every layer (measured on 2 minutes of the call:
    7.1 s against 22.2 s). Whisper decodes 30-s windows with ``condition_on_previous_text=False``, so a cut at a
    pause between regions changes what is decoded only at the cut. Parts depend on the number of decoders: set
    ``decoders`` to compare transcripts across machines with other core counts.

    Parameters
    ----------
    model_dir : Path
        Local CTranslate2 model directory.
    compute_type : str
        CTranslate2 compute type (``int8`` by default).
    cpu_threads : int >= 0
        CTranslate2 threads for each decoder; 0 means 1, whatever OMP_NUM_THREADS says. Capped so that all
        decoders together use at most the cores this process may use.
    decoders : int >= 0
        Parts of a recording decoded at once, each by its own CTranslate2 model with one worker (about 110 MB
        resident each for Whisper base in int8); 0 means one per available core, at most 4.
    beam_size : int >= 1
        Beam width.
    best_of : int >= 1
        Samples drawn at each temperature of the fallback (Whisper's own default: 5). With 5, the candidate of
        highest total log-probability was often the shortest: on a simulated Dutch child session 1,029-1,088 words
        of 1,570 and WER 68 %, against 1,420-1,548 words and 57-59 % with 1; on noisy children's English 49-50 %
        either way (``bench/clinic_mix.py`` cases; sampling varies from run to run).
    no_repeat_ngram_size : int >= 0
        No sequence of this many tokens is decoded twice in a window (CTranslate2's ``no_repeat_ngram_size``; 0
        allows repeats). A Whisper loop ("ik weet het niet ik weet het niet ...") fails the compression-ratio check
        and is decoded again at each fallback temperature; blocking the repeat in the first pass keeps most windows
        from falling back (:class:`pipeline.settings.AsrSettings`).
    vad_parameters : dict, optional
        :class:`pipeline.settings.VadSettings` fields (threshold, min_speech_duration_ms, min_silence_duration_ms,
        speech_pad_ms, restart_after_s); its defaults when omitted.
    random_seed : int >= 0
        Seed of CTranslate2's sampling at fallback temperatures. Each recording is decoded on freshly loaded
        models of its own (about 0.35 s each), so its transcript depends neither on what the process decoded
        before, nor on how busy the machine is, nor on recordings decoded at the same time in other threads.

    Raises
    ------
    BackendUnavailableError
        faster-whisper is not installed or the model cannot be loaded.
    """

    name = "faster-whisper"
    takes_deadline = True  # see :func:`pipeline.asr.transcribe`
    #: decoding counts for this process, over every instance (benchmarks read them): ``segments`` decoded,
    #: ``fallback_segments`` that needed a temperature above 0 (each such one decoded two or more times),
    #: ``parts`` decoded and ``quick_parts`` finished greedily after the time limit
    decoding_counts: Counter = Counter()
    _counts_lock = threading.Lock()

    def __init__(self, model_dir: Path, *, compute_type: str = "int8", cpu_threads: int = 0, decoders: int = 0,
                 beam_size: int = 5, best_of: int = 1, no_repeat_ngram_size: int = 0,
                 vad_parameters: dict | None = None, random_seed: int = 0) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:  # pragma: no cover - faster-whisper is a core dependency
            raise BackendUnavailableError("faster-whisper is not installed; run `make install`") from exc
        self.model_dir = Path(model_dir)
        self.beam_size = beam_size
        self.best_of = best_of
        self.no_repeat_ngram_size = no_repeat_ngram_size
        self.random_seed = random_seed
        self.vad_parameters = dict(vad_parameters or {})
        # the thread count is always given: left at 0, CTranslate2 takes OMP_NUM_THREADS, which Dask sets to 1 in
        # its workers, and int8 decoding with another thread count can choose other words (the Dask run and the
        # threaded run of one batch must give the same transcript)
        self.decoders = max(1, min(decoders or available_cores(), MAX_DECODERS))
        # the decoders' threads together at most the cores (64 threads on 2 cores took a 3-minute file 4 times longer)
        self.cpu_threads = max(1, min(cpu_threads or 1, available_cores() // self.decoders))
        self.compute_type = compute_type
        self._model_lock = threading.Lock()
        # models not yet used for decoding (one is loaded here, so a bad model folder fails at once). Each call of
        # transcribe takes models of its own, one per part, each with a single worker thread: with one model of
        # several workers, a part's next window went to whichever worker was free, whose random generator had
        # drawn for the other part (a 6-minute session analysed twice differed in 83 of 1,320 window-marker
        # values), and sessions transcribed at once in threads (the nightly run) must not share generators either
        self._unused = [self._load()]

    def _load(self):
        """A fresh CTranslate2 model with one worker, its random generator seeded with ``random_seed``.

        CTranslate2 seeds each decoding thread's generator once, when it first samples, so a fresh model (a fresh
        thread) is what makes a recording's sampled windows independent of the recordings decoded before.
        """
        import ctranslate2
        from faster_whisper import WhisperModel

        ctranslate2.set_random_seed(self.random_seed)
        try:
            return WhisperModel(str(self.model_dir), device="cpu", compute_type=self.compute_type,
                                cpu_threads=self.cpu_threads, num_workers=1, local_files_only=True)
        except (RuntimeError, ValueError, OSError) as exc:
            raise BackendUnavailableError(f"{self.model_dir}: cannot load the Whisper model ({exc})") from exc

    def language_probabilities(self, samples: np.ndarray) -> dict[str, float]:
        """Whisper's language probabilities for a stretch of audio (its first 30 s), summing to 1."""
        with self._model_lock:  # language detection decodes greedily, so the model stays unused for sampling
            if not self._unused:
                self._unused.append(self._load())
            model = self._unused[0]
        _, _, probs = model.detect_language(np.asarray(samples, dtype=np.float32))
        return {str(lang): float(p) for lang, p in probs}

    def transcribe(self, samples: np.ndarray, *, language: str | None, progress=None,
                   deadline: float | None = None) -> Transcript:
        """Transcribe with word timestamps.

        Parameters
        ----------
        samples : np.ndarray, shape (n_samples,)
            Mono float32 audio at 16 kHz.
        language : str or None
            Whisper language code; None detects it on the first 30 s of speech.
        progress : callable, optional
            Called with the fraction done in [0, 1], from this thread only.
        deadline : float, optional
            ``time.monotonic()`` after which each part finishes quickly: the rest of it is decoded with beam 1 and
            no temperature fallback (a recording Whisper finds unlikely otherwise re-decodes window after window).

        Returns
        -------
        Transcript
            ``limited_spans`` holds the stretches decoded quickly, in seconds of ``samples``.
        """
        import time

        from faster_whisper.transcribe import SpeechTimestampsMap, restore_speech_timestamps

        from pipeline.asr.speech_only import speech_chunks

        duration = samples.size / 16000.0
        chunks = speech_chunks(samples, self.vad_parameters)
        if not chunks:
            if progress is not None:
                progress(1.0)
            return Transcript(words=(), language=language or "unknown", language_probability=0.0,
                              duration_s=duration)
        speech_s = sum(c["end"] - c["start"] for c in chunks) / 16000.0
        groups = split_chunks(chunks, min(self.decoders, max(1, int(speech_s // MIN_PART_S))))
        # fresh models for this call only, part i always on model i (about 0.35 s to load each): any decoding may
        # sample (fallback temperatures), also one that fails or is cut short half-way, so no model decodes twice
        # (the suite saw a test's words change after others)
        with self._model_lock:
            models, self._unused = self._unused[: len(groups)], self._unused[len(groups):]
        models += [self._load() for _ in range(len(groups) - len(models))]
        decode_language, language_probability = language, 1.0
        if language is None:  # one language for every part: Whisper's guess on the first 30 s of speech
            first = np.concatenate([samples[c["start"]:c["end"]] for c in groups[0]][:64])
            decode_language, language_probability, _ = models[0].detect_language(first)
        done = [0.0] * len(groups)  # speech seconds decoded per part, written by the decoding threads

        def decode_part(i: int, report=None) -> tuple[list[Word], list[tuple[float, float]]]:
            part = np.concatenate([samples[c["start"]:c["end"]] for c in groups[i]])
            part_s = part.size / 16000.0
            temperatures = TEMPERATURES if deadline is None else TemperaturesUntil(TEMPERATURES, deadline)
            segments, _ = models[i].transcribe(
                part, language=decode_language, beam_size=self.beam_size, best_of=self.best_of, vad_filter=False,
                word_timestamps=True, condition_on_previous_text=False, no_repeat_ngram_size=self.no_repeat_ngram_size,
                temperature=temperatures)
            decoded, cut, late = [], None, None
            fallback = 0
            for seg in segments:
                decoded.append(seg)
                fallback += int((seg.temperature or 0.0) > 0.0)
                done[i] = min(seg.end, part_s)
                if report is not None:
                    report()
                if late is None and isinstance(temperatures, TemperaturesUntil) and temperatures.stopped:
                    late = seg.start  # its window (or one before it, without words) was decoded without fallback
                if deadline is not None and time.monotonic() > deadline and seg.end < part_s - 1.0:
                    cut = seg.end
                    break
            limited = []
            if late is not None or cut is not None:
                timeline = SpeechTimestampsMap(groups[i], 16000)
                first = min(t for t in (late, cut) if t is not None)
                limited.append((timeline.get_original_time(first), groups[i][-1]["end"] / 16000.0))
            if cut is not None:  # the rest quickly: greedy, one temperature, no fallback
                quick, _ = models[i].transcribe(
                    part[int(cut * 16000):], language=decode_language, beam_size=1, best_of=1, temperature=0.0,
                    vad_filter=False, word_timestamps=True, condition_on_previous_text=False,
                    no_repeat_ngram_size=self.no_repeat_ngram_size)
                for seg in quick:
                    seg.start, seg.end = seg.start + cut, seg.end + cut
                    for w in seg.words or ():
                        w.start, w.end = w.start + cut, w.end + cut
                    decoded.append(seg)
                done[i] = part_s
            with self._counts_lock:
                self.decoding_counts.update(segments=len(decoded), fallback_segments=fallback, parts=1,
                                            quick_parts=int(cut is not None))
            out: list[Word] = []
            for seg in restore_speech_timestamps(decoded, groups[i], 16000):
                for w in seg.words or ():
                    text = w.word.strip()
                    if text:
                        out.append(Word(float(w.start), float(w.end), text, float(w.probability)))
            return out, limited

        def report() -> None:
            if progress is not None:
                progress(min(1.0, sum(done) / speech_s))

        if len(groups) == 1:
            results = [decode_part(0, report)]
        else:
            with ThreadPoolExecutor(len(groups), thread_name_prefix="whisper-part") as pool:
                futures = [pool.submit(decode_part, i) for i in range(len(groups))]
                pending = set(futures)
                while pending:  # progress is reported from this thread only (the flow's hook is not thread-safe)
                    _, pending = wait(pending, timeout=2.0)
                    report()
                results = [f.result() for f in futures]
        words = [w for part_words, _ in results for w in part_words]
        limited = tuple(span for _, spans in results for span in spans)
        if progress is not None:
            progress(1.0)
        if not words and language is None:
            # nothing was said: Whisper's guess on silence or noise is not a language
            return Transcript(words=(), language="unknown", language_probability=0.0, duration_s=duration)
        return Transcript(words=tuple(words), language=decode_language,
                          language_probability=float(language_probability), duration_s=duration,
                          limited_spans=limited)
