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


def test_a_truncated_recording_is_counted_on_what_was_decoded_and_said(tmp_path, monkeypatch):
    """A file cut short (its header declares more than it holds) still counts, with one line saying so."""
    from pipeline.audio import save_wav

    whole = tmp_path / "whole.wav"
    save_wav(whole, np.zeros(30 * 16000, np.float32), 16000)
    data = whole.read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 3])  # the header still says 30 s
    whole.unlink()

    import models.flagging

    one = type("Flag", (), {"marker_type": "withdrawal"})()
    monkeypatch.setattr(models.flagging, "flag_windows", lambda *args, **kwargs: [one])
    monkeypatch.setattr(fa, "recording_features", lambda path, settings, backends=None: (_features(20.0), 10.0))
    bundle = ModelBundle(_Calm(), {"version": "t", "feature_names": list(FEATURE_NAMES),
                                   "threshold": {"value": 0.5, "per_class": {}}}, tmp_path)
    lines = []
    settings = type("S", (), {"model": type("M", (), {"min_window_speech_s": 3.0})(), "audio": None})()
    out = fa.false_alarms(bundle, [tmp_path], settings=settings, progress=lines.append)
    (row,) = out["files"]
    assert row["minutes"] == pytest.approx(10 / 60, abs=0.01) and row["flags"] == 1
    assert "truncated" in row["warning"] and "30.0" in row["warning"]
    assert lines == [f"cut.wav: 1 flag in 0.2 min; {row['warning']}"]
    assert f"cut.wav: {row['warning']}" in fa.format_false_alarms(out)
