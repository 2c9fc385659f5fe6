"""A window's rupture probability in the context of its neighbours (models.artifact.context_mean)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from models.artifact import ModelBundle, context_mean
from models.flagging import flag_windows
from pipeline.features import FEATURE_NAMES, FEATURE_UNITS
from pipeline.types import FeatureFrame, SessionFeatures


def test_context_mean_averages_neighbours_within_a_session_only():
    p = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.1, 0.9, 0.0], [1.0, 0.0, 0.0],  # session a
                  [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])  # session b
    sessions = np.array(["a", "a", "a", "a", "b", "b"])
    out = context_mean(p, sessions, 3)
    # window 2 of a: mean of windows 1..3; window 3 (the last): its edge value counted twice
    np.testing.assert_allclose(out[2], [0.7, 0.3, 0.0])
    np.testing.assert_allclose(out[3], [(0.1 + 1.0 + 1.0) / 3, 0.3, 0.0])
    np.testing.assert_allclose(out[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(out[4:], p[4:])  # session b never sees session a's windows
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    np.testing.assert_array_equal(context_mean(p, sessions, 1), p)
    ones = np.tile([[0.1, 0.7, 0.2]], (50, 1))  # the filter's running sum must not step outside [0, 1]
    assert context_mean(np.c_[np.zeros(50), np.ones(50), np.zeros(50)], np.zeros(50), 5).max() <= 1.0
    np.testing.assert_allclose(context_mean(ones, np.zeros(50), 5), ones)
    with pytest.raises(ValueError, match="odd"):
        context_mean(p, sessions, 2)


class _FirstMarker:
    """A fake calibrated model: withdrawal probability is the first marker's value."""

    classes_ = np.array([0, 1, 2])

    def predict_proba(self, X):
        w = np.clip(np.nan_to_num(X[:, 0]), 0, 1)
        return np.column_stack([1 - w, w, np.zeros_like(w)])


def _session(values, speech_s=20.0):
    rest = [math.nan] * (len(FEATURE_NAMES) - 1)
    frames = tuple(FeatureFrame(10.0 * i, 10.0 * i + 30.0, tuple([v] + rest), speech_s) for i, v in enumerate(values))
    return SessionFeatures(FEATURE_NAMES, FEATURE_UNITS, frames)


@pytest.fixture(autouse=True)
def _no_reasons(monkeypatch):
    monkeypatch.setattr("models.flagging.reason_facts", lambda *a, **k: ((), ()))  # the fake model has no markers


def _bundle(context):
    card = {"version": "test", "feature_names": list(FEATURE_NAMES),
            "threshold": {"value": 0.5, "per_class": {"withdrawal": 0.5, "confrontation": 0.5}}}
    if context:
        card["context"] = {"windows": context}
    return ModelBundle(_FirstMarker(), card, Path("."))


def test_one_window_alone_is_no_flag_when_the_model_reads_its_context():
    lone = _session([0.0, 0.0, 0.0, 0.9, 0.0, 0.0, 0.0])
    episode = _session([0.0, 0.0, 0.9, 0.9, 0.9, 0.0, 0.0])
    # a model without context (sim-v1's card) flags the lone window, as before
    assert [(f.start, f.end) for f in flag_windows(lone, _bundle(None))] == [(30.0, 60.0)]
    # with a context of 3 windows: the lone window averages to 0.3, the episode's middle to 0.9 and its edges 0.6
    assert flag_windows(lone, _bundle(3)) == ()
    flags = flag_windows(episode, _bundle(3))
    assert [(f.start, f.end, f.marker_type) for f in flags] == [(20.0, 70.0, "withdrawal")]
    assert flags[0].probability == pytest.approx(0.9)


def test_windows_without_speech_are_left_out_of_the_context():
    # the silent window between two high ones is never flagged and does not dilute them (as in training, where
    # windows with less than min_speech_s are dropped before the mean)
    s = _session([0.9, 0.9, 0.0, 0.9, 0.9])
    frames = list(s.frames)
    frames[2] = FeatureFrame(frames[2].start, frames[2].end, frames[2].values, 1.0)
    s = SessionFeatures(FEATURE_NAMES, FEATURE_UNITS, tuple(frames))
    flags = flag_windows(s, _bundle(3), threshold=0.7, min_speech_s=3.0)
    # windows 1 and 3 keep 0.9 (averaged with their speaking neighbours only; with the silent window's 0 they would
    # fall to 0.6 and leave two flags): one flag over windows 0, 1, 3 and 4
    assert [(f.start, f.end) for f in flags] == [(0.0, 70.0)]
    assert flags[0].probability == pytest.approx(0.9)


