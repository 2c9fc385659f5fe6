"""Alliance markers per analysis window.

Each window (30 s, hop 10 s by default) gets one value per marker in
``FEATURE_NAMES`` order; ``FEATURES`` gives each marker's unit and meaning.
The markers operationalise rupture descriptions of the Rupture Resolution
Rating System (3RS; Eubanks, Muran & Safran 2015): *withdrawal* as minimal
responses, long response latencies and silence; *confrontation* as
interruptions and raised arousal.

References
----------
.. [1] Eubanks, C. F., Muran, J. C., Safran, J. D. (2015). Rupture Resolution
   Rating System (3RS): Manual. Mount Sinai-Beth Israel Medical Center.
.. [2] Heldner, M., Edlund, J. (2010). Pauses, gaps and overlaps in
   conversations. Journal of Phonetics 38(4).
.. [3] Künsch, F. et al. (2023). Pauses framed by therapist speech and
   withdrawal ruptures in adolescents. PLOS ONE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pipeline.settings import FeatureSettings
from pipeline.turns import floor_transfer_offsets, floor_turns, silences
from pipeline.types import (Diarization, FeatureFrame, RoleAssignment, SessionFeatures, SpeakerTurn, TurnProsody,
                            Utterance)


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    unit: str
    description: str


FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("client_speech_share", "ratio", "client speech time / all speech time in the window (NaN without speech)"),
    FeatureSpec("silence_share", "ratio", "share of the window in which nobody speaks (from the session's first "
                "to its last speech)"),
    FeatureSpec("longest_silence_s", "s", "longest silence in the window (same span)"),
    FeatureSpec("mean_gap_s", "s", "mean gap (silence) at changes of speaker [2]"),
    FeatureSpec("client_response_latency_s", "s", "mean floor-transfer offset from therapist to client [2]"),
    FeatureSpec("overlap_rate_per_min", "1/min", "changes of speaker with overlap, per minute [2]"),
    FeatureSpec("client_turns_per_min", "1/min", "client floor turns per minute"),
    FeatureSpec("client_mean_turn_s", "s", "mean duration of client floor turns"),
    FeatureSpec("client_words_per_utterance", "words", "mean words per client utterance"),
    FeatureSpec("therapist_question_rate_per_min", "1/min", "therapist questions per minute"),
    FeatureSpec("client_minimal_response_share", "ratio",
                "client utterances of at most 3 words after a therapist question / therapist questions [1]"),
    FeatureSpec("client_f0_z", "z", "client median F0 against the client's session baseline"),
    FeatureSpec("client_f0_range_z", "z", "client F0 range (semitones) against the session baseline"),
    FeatureSpec("client_intensity_z", "z", "client intensity (dB) against the session baseline"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURE_UNITS: tuple[str, ...] = tuple(f.unit for f in FEATURES)

MINIMAL_RESPONSE_MAX_WORDS = 3


def window_bounds(duration_s: float, *, window_s: float, hop_s: float) -> list[tuple[float, float]]:
    """Start and end (s) of each analysis window.

    A recording shorter than one window gives one window over all of it;
    the last window ends at ``duration_s``.
    """
    if duration_s <= 0:
        return []
    if duration_s <= window_s:
        return [(0.0, duration_s)]
    starts = np.arange(0.0, duration_s - window_s + 1e-9, hop_s)
    bounds = [(float(s), float(s + window_s)) for s in starts]
    if bounds[-1][1] < duration_s - 1e-6:
        bounds.append((duration_s - window_s, duration_s))
    return bounds


def _clip(turns: Sequence[SpeakerTurn], a: float, b: float) -> list[SpeakerTurn]:
    return [SpeakerTurn(max(t.start, a), min(t.end, b), t.speaker) for t in turns if t.end > a and t.start < b]


def _zscores(prosody: Sequence[TurnProsody], speakers: set[str]) -> dict[str, dict[int, float]]:
    """Per-turn z-scores of F0 median, F0 range and intensity within the given speakers."""
    out: dict[str, dict[int, float]] = {}
    idx = [i for i, p in enumerate(prosody) if p.speaker in speakers]
    for field in ("f0_median_hz", "f0_range_st", "intensity_db"):
        vals = np.array([getattr(prosody[i], field) for i in idx], dtype=float)
        ok = np.isfinite(vals)
        mu = float(np.mean(vals[ok])) if ok.any() else math.nan
        sd = float(np.std(vals[ok])) if ok.sum() > 1 else math.nan
        out[field] = {i: ((v - mu) / sd if sd and sd > 1e-9 and math.isfinite(v) else (0.0 if math.isfinite(v) else math.nan))
                      for i, v in zip(idx, vals)}
    return out


def _mean_weighted(pairs: list[tuple[float, float]]) -> float:
    """Duration-weighted mean of (value, weight) pairs, NaN values skipped."""
    pairs = [(v, w) for v, w in pairs if math.isfinite(v) and w > 0]
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total > 0 else math.nan


def window_features(diarization: Diarization, roles: RoleAssignment, utterances: Sequence[Utterance],
                    prosody: Sequence[TurnProsody], *, duration_s: float,
                    settings: FeatureSettings) -> SessionFeatures:
    """Compute every marker in ``FEATURE_NAMES`` for each analysis window.

    Parameters
    ----------
    diarization : Diarization
        Speaker turns (s).
    roles : RoleAssignment
        Role per speaker.
    utterances : sequence of Utterance
        Speaker-attributed words grouped into utterances.
    prosody : sequence of TurnProsody
        Prosody per speaker turn (same turns as ``diarization``).
    duration_s : float
        Recording duration in seconds.
    settings : FeatureSettings
        Window length and hop in seconds.

    Returns
    -------
    SessionFeatures
        One frame per window; values are NaN where a marker is undefined
        (for example the client's latency in a window without a therapist →
        client change). The classifier's pipeline imputes them.
    """
    clients = {s for s, r in roles.roles.items() if r == "client"}
    # silence before the first and after the last speech is not conversational silence
    talk_start = min((t.start for t in diarization.turns), default=0.0)
    talk_end = max((t.end for t in diarization.turns), default=duration_s)
    therapists = {s for s, r in roles.roles.items() if r == "therapist"}
    z = _zscores(prosody, clients)
    frames = []
    for a, b in window_bounds(duration_s, window_s=settings.window_s, hop_s=settings.hop_s):
        length = b - a
        minutes = length / 60.0
        turns = _clip(diarization.turns, a, b)
        speech = sum(t.duration for t in turns)
        client_speech = sum(t.duration for t in turns if t.speaker in clients)
        span_a, span_b = max(a, talk_start), min(b, talk_end)
        span = max(0.0, span_b - span_a) if diarization.turns else length
        sil = silences(turns, start_s=span_a, end_s=span_b) if span > 0 else []
        offsets = [(p, n, o) for p, n, o in floor_transfer_offsets(turns)]
        gaps = [o for _, _, o in offsets if o > 0]
        latencies = [o for p, n, o in offsets if p.speaker in therapists and n.speaker in clients]
        ft_client = [t for t in floor_turns(turns) if t.speaker in clients]
        utts = [u for u in utterances if a <= (u.start + u.end) / 2 < b]
        client_utts = [u for u in utts if u.role == "client"]
        questions = [u for u in utts if u.role == "therapist" and u.is_question]
        minimal = 0
        for q in questions:
            nxt = next((u for u in utterances if u.start >= q.end), None)
            if nxt is not None and nxt.role == "client" and len(nxt.words) <= MINIMAL_RESPONSE_MAX_WORDS:
                minimal += 1
        in_window = [(i, p) for i, p in enumerate(prosody) if p.speaker in clients and p.end > a and p.start < b]

        def zmean(field: str) -> float:
            return _mean_weighted([(z[field].get(i, math.nan), min(p.end, b) - max(p.start, a)) for i, p in in_window])

        values = (
            client_speech / speech if speech > 0 else math.nan,
            sum(e - s for s, e in sil) / span if span > 0 else 0.0,
            max((e - s for s, e in sil), default=0.0),
            float(np.mean(gaps)) if gaps else 0.0,
            float(np.mean(latencies)) if latencies else math.nan,
            sum(1 for _, _, o in offsets if o < 0) / minutes if minutes > 0 else 0.0,
            len(ft_client) / minutes if minutes > 0 else 0.0,
            float(np.mean([t.duration for t in ft_client])) if ft_client else 0.0,
            float(np.mean([len(u.words) for u in client_utts])) if client_utts else 0.0,
            len(questions) / minutes if minutes > 0 else 0.0,
            minimal / len(questions) if questions else 0.0,
            zmean("f0_median_hz"),
            zmean("f0_range_st"),
            zmean("intensity_db"),
        )
        frames.append(FeatureFrame(round(a, 3), round(b, 3), tuple(float(v) for v in values), round(speech, 3)))
    return SessionFeatures(FEATURE_NAMES, FEATURE_UNITS, tuple(frames))
