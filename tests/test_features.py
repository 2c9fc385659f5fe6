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
