"""Model names: activate-model takes a name, never a path; 'default' goes back to the shipped model; retrain never
takes a shipped model's name (fresh-user trial, issue 15)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from models.artifact import ARTIFACTS_DIR, active_model_path, activate_model, default_artifact
from pipeline.errors import ModelArtifactError
from pipeline.settings import Settings

runner = CliRunner()


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path / "data"))
    s = Settings()
    (s.data_dir / "models").mkdir(parents=True)
    return s


def test_a_model_folder_without_its_card_is_named_as_such(settings):
    """Trial, 5 December: `activate-model nocard` said "no model 'nocard'" though the folder was there."""
    (settings.data_dir / "models" / "nocard").mkdir()
    with pytest.raises(ModelArtifactError, match="'nocard' in .* has no model_card.json; it is not a saved model"):
        activate_model(settings, "nocard")


def test_activate_model_refuses_paths_and_default_goes_back_to_the_shipped_model(settings, tmp_path):
    outside = tmp_path / "outside"
    shutil.copytree(default_artifact(), outside)
    for bad in ("../outside", str(outside), "", "a/b"):
        with pytest.raises(ModelArtifactError, match="must be the name of a model in"):
            activate_model(settings, bad)
    shutil.copytree(default_artifact(), settings.data_dir / "models" / "clinic-v1")
    activate_model(settings, "clinic-v1")
    assert active_model_path(settings) == settings.data_dir / "models" / "clinic-v1"
    assert activate_model(settings, "default") == default_artifact()
    assert active_model_path(settings) is None


def test_retrain_refuses_a_shipped_model_name_and_says_the_name_rules(settings):
    for name in ("sim-v1", "sim-v2", "sim-v3", "sim-v4", "sim-v5", "sim-v6", "default", "SIM-V6", "Default", "DEFAULT"):  # any case (trial)
        result = runner.invoke(app, ["retrain", "--data", "x", "--version", name])
        assert result.exit_code == 2 and "name of a shipped model" in " ".join(result.output.split()), name
    result = runner.invoke(app, ["retrain", "--data", "x", "--version", "v" * 300])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "at most 64" in text and "v" * 100 not in text
    assert (ARTIFACTS_DIR / "sim-v1").is_dir()


def test_evaluate_checks_its_json_target_before_any_work(settings, tmp_path):
    # 5 December trial: a file that cannot be created (/proc) gave a traceback after all the work was done; a pipe
    # would have held the command until something read it
    import os

    os.mkfifo(tmp_path / "pipe.json")
    for target, says in ((tmp_path, "is a folder"), (tmp_path / "missing" / "out.json", "not found"),
                         (Path("/proc/alliance-eval.json"), "cannot be written"),
                         (tmp_path / "pipe.json", "is not a regular file")):
        result = runner.invoke(app, ["evaluate", "--unannotated", str(tmp_path), "--json", str(target)])
        assert result.exit_code == 2 and says in " ".join(result.output.split()), result.output


@pytest.mark.slow
def test_an_input_error_inside_the_retrain_flow_is_one_line_without_traceback(prefect_harness, settings, tmp_path,
                                                                               monkeypatch, capfd):
    from pipeline.errors import InputError
    from tests.test_dataset_folders import _session

    _session(tmp_path / "ds" / "s1")

    def refuse(*a, **k):
        raise InputError(None, "grouped cross-validation needs sessions of at least 2 clients")

    monkeypatch.setattr("models.training.train", refuse)
    result = runner.invoke(app, ["retrain", "--data", str(tmp_path / "ds"), "--version", "clinic-v9"])
    out = result.output + "".join(capfd.readouterr())
    assert result.exit_code == 1 and "needs sessions of at least 2 clients" in out
    assert "Traceback" not in out
