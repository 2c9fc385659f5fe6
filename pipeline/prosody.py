"""Prosody per speaker turn: F0 and intensity.

References
----------
.. [1] Mauch, M., Dixon, S. (2014). pYIN: A fundamental frequency estimator
   using probabilistic threshold distributions. ICASSP, 659–663.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from pipeline.settings import FeatureSettings
from pipeline.types import SpeakerTurn, TurnProsody


def f0_track(samples: np.ndarray, sample_rate_hz: int, *, fmin_hz: float, fmax_hz: float,
             hop_s: float, resolution_st: float = 0.1) -> np.ndarray:
    """Fundamental frequency (F0) with pYIN [1]_, NaN where unvoiced.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio in [-1, 1].
    sample_rate_hz : int > 0
        Sample rate in Hz.
    fmin_hz, fmax_hz : float > 0
        Search range in Hz (``fmin_hz < fmax_hz``).
    hop_s : float > 0
        Frame hop in seconds (20 ms by default: half the cost of 10 ms).
    resolution_st : float in (0, 1]
        Pitch grid of pYIN's Viterbi decoding, in semitones (librosa's
        default is 0.1; 0.25 runs about 6 times faster).

    Returns
    -------
    np.ndarray, shape (n_frames,)
        F0 in Hz per frame, NaN for unvoiced frames.
    """
    import librosa

    hop = max(1, int(round(hop_s * sample_rate_hz)))
    frame_length = 1024 if sample_rate_hz <= 16000 else 2048
    if samples.size < frame_length:
        return np.full(0, np.nan)
    f0, voiced, _ = librosa.pyin(np.asarray(samples, dtype=np.float32), fmin=fmin_hz, fmax=fmax_hz,
                                 sr=sample_rate_hz, frame_length=frame_length, hop_length=hop, center=False,
                                 resolution=resolution_st)
    return np.where(voiced, f0, np.nan)


def intensity_db(samples: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale (dBFS).

    A full-scale sine reads -3.01 dB; digital silence reads -inf (returned as -120 dB).

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono audio in [-1, 1].
    """
    if samples.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20.0 * math.log10(rms) if rms > 1e-6 else -120.0


def turn_prosody(samples: np.ndarray, sample_rate_hz: int, turns: Sequence[SpeakerTurn], *,
                 settings: FeatureSettings, processes: int | None = None) -> tuple[TurnProsody, ...]:
    """F0 median and range, intensity and voicing per speaker turn.

    pYIN runs only on the audio of each turn, so silence costs nothing. pYIN
    holds Python's global interpreter lock for most of its time (a loop over
    frames), so threads do not share the work; with ``processes`` of 2 or
    more, helper processes take turns from the same list while this process
    works through it from the other end (a fresh interpreter each, started
    for this call and stopped after it). Each turn's figures do not depend on
    where they were computed. Where no helper can be started (a daemonic
    worker process, no ``spawn`` support), every turn is done here.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio.
    sample_rate_hz : int > 0
        Sample rate in Hz.
    turns : sequence of SpeakerTurn
        Turns in seconds.
    settings : FeatureSettings
        pYIN range (Hz) and hop (s); ``prosody_processes`` when ``processes``
        is not given.
    processes : int >= 1, optional
        Processes that share the turns, this one included (1: this one only).

    Returns
    -------
    tuple of TurnProsody
        One per turn: ``f0_median_hz``, ``f0_range_st`` (5th to 95th
        percentile in semitones), ``intensity_db`` (dBFS) and the voiced
        fraction of frames in [0, 1].
    """
    processes = settings.prosody_processes if processes is None else processes
    if processes < 1:
        raise ValueError(f"processes must be >= 1. Got {processes} instead.")
    segments = [samples[int(t.start * sample_rate_hz): int(t.end * sample_rate_hz)] for t in turns]
    pitch = (settings.pitch_fmin_hz, settings.pitch_fmax_hz, settings.pitch_hop_s, settings.pitch_resolution_st)
    chunks = _chunks(segments, sample_rate_hz)
    if processes > 1 and len(chunks) > 1:
        figures, _ = _shared_out(chunks, segments, sample_rate_hz, pitch, helpers=processes - 1)
    else:
        figures = [f for idx in chunks for f in _segments_prosody([segments[i] for i in idx], sample_rate_hz, pitch)]
    return tuple(TurnProsody(t.start, t.end, t.speaker, *f) for t, f in zip(turns, figures))


