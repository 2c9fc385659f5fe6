"""Per-window markers on a constructed session with known answers."""

from __future__ import annotations

import math

import pytest

from pipeline.features import FEATURE_NAMES, FEATURE_UNITS, FEATURES, window_bounds, window_features
from pipeline.settings import FeatureSettings
from pipeline.turns import utterances
from pipeline.types import Diarization, RoleAssignment, SpeakerTurn as T, Transcript, TurnProsody, Word

ROLES = RoleAssignment({"T": "therapist", "C": "client"}, "test")


def test_every_feature_has_a_unit_and_description():
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) == len(FEATURE_UNITS)
    assert all(f.unit and f.description for f in FEATURES)


def test_window_bounds():
    assert window_bounds(20, window_s=30, hop_s=10) == [(0.0, 20.0)]
    assert window_bounds(55, window_s=30, hop_s=10) == [(0.0, 30.0), (10.0, 40.0), (20.0, 50.0), (25.0, 55.0)]
    assert window_bounds(0, window_s=30, hop_s=10) == []


def _session():
    # therapist asks three questions; the client answers two with one word after 3 s, then talks.
    turns = (T(0, 2, "T"), T(5, 5.5, "C"), T(6, 8, "T"), T(11, 11.4, "C"), T(12, 14, "T"), T(14.5, 24, "C"))
    words = (Word(0, 2, "Hoe gaat het?", 1, "T"), Word(5, 5.5, "Goed.", 1, "C"),
             Word(6, 8, "Wat heb je gedaan?", 1, "T"), Word(11, 11.4, "Niks.", 1, "C"),
             Word(12, 14, "Vertel eens?", 1, "T"),
             *[Word(14.5 + i, 15.3 + i, "woord", 1, "C") for i in range(9)])
    transcript = Transcript(words, "nl", 1.0, 30.0)
    utts = utterances(transcript, ROLES)
    prosody = tuple(TurnProsody(t.start, t.end, t.speaker, 200.0 if t.speaker == "C" else 120.0, 2.0, -20.0, 0.8)
                    for t in turns)
    return Diarization(turns, ("T", "C"), "test"), utts, prosody


def test_window_features_known_values():
    dia, utts, prosody = _session()
    feats = window_features(dia, ROLES, utts, prosody, duration_s=30.0, settings=FeatureSettings())
    assert len(feats.frames) == 1 and feats.frames[0].speech_s == pytest.approx(16.4)
    v = dict(zip(feats.feature_names, feats.frames[0].values))
    assert v["client_speech_share"] == pytest.approx(10.4 / 16.4)
    # silence counts from the first to the last speech (0–24 s): 3 + 0.5 + 3 + 0.6 + 0.5 s
    assert v["silence_share"] == pytest.approx(7.6 / 24)
    assert v["longest_silence_s"] == pytest.approx(3.0)
    assert v["client_response_latency_s"] == pytest.approx((3 + 3 + 0.5) / 3)
    assert v["therapist_question_rate_per_min"] == pytest.approx(3 / 0.5)
    assert v["client_minimal_response_share"] == pytest.approx(2 / 3)
    assert v["client_turns_per_min"] == pytest.approx(3 / 0.5)
    assert v["overlap_rate_per_min"] == 0.0
    assert v["client_words_per_utterance"] == pytest.approx((1 + 1 + 9) / 3)
    # every client turn has the same prosody: z-scores are 0
    assert v["client_f0_z"] == 0.0 and v["client_intensity_z"] == 0.0


def test_empty_session_gives_defined_values():
    feats = window_features(Diarization((), (), "test"), ROLES, (), (), duration_s=30.0, settings=FeatureSettings())
    v = dict(zip(feats.feature_names, feats.frames[0].values))
    assert v["silence_share"] == 1.0 and math.isnan(v["client_speech_share"])
    assert feats.frames[0].speech_s == 0.0
    assert math.isnan(v["client_response_latency_s"])


def _pressure_session():
    """Therapist asks, waits 2.5 s with no answer, asks again; a minimal answer; a third question the client
    interrupts with a complaint; a backchannel; a closing line."""
    spec = [(0.0, 2.0, "T", "Hoe was school?"), (4.5, 6.0, "T", "Was het leuk?"), (6.5, 7.0, "C", "ja"),
            (7.5, 9.0, "T", "Wat deed je?"),
            (8.5, 12.0, "C", "het was gewoon stom en saai want de juf luistert nooit"),
            (12.5, 14.0, "T", "Dat klinkt vervelend."), (14.5, 15.0, "C", "mm"),
            (15.5, 17.0, "T", "Oké tot volgende week.")]
    turns = tuple(T(a, b, s) for a, b, s, _ in spec)
    words = tuple(Word(a, b, text, 1.0, s) for a, b, s, text in spec)
    utts = utterances(Transcript(words, "nl", 1.0, 30.0), ROLES)
    return Diarization(turns, ("T", "C"), "test"), utts


