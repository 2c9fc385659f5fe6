"""Alliance markers per analysis window and per session.

Each window (30 s, hop 10 s by default) gets one value per marker in
``FEATURE_NAMES`` order; ``FEATURES`` gives each marker's unit, meaning and
source. The same computation over one window spanning the whole recording
gives the session-level markers (:func:`session_markers`). Per-utterance
markers come from :func:`pipeline.lexical.utterance_markers`.

The markers operationalise rupture descriptions of the Rupture Resolution
Rating System (3RS; Eubanks, Muran & Safran 2015) [1]_: *withdrawal* as
minimal responses, long response latencies, pauses framed by therapist speech
[3]_, quiet and flat speech; *confrontation* as complaints, refusals,
interruptions and raised arousal. Floor-transfer terms (gap, overlap, pause)
follow Heldner & Edlund (2010) [2]_. In child and adolescent therapy the
therapist's pressure to talk (question runs) and language adapted to the
client's age are markers of their own.

References
----------
.. [1] Eubanks, C. F., Muran, J. C., Safran, J. D. (2015). Rupture Resolution
   Rating System (3RS): Manual. Mount Sinai-Beth Israel Medical Center.
.. [2] Heldner, M., Edlund, J. (2010). Pauses, gaps and overlaps in
   conversations. Journal of Phonetics 38(4), 555–568.
.. [3] Künsch, F. et al. (2023). Pauses framed by therapist speech and
   withdrawal ruptures in adolescents. PLOS ONE.
.. [4] Brown, R. (1973). A First Language: The Early Stages. Harvard
   University Press (mean length of utterance).
.. [5] Wiltshire, T. J., Philipsen, J. S., Trasmundi, S. B., Jensen, T. W.,
   Steffensen, S. V. (2020). Interpersonal coordination dynamics in
   psychotherapy: a systematic review. Cognitive Therapy and Research 44.
   Synchrony findings are mixed: vocal synchrony has been linked both to a
   better alliance and, in some studies, to worse outcomes or conflict; the
   synchrony markers are reported, not interpreted.
.. [6] Ferguson, N. (1977). Simultaneous speech, interruptions and dominance.
   British Journal of Social and Clinical Psychology 16(4), 295–302
   (successful interruption vs. butting-in; see
   :func:`pipeline.turns.overlap_events`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pipeline.settings import FeatureSettings
from pipeline.turns import floor_transfer_offsets, floor_turns, overlap_events, silences
from pipeline.types import (Diarization, FeatureFrame, RoleAssignment, SessionFeatures, SpeakerTurn, SpeechRegion,
                            TurnProsody, Utterance, UtteranceMarkers)


@dataclass(frozen=True)
class FeatureSpec:
    """One alliance marker: its name, unit and meaning.

    The entries of :data:`FEATURES` fix the column order of the feature
    table and the text the report shows beside each value.

    Attributes
    ----------
    name : str
        Column name; units are in the name where a value has one
        (``mean_gap_s``, ``client_f0_median_hz``).
    unit : str
        Unit as printed in reports: ``'s'``, ``'Hz'``, ``'dB'``, ``'st'``
        (semitones), ``'1/min'``, ``'ratio'``, ``'z'`` and so on.
    description : str
        What the marker measures, in one line; a number in brackets points
        to the module's references.
    """

    name: str
    unit: str
    description: str


FEATURES: tuple[FeatureSpec, ...] = (
    # turn-taking [2]
    FeatureSpec("client_speech_share", "ratio", "client speech time / all speech time (NaN without speech)"),
    FeatureSpec("therapist_speech_share", "ratio", "therapist speech time / all speech time (NaN without speech)"),
    FeatureSpec("silence_share", "ratio", "share of the time in which nobody speaks (from the session's first "
                "to its last speech)"),
    FeatureSpec("longest_silence_s", "s", "longest silence (same span)"),
    FeatureSpec("mean_gap_s", "s", "mean gap (silence) at changes of speaker [2]"),
    FeatureSpec("mean_pause_s", "s", "mean pause (silence between speech of one speaker who keeps the floor) [2]"),
    FeatureSpec("client_response_latency_s", "s", "mean floor-transfer offset from therapist to client [2]"),
    FeatureSpec("client_question_latency_s", "s", "mean time from the end of a therapist question to the start of "
                "the client's answer (negative: answered in overlap) [2]"),
    FeatureSpec("client_framed_pauses_per_min", "1/min",
                "silences of at least 1 s with therapist speech on both sides and no client speech, per minute [3]"),
    FeatureSpec("overlap_rate_per_min", "1/min", "changes of speaker with overlap, per minute [2]"),
    FeatureSpec("client_interruptions_per_min", "1/min",
                "client starts talking over the therapist (or parent) who has the floor, per minute [6]"),
    FeatureSpec("client_successful_interruptions_per_min", "1/min",
                "client interruptions after which the other stopped within 1 s and the client went on, per "
                "minute [6]"),
    FeatureSpec("therapist_interruptions_per_min", "1/min", "therapist starts talking over another who has the "
                "floor, per minute [6]"),
    FeatureSpec("parent_interruptions_per_min", "1/min", "a parent starts talking over another who has the floor, "
                "per minute [6]"),
    FeatureSpec("client_overlap_backchannels_per_min", "1/min", "short client contributions (at most 1 s) inside "
                "another's turn, per minute [6]"),
    FeatureSpec("client_turns_per_min", "1/min", "client floor turns per minute"),
    FeatureSpec("client_mean_turn_s", "s", "mean duration of client floor turns"),
    FeatureSpec("therapist_mean_turn_s", "s", "mean duration of therapist floor turns"),
    # minimal responses and lexical markers [1]
    FeatureSpec("client_words_per_utterance", "words", "mean words per client utterance"),
    FeatureSpec("client_minimal_response_share", "ratio", "therapist questions answered minimally (a minimal-response "
                "utterance, or no client answer before the therapist speaks again) / therapist questions; NaN "
                "without questions [1]"),
    FeatureSpec("client_minimal_responses_per_min", "1/min", "client minimal-response utterances per minute [1]"),
    FeatureSpec("client_backchannels_per_min", "1/min", "client backchannels (mm, ja, okay) per minute"),
    FeatureSpec("client_negations_per_utterance", "1/utterance", "negations (niet, geen, not, never) per client utterance, each weighted by its ASR confidence"),
    FeatureSpec("client_refusals_per_min", "1/min", "client refusal phrases (wil niet, I won't) per minute, each weighted by its ASR confidence [1]"),
    FeatureSpec("client_complaints_per_min", "1/min", "client complaint words (saai, stom, unfair) per minute, each weighted by its ASR confidence [1]"),
    FeatureSpec("client_deference_per_min", "1/min", "client deferential or appeasing phrases (als jij het zegt, "
                "you know best) per minute, each weighted by its ASR confidence [1]"),
    # therapist pressure to talk
    FeatureSpec("therapist_question_rate_per_min", "1/min", "therapist questions per minute"),
    FeatureSpec("therapist_question_run_max", "questions", "longest run of therapist questions without a "
                "substantive client answer (minimal responses and backchannels do not end a run)"),
    FeatureSpec("therapist_questions_after_silence_per_min", "1/min",
                "therapist questions that follow at least 2 s of silence, per minute"),
    FeatureSpec("therapist_share_client_withdrawn", "ratio", "therapist share of speech in a window where at least "
                "half of the therapist's questions got a minimal or no answer (NaN otherwise)"),
    # age-adapted language [4]
    FeatureSpec("therapist_mlu_words", "words", "therapist mean length of utterance in words [4]"),
    FeatureSpec("therapist_syllables_per_word", "syllables/word", "therapist mean word length in syllables"),
    FeatureSpec("therapist_client_mlu_ratio", "ratio", "therapist MLU / client MLU (NaN without both)"),
    # prosodic affect (pYIN F0, RMS intensity, speaking rate from the transcript)
    FeatureSpec("client_f0_median_hz", "Hz", "client median F0 (duration-weighted over turns)"),
    FeatureSpec("client_f0_range_st", "st", "client F0 range, 5th to 95th percentile, in semitones"),
    FeatureSpec("client_intensity_db", "dB", "client RMS intensity in dB re full scale"),
    FeatureSpec("client_speaking_rate_syl_s", "syllables/s", "client syllables per second of utterance time"),
    FeatureSpec("client_f0_z", "z", "client median F0 against the client's session baseline"),
    FeatureSpec("client_f0_range_z", "z", "client F0 range against the session baseline (negative: flatter)"),
    FeatureSpec("client_intensity_z", "z", "client intensity against the session baseline"),
    FeatureSpec("client_speaking_rate_z", "z", "client speaking rate against the session baseline"),
    FeatureSpec("client_arousal_z", "z", "mean of the client's F0, intensity and speaking-rate z-scores (arousal)"),
    # synchrony [5]
    FeatureSpec("intensity_synchrony_r", "r", "Pearson r of therapist and next client turn intensity over "
                "therapist→client transfers (NaN under 4 transfers) [5]"),
    FeatureSpec("f0_synchrony_r", "r", "Pearson r of therapist and next client turn median F0 over "
                "therapist→client transfers (NaN under 4 transfers) [5]"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURE_UNITS: tuple[str, ...] = tuple(f.unit for f in FEATURES)
OFFSET_MARKERS = frozenset({"client_response_latency_s", "client_question_latency_s"})
"""Markers that are mean floor-transfer offsets (s): below 0 the client began before the therapist finished,
which the report says as speaking over the therapist, never as a negative time."""
# Markers whose values follow the recording's level, the microphone distance or the speaker's voice (a child's F0,
# a voice engine's speaking rate) more than the alliance: reported to the reader, not given to the classifier,
# which reads the same quantities relative to the client's own session baseline (the *_z markers).
ABSOLUTE_MARKERS: tuple[str, ...] = ("client_f0_median_hz", "client_f0_range_st", "client_intensity_db",
                                     "client_speaking_rate_syl_s")
MODEL_FEATURE_NAMES: tuple[str, ...] = tuple(n for n in FEATURE_NAMES if n not in ABSOLUTE_MARKERS)

FRAMED_PAUSE_MIN_S = 1.0
QUESTION_AFTER_SILENCE_S = 2.0
MIN_SYNCHRONY_PAIRS = 4


def window_bounds(duration_s: float, *, window_s: float, hop_s: float) -> list[tuple[float, float]]:
    """Start and end (s) of each analysis window.

    A recording shorter than one window gives one window over all of it;
    the last window ends at ``duration_s``. Windows start every ``hop_s``
    seconds; when the last regular window stops short of the end, one more
    window of ``window_s`` is added that ends at ``duration_s`` (it overlaps
    the one before it by more than usual).

    Parameters
    ----------
    duration_s : float
        Recording length in seconds.
    window_s : float > 0
        Window length in seconds.
    hop_s : float > 0
        Step between window starts in seconds.

    Returns
    -------
    list of (float, float)
        ``(start_s, end_s)`` in time order; empty when ``duration_s <= 0``.
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


