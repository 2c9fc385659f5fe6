"""Word attribution: each transcribed word gets the speaker of the turn it overlaps most.

Joins the two time lines a session has, the ASR's word timestamps
(:mod:`pipeline.asr`) and the speaker turns (:mod:`pipeline.diarization`,
:mod:`pipeline.channels`), and marks the words spoken while two speakers talk
at once, with pyannote.core's interval algebra (imported lazily: it loads
matplotlib).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from pipeline.types import Diarization, SpeakerTurn, Transcript, Word


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
    overlapped = _overlap(turns)
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
                          _overlapped_share(w, overlapped) >= 0.5))
    return dataclasses.replace(transcript, words=tuple(words))  # language and its stretches kept


def _overlap(turns: Sequence[SpeakerTurn]) -> np.ndarray:
    """Stretches during which two or more different speakers have a turn, shape (n, 2), seconds.

    pyannote.core's ``Annotation.get_overlap``: disjoint, in time order.
    """
    from pyannote.core import Annotation, Segment

    annotation = Annotation()
    for track, t in enumerate(turns):  # one track per turn: equal spans of two speakers are both kept
        annotation[Segment(t.start, t.end), track] = t.speaker
    return np.array([(s.start, s.end) for s in annotation.get_overlap()], dtype=float).reshape(-1, 2)


def _overlapped_share(w: Word, overlapped: np.ndarray) -> float:
    """Share of the word's span that lies in the ``overlapped`` stretches."""
    span = w.end - w.start
    if span <= 0:
        return 0.0
    inside = np.minimum(overlapped[:, 1], w.end) - np.maximum(overlapped[:, 0], w.start)
    return float(inside[inside > 0].sum()) / span