def test_window_speech_time_counts_overlapped_speech_once():
    """A window's ``speech_s`` decides whether it is judged (``ALLIANCE_MODEL__MIN_WINDOW_SPEECH_S``): it is time in
    which anyone speaks, so two people talking at once count once. Trial finding: 2.28 s of speech in a cut of the
    call became 3.06 s once the overlap stage gave its overlaps a second speaker, and the window was judged."""
    dia, utts = _pressure_session()  # 12.5 s of turns, 0.5 s of them two at once (7.5-9 T, 8.5-12 C)
    feats = window_features(dia, ROLES, utts, (), duration_s=30.0, settings=FeatureSettings())
    assert feats.frames[0].speech_s == pytest.approx(12.0)
    both = Diarization((T(1.0, 2.6, "T"), T(1.2, 2.8, "C")), ("T", "C"), "test")
    feats = window_features(both, ROLES, (), (), duration_s=30.0, settings=FeatureSettings())
    assert feats.frames[0].speech_s == pytest.approx(1.8)  # not 3.2: below the 3 s a window needs to be judged


def test_turn_taking_pressure_and_language_markers_known_values():
    dia, utts = _pressure_session()
    assert len(utts) == 8
    feats = window_features(dia, ROLES, utts, (), duration_s=30.0, settings=FeatureSettings())
    v = dict(zip(feats.feature_names, feats.frames[0].values))
    per_min = 2.0  # one event in the 30 s window
    assert v["therapist_speech_share"] == pytest.approx(8.0 / 12.5)
    assert v["mean_gap_s"] == pytest.approx(0.5)
    assert v["mean_pause_s"] == pytest.approx(2.5)  # the therapist's wait between two questions
    assert v["client_framed_pauses_per_min"] == pytest.approx(1 * per_min)
    assert v["client_response_latency_s"] == pytest.approx((0.5 - 0.5 + 0.5) / 3)
    assert v["client_interruptions_per_min"] == pytest.approx(1 * per_min)
    assert v["therapist_interruptions_per_min"] == 0.0
    assert v["therapist_mean_turn_s"] == pytest.approx((6.0 + 1.5 + 1.5 + 1.5) / 4)  # 0–6 s is one hold
    assert v["client_minimal_response_share"] == pytest.approx(2 / 3)  # no answer, then "ja"; the third is answered
    assert v["client_minimal_responses_per_min"] == pytest.approx(2 * per_min)  # "ja" and "mm"
    assert v["client_backchannels_per_min"] == pytest.approx(1 * per_min)
    assert v["client_negations_per_utterance"] == pytest.approx(1 / 3)  # "nooit" in one of 3 client utterances
    assert v["client_complaints_per_min"] == pytest.approx(2 * per_min)  # stom, saai
    assert v["therapist_question_run_max"] == 3.0
    assert v["therapist_questions_after_silence_per_min"] == pytest.approx(1 * per_min)
    assert v["client_question_latency_s"] == pytest.approx((0.5 - 0.5) / 2)  # "ja" after 0.5 s; the interruption
    assert v["therapist_share_client_withdrawn"] == pytest.approx(8.0 / 12.5)  # 2 of 3 questions: withdrawn
    assert v["therapist_mlu_words"] == pytest.approx(16 / 5)
    assert v["therapist_client_mlu_ratio"] == pytest.approx((16 / 5) / ((1 + 11 + 1) / 3))
    assert v["therapist_syllables_per_word"] > 1.0
    from pipeline.lexical import load_lexicon, utterance_markers

    client = [m for m in utterance_markers(utts, language=None, lexicon=load_lexicon()) if m.role == "client"]
    assert v["client_speaking_rate_syl_s"] == pytest.approx(sum(m.n_syllables for m in client) / 4.5)
    assert math.isnan(v["intensity_synchrony_r"])  # 3 therapist → client transfers: too few