def _zscores(values: dict[int, float], weights: dict[int, float] | None = None) -> dict[int, float]:
    """z-score of each finite value against the weighted mean and SD of all of them (0 when the SD is 0).

    Weighting by duration makes the session's own duration-weighted mean z-score 0.
    """
    keys = [i for i, v in values.items() if math.isfinite(v)]
    if not keys:
        return {i: math.nan for i in values}
    v = np.array([values[i] for i in keys])
    w = np.array([max((weights or {}).get(i, 1.0), 0.0) for i in keys]) if weights else np.ones(len(keys))
    if w.sum() <= 0:
        w = np.ones(len(keys))
    mu = float(np.average(v, weights=w))
    sd = float(np.sqrt(np.average((v - mu) ** 2, weights=w)))
    return {i: ((x - mu) / sd if sd > 1e-9 else 0.0) if math.isfinite(x) else math.nan for i, x in values.items()}


def _mean_weighted(pairs: list[tuple[float, float]]) -> float:
    """Duration-weighted mean of (value, weight) pairs, NaN values skipped."""
    pairs = [(v, w) for v, w in pairs if math.isfinite(v) and w > 0]
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total > 0 else math.nan


def _pearson(pairs: list[tuple[float, float]]) -> float:
    """Pearson r of finite pairs; NaN under ``MIN_SYNCHRONY_PAIRS`` pairs or with a constant side."""
    pairs = [(x, y) for x, y in pairs if math.isfinite(x) and math.isfinite(y)]
    if len(pairs) < MIN_SYNCHRONY_PAIRS:
        return math.nan
    x, y = np.array(pairs).T
    if x.std() < 1e-9 or y.std() < 1e-9:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def framed_pauses(turns: Sequence[SpeakerTurn], therapists: set[str], clients: set[str], *,
                  min_s: float = FRAMED_PAUSE_MIN_S) -> list[tuple[float, float]]:
    """Silences with therapist speech on both sides and no client speech: the client did not take the turn.

    After Künsch et al. (2023), where client pauses framed by therapist speech
    detected minimal-response withdrawal ruptures in adolescents.

    Parameters
    ----------
    turns : sequence of SpeakerTurn
        All speakers' turns (s).
    therapists, clients : set of str
        Speaker labels of each role.
    min_s : float
        Shortest silence counted, in seconds.

    Returns
    -------
    list of (start_s, end_s)
    """
    ordered = sorted(turns, key=lambda t: (t.start, t.end))
    out = []
    reach, last = -math.inf, None  # end of speech so far, and the turn that reaches it
    for t in ordered:
        if last is not None and t.start - reach >= min_s and last.speaker in therapists and t.speaker in therapists:
            out.append((reach, t.start))
        if t.end > reach:
            reach, last = t.end, t
    # a client turn in between would have been `last`, so both sides being therapist implies no client speech
    return out


