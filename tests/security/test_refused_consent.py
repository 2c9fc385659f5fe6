"""Fresh-user trial finding: `alliance analyze --metadata` analysed a recording whose consent record refuses it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pipeline.errors import ConsentError
from pipeline.sidecar import refuse_without_consent
from tests.conftest import SAMPLE_WAV


def _meta(tmp_path, consent):
    path = tmp_path / "consent_no.json"
    path.write_text(json.dumps({"client_id": "c-1", "consent": consent}))
    return path


def test_a_consent_record_that_refuses_analysis_is_refused_in_one_line(tmp_path):
    path = _meta(tmp_path, {"analysis": False, "research_use": False, "given_by": ["parent"], "date": "2026-11-01"})
    with pytest.raises(ConsentError) as info:
        refuse_without_consent(path)
    assert str(info.value).startswith("consent_no.json: ") and "consent.analysis" in str(info.value)
    assert "\n" not in str(info.value)


def test_a_consent_record_the_nightly_run_refuses_is_refused_by_a_direct_analysis_too(tmp_path):
    """An 8-year-old's record signed by the client alone: the inbox refused it, `alliance analyze` analysed it."""
    path = tmp_path / "child.json"
    path.write_text(json.dumps({"client_id": "c-1", "client_age": 8, "consent": {
        "analysis": True, "research_use": False, "given_by": ["client"], "date": "2026-11-01"}}))
    with pytest.raises(ConsentError, match="under 12: the parents with authority consent"):
        refuse_without_consent(path)
    path.write_text(json.dumps({"client_id": "c-1", "client_age": 8, "consent": {
        "analysis": True, "research_use": False, "given_by": ["parent"], "date": "2026-11-01"}}))
    refuse_without_consent(path)  # the parents consented: analysed


def test_metadata_without_a_consent_record_may_still_be_analysed_directly(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"client_id": "c-1"}))
    refuse_without_consent(path)  # a researcher's own metadata (the demo, simulated sessions) holds no consent


def test_the_cli_refuses_before_any_work(tmp_path, monkeypatch):
    from flows.cli import app

    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path / "data"))
    path = _meta(tmp_path, {"analysis": False})
    result = CliRunner().invoke(app, ["analyze", str(SAMPLE_WAV), "--metadata", str(path)])
    assert result.exit_code != 0
    assert "consent.analysis" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "data" / "sessions").exists()


@pytest.mark.parametrize("content", [None, "not a model"])
def test_a_bad_overlap_model_is_refused_before_prefect_starts(tmp_path, monkeypatch, content):
    from flows.cli import app

    model = tmp_path / "model.onnx"
    if content is not None:
        model.write_text(content)
    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ALLIANCE_OVERLAP__MODEL_PATH", str(model))
    result = CliRunner().invoke(app, ["analyze", str(SAMPLE_WAV), "--session-id", "mp1"])
    assert result.exit_code == 2 and "model.onnx" in result.output
    assert "Traceback" not in result.output and "Flow run" not in result.output
    assert not (tmp_path / "data" / "sessions").exists()
