"""Markers read against the session's own usual value (models.artifact.session_baseline, issue 15)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.artifact import ARTIFACTS_DIR, ModelBundle, load_model, session_baseline
from models.flagging import flag_windows, reason_facts
from models.training import make_pipeline
from models.transfer import marker_use
from pipeline.errors import ModelArtifactError
from pipeline.features import FEATURE_NAMES, FEATURE_UNITS
from pipeline.types import FeatureFrame, SessionFeatures

NAN = math.nan


def test_departures_are_from_the_median_window_of_the_same_session_only():
    X = np.array([[1.0, 10.0], [3.0, NAN], [5.0, 30.0], [7.0, 20.0], [100.0, 40.0]])
    sessions = np.array(["a", "a", "b", "a", "b"])  # windows of a session need not be contiguous
    out = session_baseline(X, sessions)
    assert out.shape == (5, 4)
    np.testing.assert_array_equal(out[:, :2], X)  # the markers themselves come first, unchanged
    # session a: medians 3 and 15 (NaN left out); session b: medians 52.5 and 35
    np.testing.assert_allclose(out[:, 2:], [[-2.0, -5.0], [0.0, NAN], [-47.5, -5.0], [4.0, 5.0], [47.5, 5.0]])
    # one window: nothing to compare with; a marker never measured in the session stays unknown
    np.testing.assert_array_equal(session_baseline(np.array([[4.0, NAN]]), np.array([0]))[0, 2:], [0.0, NAN])
    with pytest.raises(ValueError, match="one session per window"):
        session_baseline(X, sessions[:3])


def test_a_level_that_a_session_keeps_throughout_gives_no_departure():
    quiet = np.column_stack([np.full(8, 0.2), np.full(8, 4.0)])  # a child who says little all session
    stretch = quiet.copy()
    stretch[5:7] = [0.05, 9.0]  # and one who goes quiet for two windows
    out = session_baseline(np.vstack([quiet, stretch]), np.repeat(["quiet", "stretch"], 8))
    np.testing.assert_array_equal(out[:8, 2:], 0.0)
    np.testing.assert_allclose(out[8:, 2:][5], [-0.15, 5.0])
    np.testing.assert_array_equal(out[8:, 2:][[0, 1, 2, 3, 4, 7]], 0.0)


class _Recorder:
    """A fake model that keeps what it was given; withdrawal probability is the last input column."""

    classes_ = np.array([0, 1, 2])

    def __init__(self):
        self.seen = []

    def predict_proba(self, X):
        self.seen.append(np.array(X))
        w = np.clip(np.nan_to_num(X[:, -1]), 0, 1)
        return np.column_stack([1 - w, w, np.zeros_like(w)])


def _card(baseline: bool | None) -> dict:
    card = {"version": "test", "feature_names": ["client_speech_share"],
            "threshold": {"value": 0.5, "per_class": {"withdrawal": 0.5, "confrontation": 0.5}}}
    if baseline is not None:
        card["inputs"] = {"session_baseline": baseline}
    return card


def _session(values, speech_s=20.0):
    j = FEATURE_NAMES.index("client_speech_share")
    frames = []
    for i, v in enumerate(values):
        row = [NAN] * len(FEATURE_NAMES)
        row[j] = v
        frames.append(FeatureFrame(10.0 * i, 10.0 * i + 30.0, tuple(row), speech_s))
    return SessionFeatures(FEATURE_NAMES, FEATURE_UNITS, tuple(frames))


def test_flags_and_probabilities_give_the_model_the_session_baseline_its_card_asks_for(monkeypatch):
    monkeypatch.setattr("models.flagging.reason_facts", lambda *a, **k: ((), ()))
    values = [0.1, 0.1, 0.9, 0.1, 0.1]
    silent = _session(values, speech_s=20.0)
    old = ModelBundle(_Recorder(), _card(None), Path("."))  # sim-v1 and sim-v2: the markers alone
    flag_windows(silent, old)
    assert old.estimator.seen[-1].shape == (5, 1)
    new = ModelBundle(_Recorder(), _card(True), Path("."))
    flags = flag_windows(silent, new)
    np.testing.assert_allclose(new.estimator.seen[-1], np.column_stack([values, np.subtract(values, 0.1)]))
    assert [(f.start, f.end) for f in flags] == [(20.0, 50.0)]  # departure 0.8 >= 0.5
    # windows without enough speech are never flagged and take no part in the session's median
    mixed = _session([5.0, 0.1, 0.1, 0.9, 0.1])
    frames = list(mixed.frames)
    frames[0] = FeatureFrame(frames[0].start, frames[0].end, frames[0].values, 0.5)
    flag_windows(SessionFeatures(FEATURE_NAMES, FEATURE_UNITS, tuple(frames)), new)
    np.testing.assert_allclose(new.estimator.seen[-1][:, 1], [0.0, 0.0, 0.8, 0.0])
    # evaluation: each session against its own median
    p = new.probabilities(np.array([[0.1], [0.9], [0.1], [0.5], [0.5], [0.5]]), np.repeat(["a", "b"], 3))
    np.testing.assert_allclose(p[:, 1], [0.0, 0.8, 0.0, 0.0, 0.0, 0.0])


def _fitted_on_departures(rng):
    """A linear pipeline fitted on 3 markers and their departures, where only marker 1's departure separates."""
    n_sessions, per = 12, 20
    X, y, sessions = [], [], []
    for s in range(n_sessions):
        level = rng.normal(0, 3, size=3)  # every session has its own level of every marker
        Xs = level + rng.normal(0, 0.3, size=(per, 3))
        ys = np.zeros(per, dtype=int)
        ys[5:9] = 1
        ys[12:15] = 2
        Xs[5:9, 1] += 2.0
        Xs[12:15, 2] -= 2.0
        X.append(Xs), y.append(ys), sessions.append(np.full(per, s))
    X, y, sessions = np.vstack(X), np.concatenate(y), np.concatenate(sessions)
    inputs = session_baseline(X, sessions)
    return make_pipeline().fit(inputs, y), X, inputs, y