def within_turn_pauses(turns: Sequence[SpeakerTurn], speech: Sequence[SpeechRegion] = ()) -> list[float]:
    """Pauses (s) inside floor turns: silences between stretches of speech of the speaker holding the floor.

    Parameters
    ----------
    turns : sequence of SpeakerTurn
        Speaker turns.
    speech : sequence of SpeechRegion, optional
        VAD speech regions; when given, the pauses are the silences between
        regions inside each floor turn (diarization joins a speaker's short
        pauses into one turn); otherwise the silences between that speaker's
        turns inside the floor turn.

    Returns
    -------
    list of float
        Pause durations in seconds.
    """
    out = []
    for ft in floor_turns(turns):
        if speech:  # the VAD's speech inside the floor turn (diarization joins a speaker's pauses into one turn)
            spans = sorted((max(r.start, ft.start), min(r.end, ft.end)) for r in speech
                           if r.end > ft.start and r.start < ft.end)
        else:
            spans = sorted((t.start, t.end) for t in turns
                           if t.speaker == ft.speaker and t.start >= ft.start and t.end <= ft.end)
        reach = ft.start
        for a, b in spans:
            if a > reach:
                out.append(a - reach)
            reach = max(reach, b)
    return out


def _transfer_pairs(turns: Sequence[SpeakerTurn], prosody: Sequence[TurnProsody], therapists: set[str],
                    clients: set[str]) -> list[tuple[float, TurnProsody, TurnProsody]]:
    """(time, therapist turn prosody, client turn prosody) at each therapist → client floor transfer."""
    by_end = {(p.speaker, round(p.end, 3)): p for p in prosody}
    by_start = {(p.speaker, round(p.start, 3)): p for p in prosody}
    out = []
    for prev, nxt, _ in floor_transfer_offsets(turns):
        if prev.speaker in therapists and nxt.speaker in clients:
            a = by_end.get((prev.speaker, round(prev.end, 3)))
            b = by_start.get((nxt.speaker, round(nxt.start, 3)))
            if a is not None and b is not None:
                out.append((nxt.start, a, b))
    return out


