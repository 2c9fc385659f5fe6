"""Voice activity detection (VAD) with Silero.

The Silero VAD v6 ONNX weights ship inside the faster-whisper wheel, so
nothing is downloaded.

References
----------
.. [1] Silero Team (2024). Silero VAD: pre-trained enterprise-grade Voice
   Activity Detector. https://github.com/snakers4/silero-vad
"""

from __future__ import annotations

import numpy as np

from pipeline.settings import VadSettings
from pipeline.types import SpeechRegion


def detect_speech(samples: np.ndarray, sample_rate_hz: int, *,
                  settings: VadSettings | None = None) -> tuple[SpeechRegion, ...]:
    """Find speech regions with Silero VAD [1]_.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio in [-1, 1].
    sample_rate_hz : int
        Must be 16000 (Silero's rate here).
    settings : VadSettings, optional
        Speech probability threshold and minimum speech/silence durations (ms).

    Returns
    -------
    tuple of SpeechRegion
        Non-overlapping regions in time order, times in seconds.

    Raises
    ------
    ValueError
        If ``sample_rate_hz`` is not 16000.
    """
    if sample_rate_hz != 16000:
        raise ValueError(f"sample_rate_hz must be 16000 for Silero VAD. Got {sample_rate_hz} instead.")
    settings = settings or VadSettings()
    if samples.size == 0:
        return ()
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(
        threshold=settings.threshold,
        min_speech_duration_ms=settings.min_speech_duration_ms,
        min_silence_duration_ms=settings.min_silence_duration_ms,
        speech_pad_ms=settings.speech_pad_ms,
    )
    stamps = get_speech_timestamps(np.asarray(samples, dtype=np.float32), options, sampling_rate=sample_rate_hz)
    return tuple(SpeechRegion(s["start"] / sample_rate_hz, s["end"] / sample_rate_hz) for s in stamps)


def speech_mask(regions: tuple[SpeechRegion, ...], n_frames: int, frame_s: float) -> np.ndarray:
    """Boolean speech mask on a regular frame grid.

    Parameters
    ----------
    regions : tuple of SpeechRegion
        Speech regions in seconds.
    n_frames : int >= 0
        Number of frames in the grid.
    frame_s : float > 0
        Frame period in seconds.

    Returns
    -------
    np.ndarray, shape (n_frames,), dtype bool
        True where the frame lies inside a region.
    """
    mask = np.zeros(n_frames, dtype=bool)
    for r in regions:
        mask[int(round(r.start / frame_s)): int(round(r.end / frame_s))] = True
    return mask


def fine_pauses(samples: np.ndarray, sample_rate_hz: int, *, threshold: float = 0.5,
                min_silence_ms: int = 100) -> list[tuple[float, float]]:
    """Short silences between speech, from a Silero pass with no padding (for gaps at speaker changes).

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio at 16 kHz.
    sample_rate_hz : int
        16000.
    threshold : float in (0, 1)
        Speech probability threshold.
    min_silence_ms : int
        Shortest silence kept, in ms.

    Returns
    -------
    list of (start_s, end_s)
        Silences between consecutive speech regions, in seconds.
    """
    fine = detect_speech(samples, sample_rate_hz, settings=VadSettings(
        threshold=threshold, min_speech_duration_ms=50, min_silence_duration_ms=min_silence_ms, speech_pad_ms=0))
    return [(a.end, b.start) for a, b in zip(fine, fine[1:]) if b.start > a.end]
