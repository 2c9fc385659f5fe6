"""Flagged moments as audio clips, cut on request from a recording the clinic still retains (never copied).

The nightly run moves each analysed recording to ``<inbox>/done/`` and keeps it for
``ALLIANCE_AUDIO_RETENTION_DAYS``; the database holds its name and sha256, which identify it there.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pipeline.settings import AudioSettings

CLIP_PAD_S = 1.0  # a flag's clip starts this much before the flag and ends this much after


@dataclasses.dataclass(frozen=True)
class Clip:
    """A stretch of a recording as the bytes of a WAV file, with where it starts and ends in the recording."""

    wav: bytes  # 16-bit PCM WAV at the recording's decoded sample rate
    start_s: float
    end_s: float


def cut_clip(recording: Path, start_s: float, end_s: float, *, settings: AudioSettings,
             pad_s: float = CLIP_PAD_S) -> Clip:
    """The stretch ``start_s``–``end_s`` of ``recording``, widened by ``pad_s`` on both sides, in memory.

    Parameters
    ----------
    recording : Path
        The retained recording (see :func:`flows.inbox.find_recording`).
    start_s, end_s : float
        The flagged stretch, seconds from the start of the recording; ``end_s >= start_s``.
    settings : AudioSettings
        Decoding settings (sample rate), as for the analysis.
    pad_s : float >= 0, optional
        Context before and after the stretch, seconds; clipped to the recording's bounds.

    Returns
    -------
    Clip
        The WAV bytes (no copy of client audio is written to disk) and the clip's bounds in seconds.
    """
    from pipeline.audio import decode, wav_bytes

    rec = decode(recording, settings=settings)
    a = max(0, int((start_s - pad_s) * rec.sample_rate_hz))
    b = min(rec.samples.size, int((end_s + pad_s) * rec.sample_rate_hz))
    return Clip(wav_bytes(rec.samples[a:b], rec.sample_rate_hz), a / rec.sample_rate_hz, b / rec.sample_rate_hz)
