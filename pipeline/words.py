"""Word attribution: each transcribed word gets the speaker of the turn it overlaps most.

Joins the two time lines a session has, the ASR's word timestamps
(:mod:`pipeline.asr`) and the speaker turns (:mod:`pipeline.diarization`,
:mod:`pipeline.channels`), and marks the words spoken while two speakers talk
at once.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pipeline.types import Diarization, Transcript, Word


def assign_words(transcript: Transcript, diarization: Diarization) -> Transcript:
    """Give each word the speaker whose turn it overlaps most, and mark words spoken in overlap.

    A word that overlaps no turn takes the nearest turn's speaker. A word of
    which at least half lies where two or more speakers' turns overlap gets
    ``overlap=True``: it may belong to either speaker (turns overlap in
    channel-per-speaker recordings; mono diarization gives one speaker per
    moment).

    Parameters
    ----------
    transcript : Transcript
        Words with start/end in seconds.
    diarization : Diarization
        Speaker turns.

    Returns
    -------
    Transcript
        A new transcript whose words carry ``speaker`` (None when there are no turns) and ``overlap``.
    """
    turns = diarization.turns
    if not turns:
        return transcript
    starts = np.array([t.start for t in turns])
    ends = np.array([t.end for t in turns])
    spk = np.array([t.speaker for t in turns])
    words: list[Word] = []
    for w in transcript.words:
        w_end = max(w.end, w.start + 0.01)  # Whisper sometimes gives a word no duration: use 10 ms
        overlap = np.minimum(ends, w_end) - np.maximum(starts, w.start)
        if overlap.max() > 0:
            idx = int(overlap.argmax())
        else:
            mid = (w.start + w.end) / 2
            idx = int(np.minimum(np.abs(starts - mid), np.abs(ends - mid)).argmin())
        words.append(Word(w.start, w.end, w.text, w.probability, turns[idx].speaker,
                          _overlapped_share(w, starts, ends, spk) >= 0.5))
    return dataclasses.replace(transcript, words=tuple(words))  # language and its stretches kept


def _overlapped_share(w: Word, starts: np.ndarray, ends: np.ndarray, speakers: np.ndarray) -> float:
    """Share of the word's span during which two or more different speakers have a turn."""
    span = w.end - w.start
    near = (ends > w.start) & (starts < w.end)
    if span <= 0 or len(set(speakers[near].tolist())) < 2:
        return 0.0
    edges = np.unique(np.clip(np.concatenate([[w.start, w.end], starts[near], ends[near]]), w.start, w.end))
    covered = 0.0
    for a, b in zip(edges[:-1], edges[1:]):
        mid = (a + b) / 2
        active = {s for s, s0, e0 in zip(speakers[near], starts[near], ends[near]) if s0 <= mid < e0}
        if len(active) >= 2:
            covered += b - a
    return covered / span