#: Pieces a session's turns are cut into for sharing (each about the same length of audio), and the least audio
#: worth starting a helper process for (starting one costs about 1 s of the idle core).
SHARE_PIECES = 24
SHARE_MIN_AUDIO_S = 30.0


def _chunks(segments: list[np.ndarray], sample_rate_hz: int) -> list[list[int]]:
    """Consecutive turn indices cut into about :data:`SHARE_PIECES` runs of similar audio length."""
    sizes = np.array([s.size for s in segments], dtype=np.float64)
    total = float(sizes.sum())
    if total < SHARE_MIN_AUDIO_S * sample_rate_hz or len(segments) < 2:
        return [list(range(len(segments)))]
    edges = np.searchsorted(np.cumsum(sizes), total * np.arange(1, SHARE_PIECES) / SHARE_PIECES, side="left") + 1
    bounds = [0, *sorted(set(int(e) for e in edges if 0 < e < len(segments))), len(segments)]
    return [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]


def _segments_prosody(segments: Sequence[np.ndarray], sample_rate_hz: int,
                      pitch: tuple[float, float, float, float]) -> list[tuple[float, float, float, float]]:
    """``(f0_median_hz, f0_range_st, intensity_db, voiced_fraction)`` of each segment (run in helpers too)."""
    fmin, fmax, hop, resolution = pitch
    out = []
    for seg in segments:
        f0 = f0_track(seg, sample_rate_hz, fmin_hz=fmin, fmax_hz=fmax, hop_s=hop, resolution_st=resolution)
        voiced = f0[np.isfinite(f0)]
        if voiced.size >= 3:
            lo, hi = np.percentile(voiced, [5, 95])
            median, rng = float(np.median(voiced)), float(12.0 * np.log2(hi / lo))
        else:
            median, rng = math.nan, math.nan
        out.append((median, rng, intensity_db(seg), float(voiced.size / f0.size) if f0.size else 0.0))
    return out


def _shared_out(chunks: list[list[int]], segments: list[np.ndarray], sample_rate_hz: int,
                pitch: tuple[float, float, float, float], *, helpers: int) -> tuple[list[tuple], int]:
    """The figures of every segment, and how many chunks helpers did (they take chunks from the front, this process
    from the back)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    done: list[list | None] = [None] * len(chunks)
    futures, local = [], 0
    pool = None
    if not multiprocessing.current_process().daemon:  # a daemonic process (a worker pool's) may not start helpers
        try:
            # spawn: a fresh interpreter, none of the analysis' threads and locks (CTranslate2, torch) copied
            pool = ProcessPoolExecutor(helpers, mp_context=multiprocessing.get_context("spawn"))
        except Exception:  # noqa: BLE001 - no helper here (no semaphores, no spawn): all turns in this process
            pool = None
    if pool is not None:
        with pool:
            try:
                futures = [pool.submit(_segments_prosody, [segments[i] for i in idx], sample_rate_hz, pitch)
                           for idx in chunks]
            except Exception:  # noqa: BLE001 - the pool could not take work: what it did not take is done here
                pass
            for j in reversed(range(len(chunks))):
                if j < len(futures) and not futures[j].cancel():
                    break  # the helpers have it: they reached this process from the front
                done[j] = _segments_prosody([segments[i] for i in chunks[j]], sample_rate_hz, pitch)
                local += 1
            for j, future in enumerate(futures):
                if done[j] is None:
                    try:
                        done[j] = future.result()
                    except Exception:  # noqa: BLE001 - a helper died (killed, out of memory): redo it here
                        done[j] = None
    by_helpers = sum(d is not None for d in done) - local
    for j, idx in enumerate(chunks):
        if done[j] is None:
            done[j] = _segments_prosody([segments[i] for i in idx], sample_rate_hz, pitch)
    return [f for part in done for f in part], by_helpers
