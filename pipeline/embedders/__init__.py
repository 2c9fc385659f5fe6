"""Speaker embeddings: windows of audio → one vector per window, and per speaker.

The stages take a small :class:`SpeakerEmbedder` protocol so that tests can
pass a fake. Two real backends import torch lazily: resemblyzer's d-vector
encoder [1]_ (:mod:`pipeline.embedders.resemblyzer_backend`), which voice
clustering uses by default and therapist voice profiles always use, and CAM++
[2]_ (:mod:`pipeline.embedders.campplus_backend`), which voice clustering uses
when ``diarization.embedder`` says so.

References
----------
.. [1] Wan, L., Wang, Q., Papir, A., Lopez Moreno, I. (2018). Generalized
   End-to-End Loss for Speaker Verification. ICASSP.
.. [2] Wang, H., Zheng, S., Chen, Y., Cheng, L., Chen, Q. (2023). CAM++: A Fast
   and Efficient Network for Speaker Verification Using Context-Aware Masking.
   Interspeech.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class SpeakerEmbedder(Protocol):
    """Turns windows of audio into speaker embeddings (one row per window)."""

    name: str

    def embed_windows(self, samples: np.ndarray, sample_rate_hz: int, starts_s: np.ndarray,
                      window_s: float) -> np.ndarray:
        """Embed equal-length windows of one recording.

        Parameters
        ----------
        samples : np.ndarray, shape (n_samples,)
            Mono float32 audio in [-1, 1].
        sample_rate_hz : int
            Sample rate in Hz (16000).
        starts_s : np.ndarray, shape (n_windows,)
            Start of each window in seconds.
        window_s : float > 0
            Window length in seconds.

        Returns
        -------
        np.ndarray, shape (n_windows, dim)
            One embedding per window, in the order of ``starts_s``.
        """
        ...


def clustering_embedder(settings) -> SpeakerEmbedder:
    """The speaker encoder that voice clustering uses, as the diarization settings choose it.

    Parameters
    ----------
    settings : DiarizationSettings
        ``embedder`` (``"campplus"`` or ``"resemblyzer"``), and for CAM++
        ``embedder_weights`` and ``embedder_weights_sha256``.

    Returns
    -------
    SpeakerEmbedder

    Raises
    ------
    BackendUnavailableError
        The encoder's package or weights are missing or do not match their sha256.
    """
    if settings.embedder == "resemblyzer":
        from pipeline.embedders.resemblyzer_backend import ResemblyzerEmbedder

        return ResemblyzerEmbedder()
    from pipeline.embedders.campplus_backend import CamPlusPlusEmbedder

    return CamPlusPlusEmbedder(settings.embedder_weights, weights_sha256=settings.embedder_weights_sha256)


def speaker_embeddings(samples: np.ndarray, sample_rate_hz: int, turns, *, embedder: SpeakerEmbedder,
                       window_s: float = 2.0, hop_s: float = 1.0) -> dict[str, np.ndarray]:
    """Mean unit-length speaker embedding per speaker, from windows inside their turns.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio.
    sample_rate_hz : int
        Sample rate in Hz (16000).
    turns : iterable of SpeakerTurn or SpeechRegion
        Stretches to embed; a ``speaker`` attribute groups them (SpeechRegion: one group ``"all"``).
    embedder : SpeakerEmbedder
    window_s, hop_s : float > 0
        Window length and hop in seconds; a turn shorter than a window gets one
        window centred on it.

    Returns
    -------
    dict of str to np.ndarray, shape (dim,)
        Empty when there are no turns.
    """
    starts: dict[str, list[float]] = {}
    duration = samples.size / sample_rate_hz
    for t in turns:
        key = getattr(t, "speaker", "all")
        if t.end - t.start >= window_s:
            s = list(np.arange(t.start, t.end - window_s + 1e-9, hop_s))
        else:
            s = [min(max(0.0, (t.start + t.end - window_s) / 2), max(0.0, duration - window_s))]
        starts.setdefault(key, []).extend(s)
    out: dict[str, np.ndarray] = {}
    for key, st in starts.items():
        e = embedder.embed_windows(samples, sample_rate_hz, np.array(st), window_s)
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        m = e.mean(axis=0)
        out[key] = m / max(np.linalg.norm(m), 1e-12)
    return out
