"""Flags per hour on unannotated recordings: a bad or silent file is set aside in one line, the rest still count
(fresh-user trial, issue 15: one empty file threw away a whole evaluate run; silence lowered the rate)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models import false_alarms as fa
from models.artifact import ModelBundle
from pipeline.errors import PipelineError
from pipeline.features import FEATURE_NAMES, FEATURE_UNITS
from pipeline.types import FeatureFrame, SessionFeatures


class _Calm:
    classes_ = np.array([0, 1, 2])

    def predict_proba(self, X):
        return np.tile([0.9, 0.05, 0.05], (X.shape[0], 1))


def _features(speech_s):
    values = tuple([math.nan] * len(FEATURE_NAMES))
    return SessionFeatures(FEATURE_NAMES, FEATURE_UNITS,
                           tuple(FeatureFrame(10.0 * i, 10.0 * i + 30.0, values, speech_s) for i in range(10)))


def test_a_broken_or_silent_recording_is_set_aside_and_the_others_still_count(tmp_path, monkeypatch):
    for name in ("a-good.wav", "b-empty.wav", "c-silent.wav"):
        (tmp_path / name).write_bytes(b"x")

    def features(path, settings, backends=None):
        if path.name == "b-empty.wav":
            raise PipelineError(f"{path.name}: file is empty")
        return _features(0.0 if path.name == "c-silent.wav" else 20.0), 120.0

    monkeypatch.setattr(fa, "recording_features", features)
    bundle = ModelBundle(_Calm(), {"version": "t", "feature_names": list(FEATURE_NAMES),
                                   "threshold": {"value": 0.5, "per_class": {}}}, tmp_path)
    lines = []
    out = fa.false_alarms(bundle, [tmp_path], settings=type("S", (), {"model": type("M", (), {
        "min_window_speech_s": 3.0})()})(), progress=lines.append)
    assert [f["file"] for f in out["files"]] == ["a-good.wav"]
    assert out["overall"]["minutes"] == 2.0 and out["overall"]["files"] == 1
    assert [(s["file"], s["why"]) for s in out["skipped"]] == [("b-empty.wav", "b-empty.wav: file is empty"),
                                                              ("c-silent.wav", "no speech found")]
    assert any(line.startswith("b-empty.wav: set aside") for line in lines)
    table = fa.format_false_alarms(out)
    assert "set aside" in table and "c-silent.wav" in table
