"""Automatic speech recognition (ASR): audio → :class:`~pipeline.types.Transcript`.

The stage takes a small :class:`AsrBackend` protocol so that tests can pass a
fake. Two real backends run the same Whisper weights and are imported
lazily: faster-whisper (CTranslate2, the default) in
:mod:`pipeline.asr.faster_whisper_backend`, and openai-whisper (PyTorch)
in :mod:`pipeline.asr.openai_whisper_backend`, from a checkpoint converted
by :mod:`pipeline.asr.convert`.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from pipeline.settings import AsrSettings, VadSettings
from pipeline.types import Transcript, Word

ProgressHook = Callable[[float], None]


class AsrBackend(Protocol):
    """Anything that turns 16 kHz mono float32 audio into a Transcript."""

    name: str

    def transcribe(self, samples: np.ndarray, *, language: str | None,
                   progress: ProgressHook | None = None) -> Transcript:
        """Transcribe one stretch of audio with word timestamps.

        A backend that also accepts a ``deadline`` keyword (a
        ``time.monotonic()`` value) sets the class attribute
        ``takes_deadline = True``; :func:`transcribe` then passes one
        whenever the ASR time limit is on.

        Parameters
        ----------
        samples : np.ndarray, shape (n_samples,)
            Mono float32 audio at 16 kHz, in [-1, 1].
        language : str or None
            Whisper language code (``'nl'``, ``'en'``); None lets the backend
            detect it.
        progress : callable, optional
            Called with the fraction done in [0, 1].

        Returns
        -------
        Transcript
            Words in time order, times in seconds from the start of ``samples``.
        """
        ...


def load_backend(settings: AsrSettings, *, model_cache_dir, vad_settings: VadSettings | None = None) -> AsrBackend:
    """Build the configured ASR backend (model weights loaded once here).

    Parameters
    ----------
    settings : AsrSettings
    model_cache_dir : Path
        Where the bundled model parts are joined.
    vad_settings : VadSettings, optional
        The pipeline's VAD settings, so Whisper skips exactly the silences the
        VAD stage measures (measured on sample.wav: WER 16.0 % with them
        against 18.5 % with faster-whisper's defaults, and a quiet first word
        after 20 s of room noise is kept).

    Raises
    ------
    BackendUnavailableError
        The backend's package or weights are missing, or the checkpoint
        cannot be converted.
    """
    vad = vad_settings or VadSettings()
    if settings.backend == "openai-whisper":
        from pipeline.asr.model_store import resolve_checkpoint
        from pipeline.asr.openai_whisper_backend import OpenAIWhisperBackend

        checkpoint = resolve_checkpoint(settings.checkpoint, model_dir=settings.model_dir, cache_dir=model_cache_dir)
        return OpenAIWhisperBackend(checkpoint, cpu_threads=settings.cpu_threads, beam_size=settings.beam_size,
                                    vad_parameters=vad.model_dump(), random_seed=settings.random_seed)
    from pipeline.asr.faster_whisper_backend import FasterWhisperBackend
    from pipeline.asr.model_store import resolve_model_dir

    model_dir = resolve_model_dir(settings.model_dir, cache_dir=model_cache_dir)
    return FasterWhisperBackend(model_dir, compute_type=settings.compute_type,
                                cpu_threads=settings.cpu_threads, decoders=settings.decoders,
                                beam_size=settings.beam_size, best_of=settings.best_of,
                                no_repeat_ngram_size=settings.no_repeat_ngram_size,
                                vad_parameters=vad.model_dump(), random_seed=settings.random_seed)


def check_backend(settings: AsrSettings, *, model_cache_dir) -> None:
    """Find the configured backend's weights (a quick check before any work).

    The openai-whisper checkpoint is converted here on first use (about 1 s); one the user gave
    (``settings.checkpoint``) is loaded once, so a PyTorch file of another model is refused here.

    Parameters
    ----------
    settings : AsrSettings
        ``backend``, ``model_dir`` and ``checkpoint`` say which weights to find.
    model_cache_dir : Path
        Where the bundled model parts are joined and converted checkpoints kept.

    Returns
    -------
    None

    Raises
    ------
    BackendUnavailableError
        The weights are missing, damaged or cannot be converted, naming the file.
    """
    from pipeline.asr.model_store import resolve_checkpoint, resolve_model_dir

    if settings.backend == "openai-whisper":
        path = resolve_checkpoint(settings.checkpoint, model_dir=settings.model_dir, cache_dir=model_cache_dir)
        if settings.checkpoint is not None:  # a file the user gave: a PyTorch file of another model passes the above
            from pipeline.asr.openai_whisper_backend import load_checkpoint
            from pipeline.errors import BackendUnavailableError

            try:
                load_checkpoint(path)  # about 1 s for base; the analysis loads it again
            except BackendUnavailableError as exc:
                raise BackendUnavailableError(f"{exc} (ALLIANCE_ASR__CHECKPOINT)") from None
    else:
        resolve_model_dir(settings.model_dir, cache_dir=model_cache_dir)


def transcribe(samples: np.ndarray, sample_rate_hz: int, *, settings: AsrSettings, backend: AsrBackend,
               language: str | None = None, progress: ProgressHook | None = None) -> Transcript:
    """Transcribe a recording with word timestamps.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio in [-1, 1].
    sample_rate_hz : int
        Must be 16000.
    settings : AsrSettings
        ``language`` is used when ``language`` is not given.
    backend : AsrBackend
        The recogniser (faster-whisper in production, a fake in tests).
    language : {'nl', 'en', 'auto'}, optional
        Overrides ``settings.language``; ``auto`` lets Whisper detect it.
    progress : callable, optional
        Called with the fraction done in [0, 1].

    Returns
    -------
    Transcript
        Words in time order, times in seconds from the start of the recording. With a backend that takes a
        deadline (faster-whisper), ASR stops decoding carefully after ``settings.max_s_per_audio_min`` seconds per
        minute of recording; ``limited_spans`` lists what was then decoded quickly.
    """
    if sample_rate_hz != 16000:
        raise ValueError(f"sample_rate_hz must be 16000 for Whisper. Got {sample_rate_hz} instead.")
    import time

    lang = language or settings.language
    budget = time_budget_s(samples.size / 16000.0, settings)
    deadline = None
    if budget is not None and getattr(backend, "takes_deadline", False):
        deadline = time.monotonic() + budget
    if lang == "auto" and hasattr(backend, "language_probabilities"):
        return transcribe_by_stretch(samples, backend=backend, progress=progress, deadline=deadline)
    return transcribe_in_pieces(samples, backend=backend, language=None if lang == "auto" else lang,
                                progress=progress, deadline=deadline)


MIN_BUDGET_S = 60.0


def time_budget_s(duration_s: float, settings: AsrSettings) -> float | None:
    """Seconds ASR may take on a recording before it finishes quickly (:func:`transcribe`).

    ``settings.max_s_per_audio_min`` per minute of recording, but never under a minute: on a short file a busy
    machine's pauses would otherwise use up the time (a 30-s file got 7.5 s).

    Parameters
    ----------
    duration_s : float
        Recording length in seconds.
    settings : AsrSettings

    Returns
    -------
    float or None
        The budget in seconds; None when the limit is switched off (``max_s_per_audio_min`` 0).
    """
    if settings.max_s_per_audio_min <= 0:
        return None
    return max(MIN_BUDGET_S, settings.max_s_per_audio_min * duration_s / 60.0)


PIECE_S = 600.0  # long recordings are transcribed in pieces of about 10 minutes, cut in a silence
PIECE_SEARCH_S = 60.0


def piece_bounds(samples: np.ndarray, *, piece_s: float = PIECE_S,
                 vad_settings: VadSettings | None = None) -> list[tuple[float, float]]:
    """Cut points (s) for transcribing a long recording in pieces of about ``piece_s``.

    Each cut lies in the middle of the longest silence (Silero VAD) within
    ``PIECE_SEARCH_S`` before the nominal boundary (at the boundary itself
    when there is none), so no word is split. A recording shorter than
    1.2 × ``piece_s`` is one piece.

    Returns
    -------
    list of (start_s, end_s)
        Consecutive pieces covering the whole recording.
    """
    duration = samples.size / 16000.0
    if duration <= 1.2 * piece_s:
        return [(0.0, duration)]
    from pipeline.vad import detect_speech

    regions = detect_speech(samples, 16000, settings=vad_settings)
    gaps = [(a.end, b.start) for a, b in zip(regions, regions[1:])]
    cuts, start = [], 0.0
    while duration - start > 1.2 * piece_s:
        nominal = start + piece_s
        near = [(b - a, (a + b) / 2) for a, b in gaps if nominal - PIECE_SEARCH_S <= (a + b) / 2 <= nominal]
        cut = max(near)[1] if near else nominal
        cuts.append(cut)
        start = cut
    edges = [0.0] + cuts + [duration]
    return list(zip(edges[:-1], edges[1:]))


def transcribe_in_pieces(samples: np.ndarray, *, backend, language: str | None,
                         progress: ProgressHook | None = None, deadline: float | None = None) -> Transcript:
    """Transcribe a recording piece by piece (:func:`piece_bounds`) and put the words back on its time line.

    Bounded memory for long sessions: Whisper never holds more than one piece
    (about 10 minutes). Measured with ``bench/long_session_asr.py``.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio at 16 kHz.
    backend : AsrBackend
        The recogniser; called once per piece.
    language : str or None
        Whisper language code for every piece; None lets the backend detect
        it per piece.
    progress : callable, optional
        Called with the fraction done in [0, 1] after each piece (only when
        there is more than one piece, otherwise passed to the backend).
    deadline : float, optional
        A ``time.monotonic()`` value passed to the backend, after which it
        decodes quickly; None gives no limit.

    Returns
    -------
    Transcript
        Words in time order, times in seconds from the start of ``samples``.
        ``language`` is the detected language of the pieces with most
        duration, or ``'unknown'`` when no piece had words and ``language``
        was None. ``limited_spans`` are in seconds of the recording.
    """
    bounds = piece_bounds(samples)
    limit = {} if deadline is None else {"deadline": deadline}
    if len(bounds) == 1:
        return backend.transcribe(samples, language=language, progress=progress, **limit)
    duration = samples.size / 16000.0
    words: list[Word] = []
    limited: list[tuple[float, float]] = []
    found: dict[str, float] = {}
    probability = 0.0
    for a, b in bounds:
        part = backend.transcribe(samples[int(a * 16000):int(b * 16000)], language=language, **limit)
        words += [Word(w.start + a, w.end + a, w.text, w.probability, w.speaker, w.overlap) for w in part.words]
        limited += [(x + a, y + a) for x, y in part.limited_spans]
        if part.words:
            found[part.language] = found.get(part.language, 0.0) + (b - a)
            probability = max(probability, part.language_probability)
        if progress is not None:
            progress(min(1.0, b / duration))
    if not words:
        return Transcript(words=(), language="unknown" if language is None else language, language_probability=0.0,
                          duration_s=duration, limited_spans=tuple(limited))
    return Transcript(words=tuple(words), language=max(found, key=found.get), language_probability=probability,
                      duration_s=duration, limited_spans=tuple(limited))


STRETCH_MAX_S = 30.0  # one Whisper window
STRETCH_JOIN_GAP_S = 2.0
MIN_DECIDING_SPEECH_S = 4.0
AUTO_LANGUAGES = ("nl", "en")


def language_stretches(samples: np.ndarray, *, backend, languages: tuple[str, ...] = AUTO_LANGUAGES,
                       vad_settings: VadSettings | None = None) -> list[tuple[float, float, str, float]]:
    """Decide the language per stretch of speech: ``[(start_s, end_s, language, probability)]``.

    Speech regions (Silero VAD) are joined into stretches of at most 30 s
    (one Whisper window) across pauses under 2 s. Whisper's language
    probabilities are computed for each stretch and restricted to the
    clinic's languages (Dutch and English; renormalised), because on a short
    stretch of Dutch Whisper often answers Afrikaans or German. A stretch with
    less than 4 s of speech is not trusted to decide: it takes the language of
    the stretch before it (or after it, at the start). Consecutive stretches of
    one language are merged.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio at 16 kHz.
    backend
        An ASR backend with ``language_probabilities(samples) -> dict``.
    languages : tuple of str
        Candidate languages.
    vad_settings : VadSettings, optional

    Returns
    -------
    list of (start_s, end_s, language, probability)
        Empty when there is no speech.
    """
    from pipeline.vad import detect_speech

    regions = detect_speech(samples, 16000, settings=vad_settings)
    stretches: list[list[float]] = []
    for r in regions:
        if stretches and r.start - stretches[-1][1] < STRETCH_JOIN_GAP_S and r.end - stretches[-1][0] <= STRETCH_MAX_S:
            stretches[-1][1] = r.end
            stretches[-1][2] += r.end - r.start
        else:
            start = r.start
            while r.end - start > STRETCH_MAX_S:  # one long region: cut into windows
                stretches.append([start, start + STRETCH_MAX_S, STRETCH_MAX_S])
                start += STRETCH_MAX_S
            stretches.append([start, r.end, r.end - start])
    decided: list[tuple[float, float, str | None, float]] = []
    for a, b, speech in stretches:
        if speech < MIN_DECIDING_SPEECH_S:
            decided.append((a, b, None, 0.0))
            continue
        probs = backend.language_probabilities(samples[int(a * 16000):int(b * 16000)])
        total = sum(probs.get(lang, 0.0) for lang in languages)
        if total <= 0:
            decided.append((a, b, None, 0.0))
            continue
        best = max(languages, key=lambda lang: probs.get(lang, 0.0))
        decided.append((a, b, best, probs.get(best, 0.0) / total))
    known = [d[2] for d in decided if d[2] is not None]
    fallback = known[0] if known else languages[0]
    out: list[tuple[float, float, str, float]] = []
    for a, b, lang, p in decided:
        lang = lang or (out[-1][2] if out else fallback)
        if out and out[-1][2] == lang:
            prev = out[-1]
            out[-1] = (prev[0], b, lang, max(prev[3], p))
        else:
            out.append((a, b, lang, p))
    return [(round(a, 3), round(b, 3), lang, round(p, 4)) for a, b, lang, p in out]


def transcribe_by_stretch(samples: np.ndarray, *, backend, progress: ProgressHook | None = None,
                          languages: tuple[str, ...] = AUTO_LANGUAGES, deadline: float | None = None) -> Transcript:
    """Transcribe with the language decided per stretch of speech (see :func:`language_stretches`).

    Each run of stretches in one language is transcribed with that language
    fixed (so Dutch is never transcribed as, or translated into, English), from
    the end of the previous run to the start of the next, and the words are
    put back on the recording's time line.

    Returns
    -------
    Transcript
        ``language`` is the language with most speech; ``language_segments``
        the decided stretches.
    """
    duration = samples.size / 16000.0
    segments = language_stretches(samples, backend=backend, languages=languages)
    if not segments:
        return Transcript(words=(), language="unknown", language_probability=0.0, duration_s=duration)
    words: list[Word] = []
    limited: list[tuple[float, float]] = []
    for i, (a, b, lang, _) in enumerate(segments):
        lo = 0.0 if i == 0 else (segments[i - 1][1] + a) / 2
        hi = duration if i == len(segments) - 1 else (b + segments[i + 1][0]) / 2
        part = transcribe_in_pieces(samples[int(lo * 16000):int(hi * 16000)], backend=backend, language=lang,
                                    deadline=deadline)
        words += [Word(w.start + lo, w.end + lo, w.text, w.probability, w.speaker, w.overlap) for w in part.words]
        limited += [(x + lo, y + lo) for x, y in part.limited_spans]
        if progress is not None:
            progress(min(1.0, hi / duration))
    speech = {}
    for a, b, lang, _ in segments:
        speech[lang] = speech.get(lang, 0.0) + (b - a)
    main = max(speech, key=speech.get)
    prob = max(p for _, _, lang, p in segments if lang == main)
    return Transcript(words=tuple(words), language=main, language_probability=prob, duration_s=duration,
                      language_segments=tuple(segments), limited_spans=tuple(limited))