def test_a_flag_in_context_gives_the_reasons_of_its_strongest_window(monkeypatch):
    # windows 1-3 share window 2's mean (0.3 each); the first of them must not lend the flag its own (ordinary)
    # markers as reasons: the window whose own probability is highest does
    from pipeline.types import ReasonFact

    seen = []

    def facts(bundle, x, k, **kw):
        seen.append(float(x[0]))
        return (ReasonFact(FEATURE_NAMES[0], float(x[0]), math.nan),), ()

    monkeypatch.setattr("models.flagging.reason_facts", facts)
    flags = flag_windows(_session([0.0, 0.0, 0.9, 0.0, 0.0]), _bundle(3), threshold=0.25)
    assert [(f.start, f.end) for f in flags] == [(10.0, 60.0)]
    assert flags[0].probability == pytest.approx(0.3)
    assert seen == [0.9] and flags[0].reason_facts[0].value == pytest.approx(0.9)


def _confirming_bundle(confirm):
    card = {"version": "test", "feature_names": list(FEATURE_NAMES),
            "threshold": {"value": 0.5, "per_class": {"withdrawal": 0.5, "confrontation": 0.5},
                          "confirm": {"withdrawal": confirm}}}
    return ModelBundle(_FirstMarker(), card, Path("."))


def test_confirmed_windows_keep_only_stretches_that_reach_the_confirmation_level():
    from models.artifact import confirmed_windows

    p = np.array([0.6, 0.9, 0.6, 0.1, 0.6, 0.6, 0.1, 0.6, 0.95])
    s = np.array(["a"] * 7 + ["b"] * 2)
    # stretches: a0-2 (reaches 0.9), a4-5 (only 0.6), b7-8 (0.95; a session of its own, not a2's neighbour)
    np.testing.assert_array_equal(confirmed_windows(p, 0.5, 0.8, s),
                                  [1, 1, 1, 0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(confirmed_windows(p, 0.5, None, s), p >= 0.5)  # no level: the threshold alone
    np.testing.assert_array_equal(confirmed_windows(p, 0.5, 0.4, s), p >= 0.5)  # a level below it changes nothing
    # with window times (30-s windows every 10 s), windows two apart still touch: a0-2 and a4-5 are one stretch
    starts = np.array([0, 10, 20, 30, 40, 50, 60, 0, 10], dtype=float)
    np.testing.assert_array_equal(confirmed_windows(p, 0.5, 0.8, s, starts, starts + 30),
                                  [1, 1, 1, 0, 1, 1, 0, 1, 1])
    assert confirmed_windows(np.zeros(0), 0.5, 0.8, np.zeros(0)).shape == (0,)


def test_a_stretch_that_only_brushes_the_threshold_is_not_flagged_with_a_confirmation_level():
    brush = _session([0.0, 0.0, 0.0, 0.6, 0.6, 0.0, 0.0, 0.0, 0.0])
    core = _session([0.0, 0.0, 0.0, 0.6, 0.9, 0.6, 0.0, 0.0, 0.0])
    assert [(f.start, f.end) for f in flag_windows(brush, _bundle(None))] == [(30.0, 70.0)]  # a card without it
    assert flag_windows(brush, _confirming_bundle(0.8)) == ()
    flags = flag_windows(core, _confirming_bundle(0.8))
    assert [(f.start, f.end, f.probability) for f in flags] == [(30.0, 80.0, 0.9)]  # the whole stretch, not its core
    # a threshold set by hand (ALLIANCE_MODEL__FLAG_THRESHOLD) flags every stretch at it
    assert [(f.start, f.end) for f in flag_windows(brush, _confirming_bundle(0.8), threshold=0.5)] == [(30.0, 70.0)]


def test_recall_and_precision_count_the_windows_the_flags_cover():
    from models.training import type_metrics

    y = np.array([0, 1, 1, 1, 0, 0, 0, 0])
    p1 = np.array([0.1, 0.6, 0.9, 0.6, 0.1, 0.6, 0.6, 0.1])
    proba = np.column_stack([1 - p1, p1, np.zeros_like(p1)])
    plain = type_metrics(y, proba, {"withdrawal": 0.5, "confrontation": 0.5})["withdrawal"]
    assert (plain["recall"], plain["precision"], plain["flagged"]) == (1.0, 0.6, 5)
    held = type_metrics(y, proba, {"withdrawal": 0.5, "confrontation": 0.5},
                        confirm={"withdrawal": 0.8}, sessions=np.zeros(8))["withdrawal"]
    assert (held["recall"], held["precision"], held["flagged"], held["confirm"]) == (1.0, 1.0, 3, 0.8)
    assert held["auroc"] == plain["auroc"]  # the ranking is the probabilities', untouched


def test_a_card_with_a_confirmation_level_that_is_not_a_probability_is_refused(tmp_path):
    from models.artifact import ModelArtifactError, _check_thresholds

    good = {"value": 0.3, "per_class": {"withdrawal": 0.3}, "confirm": {"withdrawal": 0.5}}
    _check_thresholds(tmp_path, good)
    for bad in ({"withdrawal": 1.5}, {"withdrawal": "0.5"}, {"anger": 0.5}, [0.5]):
        with pytest.raises(ModelArtifactError, match="threshold.confirm"):
            _check_thresholds(tmp_path, {**good, "confirm": bad})
