"""The speech a Whisper backend decodes: the VAD stage's regions joined, with the map back to recording time.

Both backends decode only the stretches :func:`pipeline.vad.detect_speech` finds (with the same settings as the
VAD stage), joined end to end as faster-whisper's ``vad_filter`` joins its own, so silences produce no text and
speech after a long stretch of noise is found as at the start of a file.
"""

from __future__ import annotations

import numpy as np

from pipeline.settings import VadSettings
from pipeline.vad import detect_speech


def speech_chunks(samples: np.ndarray, vad_parameters: dict | None = None) -> list[dict]:
    """The VAD regions of a recording as sample indices, in the form faster-whisper's timestamp map takes.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio at 16 kHz.
    vad_parameters : dict, optional
        :class:`pipeline.settings.VadSettings` fields; its defaults when omitted.

    Returns
    -------
    list of dict
        Each region's ``start`` and ``end`` in samples of the recording (non-empty, in time order), as
        faster-whisper's ``SpeechTimestampsMap`` and ``restore_speech_timestamps`` take them.
    """
    samples = np.asarray(samples, dtype=np.float32)
    regions = detect_speech(samples, 16000, settings=VadSettings(**(vad_parameters or {})))
    chunks = [{"start": int(round(r.start * 16000)), "end": min(int(round(r.end * 16000)), samples.size)}
              for r in regions]
    return [c for c in chunks if c["end"] > c["start"]]


def speech_only(samples: np.ndarray, vad_parameters: dict | None = None) -> tuple[np.ndarray, list[dict]]:
    """Cut a recording down to its speech.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio at 16 kHz.
    vad_parameters : dict, optional
        :class:`pipeline.settings.VadSettings` fields; its defaults when omitted.

    Returns
    -------
    speech : np.ndarray, shape (n_speech_samples,)
        The speech regions joined end to end (empty when there is none).
    chunks : list of dict
        As :func:`speech_chunks` returns them, to map decoded times back.
    """
    samples = np.asarray(samples, dtype=np.float32)
    chunks = speech_chunks(samples, vad_parameters)
    if not chunks:
        return np.zeros(0, np.float32), []
    return np.concatenate([samples[c["start"]:c["end"]] for c in chunks]), chunks
