"""Retraining on annotated sessions: thresholds, grouped cross-validation, and the researcher's two commands."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from flows.cli import app
from models.training import choose_threshold, cross_validate

runner = CliRunner()


def test_threshold_is_the_highest_that_reaches_the_target_recall():
    y = np.array([True, True, True, True, False])
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    assert choose_threshold(y, p, 0.75) == 0.7  # 3 of 4 positives flagged
    assert choose_threshold(y, p, 1.0) == 0.6
    assert choose_threshold(np.zeros(3, bool), np.ones(3), 0.8) == 0.5


def test_grouped_cross_validation_on_separable_windows():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 60)
    X = rng.standard_normal((180, 40)) + np.eye(40)[y * 3] * 3.0
    groups = np.array([f"c{i % 6}" for i in range(180)])
    cv = cross_validate(X, y, groups, target_recall=0.8)
    assert cv["n_splits"] == 5 and sum(f["test_windows"] for f in cv["folds"]) == 180
    for name in ("withdrawal", "confrontation"):
        m = cv["metrics"][name]
        assert m["auroc"] > 0.95 and m["recall"] >= 0.8 and m["n_positive"] == 60
        assert m["calibration"] and math.isfinite(m["brier"])


def test_cross_validation_needs_two_clients_and_both_rupture_types():
    from pipeline.errors import InputError

    X, y = np.zeros((6, 40)), np.array([0, 1, 2, 0, 1, 2])
    with pytest.raises(InputError, match="at least 2 clients"):
        cross_validate(X, y, np.array(["a"] * 6))
    with pytest.raises(InputError, match="no window is labelled confrontation"):
        cross_validate(X, np.array([0, 1, 0, 1, 0, 1]), np.array(list("aabbcc")))


@pytest.fixture(scope="module")
def small_sets(tmp_path_factory):
    from models.simulate import simulate

    root = tmp_path_factory.mktemp("annotated")
    train = simulate(root / "train", sessions=4, language="nl", seed=500, minutes=(0.5, 0.5), episode_s=(18.0, 22.0))
    held = simulate(root / "held", sessions=2, language="nl", seed=700, minutes=(0.5, 0.5), episode_s=(18.0, 22.0))
    return root / "train", root / "held", train, held


@pytest.mark.slow
def test_researcher_goes_from_annotated_sessions_to_an_active_model(prefect_harness, small_sets, tmp_path):
    train_dir, held_dir, _, _ = small_sets
    result = runner.invoke(app, ["retrain", "--data", str(train_dir), "--holdout", str(held_dir),
                                 "--version", "clinic-v1"])
    assert result.exit_code == 0, result.output
    assert "Cross-validation grouped by client" in result.output and "alliance activate-model clinic-v1" in result.output
    from pipeline.settings import Settings

    folder = Settings().data_dir / "models" / "clinic-v1"
    card = json.loads((folder / "model_card.json").read_text())
    assert (folder / "MODEL_CARD.md").read_text().startswith("Trained on 4 annotated sessions of 2 clients (nl).")
    assert set(card["threshold"]["per_class"]) == {"withdrawal", "confrontation"}
    assert card["metrics"]["cross_validation"]["grouped_by"] == "client"
    # the second command makes it the active model
    result = runner.invoke(app, ["activate-model", "clinic-v1"])
    try:
        _check_active(result, card, held_dir, train_dir, tmp_path)
    finally:
        (Settings().data_dir / "models" / "ACTIVE").unlink(missing_ok=True)


def _check_active(result, card, held_dir, train_dir, tmp_path):
    assert result.exit_code == 0 and "Active model" in result.output
    # evaluate (default: the active model) prints exactly what the card recorded for the held-out sessions
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["evaluate", "--data", str(held_dir), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "Model clinic-v1 on 2 sessions of 1 clients" in result.output
    assert json.loads(out.read_text())["types"] == card["metrics"]["heldout"]["types"]
    # never overwritten
    result = runner.invoke(app, ["retrain", "--data", str(train_dir), "--version", "clinic-v1"])
    assert result.exit_code == 1 and "already exists" in result.output
    # the analysis now flags with the active model
    result = runner.invoke(app, ["analyze", str(next(held_dir.iterdir()) / "recording.wav"), "--out",
                                 str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s" / "session.json").read_text())["model_version"] == "clinic-v1"


@pytest.mark.slow
def test_bad_annotations_stop_retraining_before_any_analysis(prefect_harness, small_sets, tmp_path):
    import shutil

    _, _, train, _ = small_sets
    data = tmp_path / "bad"
    for p in train[:2]:
        shutil.copytree(p, data / p.name)
    bad = data / train[1].name / "ruptures.csv"
    bad.write_text("start_s,end_s,label\n10,20,withdrawal\n15,25,confrontation\n")
    result = runner.invoke(app, ["retrain", "--data", str(data), "--version", "bad-v1"])
    assert result.exit_code == 1
    assert "ruptures.csv: line 3 overlaps line 2" in " ".join(result.output.split())
    (data / train[1].name / "metadata.json").unlink()
    result = runner.invoke(app, ["retrain", "--data", str(data), "--version", "bad-v1"])
    assert result.exit_code == 1 and "missing metadata.json" in " ".join(result.output.split())


def test_a_fold_whose_training_clients_hold_one_label_is_a_clear_error():
    from pipeline.errors import InputError

    X = np.random.default_rng(0).standard_normal((6, 40))
    with pytest.raises(InputError, match="fold .*only 'none'"):
        cross_validate(X, np.array([0, 0, 0, 1, 2, 0]), np.array(list("aaabbb")))


def test_activating_an_unknown_model_lists_the_known_ones(tmp_path, monkeypatch):
    from models.artifact import activate_model
    from pipeline.errors import ModelArtifactError
    from pipeline.settings import Settings

    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path))
    with pytest.raises(ModelArtifactError, match="no model 'nope' .*available: none"):
        activate_model(Settings(), "nope")