def test_deference_per_minute_counts_the_clients_phrases_only():
    # the therapist's own "als jij het zegt" is not the client's deference
    spec = [(0.0, 2.0, "T", "Zullen we tekenen?"), (2.5, 4.0, "C", "Als jij het zegt."),
            (4.5, 6.0, "T", "Of wil je liever praten?"), (6.5, 8.5, "C", "Jij weet het beter, wat jij wil."),
            (9.0, 11.0, "T", "Als jij het zegt, dan tekenen we.")]
    turns = tuple(T(a, b, s) for a, b, s, _ in spec)
    utts = utterances(Transcript(tuple(Word(a, b, text, 1.0, s) for a, b, s, text in spec), "nl", 1.0, 30.0), ROLES)
    feats = window_features(Diarization(turns, ("T", "C"), "test"), ROLES, utts, (), duration_s=30.0,
                            settings=FeatureSettings())
    v = dict(zip(feats.feature_names, feats.frames[0].values))
    assert v["client_deference_per_min"] == pytest.approx(3 * 2.0)  # 3 phrases in a 30 s window


def test_synchrony_and_arousal_known_values():
    turns, prosody = [], []
    for i in range(5):
        t0 = 4.0 * i
        turns += [T(t0, t0 + 1.5, "T"), T(t0 + 2.0, t0 + 3.5, "C")]
        prosody += [TurnProsody(t0, t0 + 1.5, "T", 120.0 + 10 * i, 4.0, -30.0 + 5 * i, 0.8),
                    TurnProsody(t0 + 2.0, t0 + 3.5, "C", 250.0 - 10 * i, 4.0, -32.0 + 5 * i, 0.8)]
    dia = Diarization(tuple(turns), ("T", "C"), "test")
    feats = window_features(dia, ROLES, (), tuple(prosody), duration_s=20.0, settings=FeatureSettings(),
                            windows=[(0.0, 20.0), (16.0, 20.0)])
    whole = dict(zip(feats.feature_names, feats.frames[0].values))
    assert whole["intensity_synchrony_r"] == pytest.approx(1.0)  # both rise together
    assert whole["f0_synchrony_r"] == pytest.approx(-1.0)  # therapist F0 rises while the client's falls
    assert whole["client_intensity_z"] == pytest.approx(0.0, abs=1e-9)  # the session is its own baseline
    last = dict(zip(feats.feature_names, feats.frames[1].values))
    assert last["client_intensity_db"] == pytest.approx(-12.0)
    assert last["client_intensity_z"] == pytest.approx(2 / math.sqrt(2))  # (x - mean) / sd over -32..-12
    assert last["client_f0_z"] == pytest.approx(-2 / math.sqrt(2))
    assert last["client_arousal_z"] == pytest.approx(0.0, abs=1e-9)  # louder but lower: no net rise; no words
    assert math.isnan(last["intensity_synchrony_r"])


def test_session_markers_cover_every_marker_with_units():
    from pipeline.features import session_markers

    dia, utts = _pressure_session()
    m = session_markers(dia, ROLES, utts, (), duration_s=30.0, settings=FeatureSettings())
    assert list(m) == list(FEATURE_NAMES)
    assert m["therapist_question_run_max"]["value"] == 3.0 and m["therapist_question_run_max"]["unit"] == "questions"


def test_pauses_inside_a_turn_come_from_the_vad_and_session_z_scores_average_zero():
    from pipeline.features import session_markers
    from pipeline.types import SpeechRegion

    # one bridged client turn 0-10 s with VAD speech 0-4 and 5-10 s: a 1 s pause inside the turn
    dia = Diarization((T(0, 10, "C"), T(11, 13, "T")), ("T", "C"), "test")
    speech = (SpeechRegion(0, 4), SpeechRegion(5, 10), SpeechRegion(11, 13))
    prosody = (TurnProsody(0, 10, "C", 250.0, 4.0, -20.0, 0.8), TurnProsody(11, 13, "T", 120.0, 4.0, -25.0, 0.8))
    m = session_markers(dia, ROLES, (), prosody, duration_s=13.0, settings=FeatureSettings(), speech=speech)
    assert m["mean_pause_s"]["value"] == pytest.approx(1.0)
    # client turns of unequal length and level: the duration-weighted session z-score is 0
    dia = Diarization((T(0, 9, "C"), T(10, 11, "C")), ("C",), "test")
    prosody = (TurnProsody(0, 9, "C", 250.0, 4.0, -20.0, 0.8), TurnProsody(10, 11, "C", 300.0, 6.0, -10.0, 0.8))
    m = session_markers(dia, ROLES, (), prosody, duration_s=11.0, settings=FeatureSettings())
    assert m["client_intensity_z"]["value"] == pytest.approx(0.0, abs=1e-9)
    assert m["client_f0_z"]["value"] == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(m["client_minimal_response_share"]["value"])  # no questions: undefined, not 0