def _covered_s(turns) -> float:
    """Time (s) covered by at least one of ``turns`` (overlapping turns count once)."""
    total, reach = 0.0, -math.inf
    for t in sorted(turns, key=lambda t: t.start):
        if t.end > reach:
            total += t.end - max(t.start, reach)
            reach = t.end
    return total


def window_features(diarization: Diarization, roles: RoleAssignment, utterances: Sequence[Utterance],
                    prosody: Sequence[TurnProsody], *, duration_s: float, settings: FeatureSettings,
                    markers: Sequence[UtteranceMarkers] | None = None, speech: Sequence[SpeechRegion] = (),
                    windows: Sequence[tuple[float, float]] | None = None) -> SessionFeatures:
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
        Window length and hop in seconds, lexicon file.
    markers : sequence of UtteranceMarkers, optional
        Per-utterance markers parallel to ``utterances``; computed with the
        configured lexicon and every language's lists when omitted.
    speech : sequence of SpeechRegion, optional
        VAD speech regions, for pauses inside turns.
    windows : sequence of (start_s, end_s), optional
        Windows to compute; default :func:`window_bounds` of the settings.

    Returns
    -------
    SessionFeatures
        One frame per window; values are NaN where a marker is undefined
        (for example the client's latency in a window without a therapist →
        client change). The classifier's pipeline imputes them.
    """
    if markers is None:
        from pipeline.lexical import load_lexicon, utterance_markers

        markers = utterance_markers(utterances, language=None, lexicon=load_lexicon(settings.lexicon_path))
    if len(markers) != len(utterances):
        raise ValueError(f"markers must be parallel to utterances. Got {len(markers)} and {len(utterances)} instead.")
    clients = {s for s, r in roles.roles.items() if r == "client"}
    therapists = {s for s, r in roles.roles.items() if r == "therapist"}
    all_turns = diarization.turns
    # silence before the first and after the last speech is not conversational silence
    talk_start = min((t.start for t in all_turns), default=0.0)
    talk_end = max((t.end for t in all_turns), default=duration_s)
    client_prosody = {i: p for i, p in enumerate(prosody) if p.speaker in clients}
    dur = {i: p.end - p.start for i, p in client_prosody.items()}
    z_f0 = _zscores({i: p.f0_median_hz for i, p in client_prosody.items()}, dur)
    z_range = _zscores({i: p.f0_range_st for i, p in client_prosody.items()}, dur)
    z_int = _zscores({i: p.intensity_db for i, p in client_prosody.items()}, dur)
    client_marks = {i: m for i, m in enumerate(markers) if m.role == "client"}
    z_rate = _zscores({i: m.speaking_rate_syl_s for i, m in client_marks.items()},
                      {i: m.end - m.start for i, m in client_marks.items()})
    pauses_framed = framed_pauses(all_turns, therapists, clients)
    pairs = _transfer_pairs(all_turns, prosody, therapists, clients)
    offsets_all = floor_transfer_offsets(all_turns)
    parents = {s for s, r in roles.roles.items() if r == "parent"}
    events_all = overlap_events(all_turns)
    ends_before = np.maximum.accumulate([m.end for m in markers]) if markers else np.zeros(0)
    if windows is None:
        windows = window_bounds(duration_s, window_s=settings.window_s, hop_s=settings.hop_s)
    frames = []
    for a, b in windows:
        minutes = (b - a) / 60.0
        per_min = (lambda n: n / minutes) if minutes > 0 else (lambda n: 0.0)
        turns = _clip(all_turns, a, b)
        speech_time = sum(t.duration for t in turns)
        client_speech = sum(t.duration for t in turns if t.speaker in clients)
        therapist_speech = sum(t.duration for t in turns if t.speaker in therapists)
        span_a, span_b = max(a, talk_start), min(b, talk_end)
        span = max(0.0, span_b - span_a) if all_turns else (b - a)
        sil = silences(turns, start_s=span_a, end_s=span_b) if span > 0 else []
        offsets = [o for o in offsets_all if a <= o[1].start < b]
        events = [e for e in events_all if a <= e.start < b]
        gaps = [o for _, _, o in offsets if o > 0]
        latencies = [o for p, n, o in offsets if p.speaker in therapists and n.speaker in clients]
        fts = floor_turns(turns)
        ft_client = [t for t in fts if t.speaker in clients]
        ft_therapist = [t for t in fts if t.speaker in therapists]
        pauses = within_turn_pauses(turns, [r for r in speech if r.end > a and r.start < b])
        idx = [i for i, m in enumerate(markers) if a <= (m.start + m.end) / 2 < b]
        cm = [markers[i] for i in idx if markers[i].role == "client"]
        tm = [markers[i] for i in idx if markers[i].role == "therapist"]
        questions = [i for i in idx if markers[i].role == "therapist" and markers[i].is_question]
        minimal, q_latency = 0, []
        for q in questions:
            nxt = next((markers[j] for j in range(q + 1, len(markers)) if markers[j].role != "parent"), None)
            if nxt is not None and (nxt.role == "therapist" or (nxt.role == "client" and nxt.is_minimal_response)):
                minimal += 1
            if nxt is not None and nxt.role == "client":
                q_latency.append(nxt.start - markers[q].end)
        minimal_share = minimal / len(questions) if questions else math.nan
        withdrawn = bool(questions) and minimal_share >= 0.5
        run = best_run = 0
        for i in idx:
            m = markers[i]
            if m.role == "therapist" and m.is_question:
                run += 1
                best_run = max(best_run, run)
            elif m.role == "client" and not (m.is_minimal_response or m.is_backchannel):
                run = 0
        after_silence = sum(1 for q in questions
                            if q > 0 and markers[q].start - ends_before[q - 1] >= QUESTION_AFTER_SILENCE_S)
        client_words = [m.n_words for m in cm if m.n_words > 0]
        therapist_words = [m.n_words for m in tm if m.n_words > 0]
        mlu_c = float(np.mean(client_words)) if client_words else math.nan
        mlu_t = float(np.mean(therapist_words)) if therapist_words else math.nan
        t_words, t_syl = sum(m.n_words for m in tm), sum(m.n_syllables for m in tm)
        in_window = [(i, p) for i, p in client_prosody.items() if p.end > a and p.start < b]
        overlap_of = (lambda p: min(p.end, b) - max(p.start, a))

        def wmean(values: dict[int, float]) -> float:
            return _mean_weighted([(values.get(i, math.nan), overlap_of(p)) for i, p in in_window])

        rate_items = [(i, m) for i, m in client_marks.items() if a <= (m.start + m.end) / 2 < b]
        syl, span_s = sum(m.n_syllables for _, m in rate_items), sum(m.end - m.start for _, m in rate_items)
        rate_z = _mean_weighted([(z_rate[i], m.end - m.start) for i, m in rate_items])
        f0_z, int_z = wmean(z_f0), wmean(z_int)
        arousal = [v for v in (f0_z, int_z, rate_z) if math.isfinite(v)]
        win_pairs = [(tp, cp) for t, tp, cp in pairs if a <= t < b]
        values = (
            client_speech / speech_time if speech_time > 0 else math.nan,
            therapist_speech / speech_time if speech_time > 0 else math.nan,
            sum(e - s for s, e in sil) / span if span > 0 else 0.0,
            max((e - s for s, e in sil), default=0.0),
            float(np.mean(gaps)) if gaps else 0.0,
            float(np.mean(pauses)) if pauses else 0.0,
            float(np.mean(latencies)) if latencies else math.nan,
            float(np.mean(q_latency)) if q_latency else math.nan,
            per_min(sum(1 for s0, _ in pauses_framed if a <= s0 < b)),
            per_min(sum(1 for _, _, o in offsets if o < 0)),
            per_min(sum(1 for e in events if e.kind == "interruption" and e.speaker in clients)),
            per_min(sum(1 for e in events if e.successful and e.speaker in clients)),
            per_min(sum(1 for e in events if e.kind == "interruption" and e.speaker in therapists)),
            per_min(sum(1 for e in events if e.kind == "interruption" and e.speaker in parents)),
            per_min(sum(1 for e in events if e.kind == "backchannel" and e.speaker in clients)),
            per_min(len(ft_client)),
            float(np.mean([t.duration for t in ft_client])) if ft_client else 0.0,
            float(np.mean([t.duration for t in ft_therapist])) if ft_therapist else 0.0,
            float(np.mean([m.n_words for m in cm])) if cm else 0.0,
            minimal_share,
            per_min(sum(1 for m in cm if m.is_minimal_response)),
            per_min(sum(1 for m in cm if m.is_backchannel)),
            sum(m.negations for m in cm) / len(cm) if cm else 0.0,
            per_min(sum(m.refusals for m in cm)),
            per_min(sum(m.complaints for m in cm)),
            per_min(sum(m.deference for m in cm)),
            per_min(len(questions)),
            float(best_run),
            per_min(after_silence),
            therapist_speech / speech_time if withdrawn and speech_time > 0 else math.nan,
            mlu_t,
            t_syl / t_words if t_words else math.nan,
            mlu_t / mlu_c if math.isfinite(mlu_t) and math.isfinite(mlu_c) and mlu_c > 0 else math.nan,
            wmean({i: p.f0_median_hz for i, p in client_prosody.items()}),
            wmean({i: p.f0_range_st for i, p in client_prosody.items()}),
            wmean({i: p.intensity_db for i, p in client_prosody.items()}),
            syl / span_s if span_s > 0 else math.nan,
            f0_z,
            wmean(z_range),
            int_z,
            rate_z,
            float(np.mean(arousal)) if arousal else math.nan,
            _pearson([(tp.intensity_db, cp.intensity_db) for tp, cp in win_pairs]),
            _pearson([(tp.f0_median_hz, cp.f0_median_hz) for tp, cp in win_pairs]),
        )
        assert len(values) == len(FEATURE_NAMES)
        # the judging gate's speech time counts two people talking at once once; the shares above keep the sum of
        # the speakers' times as their denominator (the shipped models were trained on those values)
        frames.append(FeatureFrame(round(a, 3), round(b, 3), tuple(float(v) for v in values),
                                   round(_covered_s(turns), 3)))
    return SessionFeatures(FEATURE_NAMES, FEATURE_UNITS, tuple(frames))


def session_markers(diarization: Diarization, roles: RoleAssignment, utterances: Sequence[Utterance],
                    prosody: Sequence[TurnProsody], *, duration_s: float, settings: FeatureSettings,
                    markers: Sequence[UtteranceMarkers] | None = None,
                    speech: Sequence[SpeechRegion] = ()) -> dict[str, dict[str, float | str]]:
    """Every marker in ``FEATURE_NAMES`` over the whole session (one window from 0 to ``duration_s``).

    Parameters are those of :func:`window_features`.

    Returns
    -------
    dict
        ``{name: {"value": float (NaN where undefined), "unit": str, "description": str}}`` in
        ``FEATURE_NAMES`` order.
    """
    feats = window_features(diarization, roles, utterances, prosody, duration_s=duration_s, settings=settings,
                            markers=markers, speech=speech, windows=[(0.0, max(duration_s, 1e-6))])
    values = feats.frames[0].values
    return {f.name: {"value": v, "unit": f.unit, "description": f.description} for f, v in zip(FEATURES, values)}
