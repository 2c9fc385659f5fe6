"""The diarization label grid: 10 ms frames, and runs of one label as speaker turns."""

from __future__ import annotations

import numpy as np

from pipeline.types import SpeakerTurn

FRAME_S = 0.01  # label grid: 10 ms frames


def labels_to_turns(frame_labels: np.ndarray, frame_s: float, *, min_turn_s: float,
                    names: list[str]) -> tuple[SpeakerTurn, ...]:
    """Turn a per-frame label track into speaker turns.

    Runs shorter than ``min_turn_s`` that sit between speech of another
    speaker are relabelled to the preceding speaker (removes label flicker).

    Parameters
    ----------
    frame_labels : np.ndarray, shape (n_frames,), dtype int
        Speaker index per frame, -1 for non-speech.
    frame_s : float > 0
        Frame period in seconds.
    min_turn_s : float >= 0
        Shortest turn kept, in seconds.
    names : list of str
        Speaker name per index.

    Returns
    -------
    tuple of SpeakerTurn
        Turns in time order; consecutive turns of one speaker separated by
        non-speech stay separate turns.
    """
    labels = frame_labels.copy()
    runs = _runs(labels)
    min_frames = int(round(min_turn_s / frame_s))
    for i, (start, end, lab) in enumerate(runs):
        if lab < 0 or end - start >= min_frames:
            continue
        prev_lab = runs[i - 1][2] if i > 0 else -1
        next_lab = runs[i + 1][2] if i + 1 < len(runs) else -1
        if prev_lab >= 0:
            labels[start:end] = prev_lab
        elif next_lab >= 0:
            labels[start:end] = next_lab
    return tuple(SpeakerTurn(round(s * frame_s, 3), round(e * frame_s, 3), names[lab])
                 for s, e, lab in _runs(labels) if lab >= 0)


def bridge_pauses(turns: tuple[SpeakerTurn, ...], *, max_pause_s: float) -> tuple[SpeakerTurn, ...]:
    """Join consecutive turns of one speaker separated by less than ``max_pause_s`` of silence.

    Reference RTTM files count a speaker's short pauses as part of the turn;
    the pauses themselves stay measurable from the VAD speech regions.

    Parameters
    ----------
    turns : tuple of SpeakerTurn
        Turns in time order, not overlapping.
    max_pause_s : float >= 0
        Longest pause (s) kept inside one turn.

    Returns
    -------
    tuple of SpeakerTurn
    """
    out: list[SpeakerTurn] = []
    for t in turns:
        if out and out[-1].speaker == t.speaker and t.start - out[-1].end <= max_pause_s:
            out[-1] = SpeakerTurn(out[-1].start, t.end, t.speaker)
        else:
            out.append(t)
    return tuple(out)


def _runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, end, label) of each run of equal values."""
    if labels.size == 0:
        return []
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [labels.size]])
    return [(int(s), int(e), int(labels[s])) for s, e in zip(starts, ends)]
