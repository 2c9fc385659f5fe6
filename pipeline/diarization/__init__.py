"""Speaker diarization: who spoke when.

Speaker embeddings (a d-vector encoder, resemblyzer [1]_, from
:mod:`pipeline.embedders`) are computed on short sliding windows over the
speech found by VAD, clustered into a known number of speakers by spectral
clustering on cosine affinities [2]_, and each speech frame takes the label of
the nearest window centre. Runs of one label become
:class:`~pipeline.types.SpeakerTurn` objects; a second pass can move their
boundaries (GMM resegmentation).

:func:`diarize` composes the stages; each lives in its own module:
:mod:`~pipeline.diarization.clustering` (spectral clustering),
:mod:`~pipeline.diarization.speaker_count` (eigengap count when the
participants are not given), :mod:`~pipeline.diarization.resegment` (GMM
second pass) and :mod:`~pipeline.diarization.frames` (the 10 ms label grid and
labels → turns).

References
----------
.. [1] Wan, L., Wang, Q., Papir, A., Lopez Moreno, I. (2018). Generalized
   End-to-End Loss for Speaker Verification. ICASSP.
.. [2] Wang, Q., Downey, C., Wan, L., Mansfield, P. A., Lopez Moreno, I.
   (2018). Speaker Diarization with LSTM. ICASSP.
"""

from __future__ import annotations

import numpy as np

from pipeline.diarization.clustering import cluster_embeddings
from pipeline.diarization.frames import FRAME_S, bridge_pauses, labels_to_turns
from pipeline.diarization.resegment import resegment
from pipeline.diarization.speaker_count import count_speakers, estimate_num_speakers
from pipeline.embedders import SpeakerEmbedder
from pipeline.settings import DiarizationSettings
from pipeline.types import Diarization, SpeechRegion
from pipeline.vad import speech_mask

__all__ = ["FRAME_S", "bridge_pauses", "cluster_embeddings", "count_speakers", "diarize", "estimate_num_speakers",
           "labels_to_turns", "resegment"]


def diarize(samples: np.ndarray, sample_rate_hz: int, speech: tuple[SpeechRegion, ...], *,
            num_speakers: int | None, settings: DiarizationSettings, embedder: SpeakerEmbedder) -> Diarization:
    """Find who spoke when, for a known number of speakers.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio in [-1, 1].
    sample_rate_hz : int
        Sample rate in Hz (16000).
    speech : tuple of SpeechRegion
        Speech regions from VAD; only speech is labelled.
    num_speakers : int >= 1 or None
        Speakers in the room (from the session's participants); None estimates
        it (:func:`estimate_num_speakers`) and marks the result as estimated.
    settings : DiarizationSettings
        Embedding window and hop (s), minimum speech fraction per window,
        shortest turn (s).
    embedder : SpeakerEmbedder
        Speaker-embedding backend (resemblyzer, or a fake in tests).

    Returns
    -------
    Diarization
        Turns labelled ``SPEAKER_00``, ``SPEAKER_01``… by first appearance.

    Raises
    ------
    ValueError
        If ``num_speakers`` < 1.
    """
    if num_speakers is not None and num_speakers < 1:
        raise ValueError(f"num_speakers must be an int >= 1 or None. Got {num_speakers} instead.")
    duration = samples.size / sample_rate_hz
    n_frames = int(round(duration / FRAME_S))
    mask = speech_mask(speech, n_frames, FRAME_S)
    method = f"{embedder.name}+spectral"
    if not mask.any():
        return Diarization(turns=(), speakers=(), method=method, num_speakers_estimated=num_speakers is None)
    detail = ""
    estimated = num_speakers is None
    if estimated:
        num_speakers, detail = count_speakers(samples, sample_rate_hz, mask, embedder=embedder,
                                              min_speech_fraction=settings.min_speech_fraction)
    names = [f"SPEAKER_{i:02d}" for i in range(num_speakers)]

    win = max(1, int(round(settings.window_s / FRAME_S)))
    hop = max(1, int(round(settings.hop_s / FRAME_S)))
    half = win // 2
    starts = np.arange(0, max(1, n_frames - win + 1), hop)
    keep = [s for s in starts
            if mask[s:s + win].mean() >= settings.min_speech_fraction and mask[min(s + half, n_frames - 1)]]
    if not keep:  # only very short speech: one window on each region's centre
        keep = [max(0, int(round((r.start + r.end) / 2 / FRAME_S)) - half) for r in speech]
    starts = np.array(sorted(set(keep)), dtype=int)
    centres = starts + half
    embeddings = embedder.embed_windows(samples, sample_rate_hz, starts * FRAME_S, win * FRAME_S)
    window_labels = cluster_embeddings(embeddings, num_speakers, max_windows=settings.max_cluster_windows)

    speech_frames = np.flatnonzero(mask)
    nearest = np.searchsorted(centres, speech_frames)
    left = np.clip(nearest - 1, 0, centres.size - 1)
    right = np.clip(nearest, 0, centres.size - 1)
    pick = np.where(np.abs(speech_frames - centres[left]) <= np.abs(centres[right] - speech_frames), left, right)
    frame_labels = np.full(n_frames, -1, dtype=int)
    frame_labels[speech_frames] = window_labels[pick]
    turns = bridge_pauses(labels_to_turns(frame_labels, FRAME_S, min_turn_s=settings.min_turn_s, names=names),
                          max_pause_s=settings.max_pause_s)
    if settings.resegment and num_speakers >= 2:
        # the first pass's turns (short flicker removed) seed one mixture per speaker
        seeded = np.full(n_frames, -1, dtype=int)
        for t in turns:
            seeded[int(round(t.start / FRAME_S)):int(round(t.end / FRAME_S))] = names.index(t.speaker)
        seeded[~mask] = -1
        frame_labels = resegment(samples, sample_rate_hz, seeded, n_speakers=num_speakers,
                                 n_components=settings.reseg_components, smooth_s=settings.reseg_smooth_s)
        turns = bridge_pauses(labels_to_turns(frame_labels, FRAME_S, min_turn_s=settings.min_turn_s, names=names),
                              max_pause_s=settings.max_pause_s)
        method += "+gmm-resegmentation"
    present = tuple(n for n in names if any(t.speaker == n for t in turns))
    return Diarization(turns=turns, speakers=present, method=method, num_speakers_estimated=estimated, detail=detail)