def test_reasons_and_marker_use_count_a_marker_and_its_departure_as_one():
    rng = np.random.default_rng(0)
    model, X, inputs, y = _fitted_on_departures(rng)
    names = ["client_speech_share", "client_response_latency_s", "client_intensity_z"]
    card = {**_card(True), "feature_names": names}
    bundle = ModelBundle(model, card, Path("."))
    i = 5  # a withdrawal window of the first session: its latency is 2 above the session's usual
    usual = np.median(np.delete(X[:20], i, axis=0), axis=0)
    facts, _ = reason_facts(bundle, X[i], 1, usual=usual, model_x=inputs[i])
    assert [f.marker for f in facts][:1] == ["client_response_latency_s"]
    # without the window's input the departure is taken from the usual value given
    facts_again, _ = reason_facts(bundle, X[i], 1, usual=usual)
    assert [f.marker for f in facts_again][:1] == ["client_response_latency_s"]
    use = marker_use(model, inputs, y, names=names)
    assert set(use) == set(names)
    assert use["client_response_latency_s"]["importance"] > 0.05
    assert use["client_intensity_z"]["importance"] > 0.05
    assert use["client_speech_share"]["importance"] < 0.01
    with pytest.raises(ValueError, match="one or two columns per marker"):
        marker_use(model, inputs[:, :5], y, names=names)


@pytest.fixture
def baseline_model(tmp_path):
    """A saved artifact whose estimator reads the session baseline (the shipped one, when it is such a model)."""
    shipped = ARTIFACTS_DIR / (ARTIFACTS_DIR / "DEFAULT").read_text().strip()
    out = tmp_path / "copied-model"
    shutil.copytree(shipped, out)
    return out


def test_a_card_that_misstates_the_model_inputs_is_refused_in_one_line(baseline_model):
    card = json.loads((baseline_model / "model_card.json").read_text())
    flipped = not card.get("inputs", {}).get("session_baseline", False)
    card["inputs"] = {"session_baseline": flipped}
    (baseline_model / "model_card.json").write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(ModelArtifactError, match=r"copied-model: the model reads \d+ inputs where its card describes"):
        load_model(baseline_model)
    card["inputs"] = {"session_baseline": "yes"}
    (baseline_model / "model_card.json").write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(ModelArtifactError, match="copied-model: the card's inputs.session_baseline must be true or"):
        load_model(baseline_model)
