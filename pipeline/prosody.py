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
                 settings: FeatureSettings) -> tuple[TurnProsody, ...]:
    """F0 median and range, intensity and voicing per speaker turn.

    pYIN runs only on the audio of each turn, so silence costs nothing.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio.
    sample_rate_hz : int > 0
        Sample rate in Hz.
    turns : sequence of SpeakerTurn
        Turns in seconds.
    settings : FeatureSettings
        pYIN range (Hz) and hop (s).

    Returns
    -------
    tuple of TurnProsody
        One per turn: ``f0_median_hz``, ``f0_range_st`` (5th to 95th
        percentile in semitones), ``intensity_db`` (dBFS) and the voiced
        fraction of frames in [0, 1].
    """
    out = []
    for t in turns:
        seg = samples[int(t.start * sample_rate_hz): int(t.end * sample_rate_hz)]
        f0 = f0_track(seg, sample_rate_hz, fmin_hz=settings.pitch_fmin_hz, fmax_hz=settings.pitch_fmax_hz,
                      hop_s=settings.pitch_hop_s, resolution_st=settings.pitch_resolution_st)
        voiced = f0[np.isfinite(f0)]
        if voiced.size >= 3:
            lo, hi = np.percentile(voiced, [5, 95])
            median, rng = float(np.median(voiced)), float(12.0 * np.log2(hi / lo))
        else:
            median, rng = math.nan, math.nan
        out.append(TurnProsody(t.start, t.end, t.speaker, median, rng, intensity_db(seg),
                               float(voiced.size / f0.size) if f0.size else 0.0))
    return tuple(out)
