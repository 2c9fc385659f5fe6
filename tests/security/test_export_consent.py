"""Issue 14, severe 2: only sessions whose consent allows research use leave as training data.

`alliance export-reviews` copies recordings out of the clinic's data directory. A session leaves only when
both the database (``sessions.research_use``, from the consent checked at analysis) and the consent record
kept next to the retained recording say research use was given; the exported metadata carries that record,
and every exported folder is recorded so that purging the client can reach it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from flows.store import Store

CONSENT_YES = {"analysis": True, "research_use": True, "given_by": ["parent"], "date": "2025-01-05"}
CONSENT_NO = {"analysis": True, "research_use": False, "given_by": ["parent"], "date": "2025-01-05"}


def _session(settings, store: Store, sid: str, client: str, *, research_use: bool | None,
             consent: dict | None | str = "same") -> Path:
    """An analysed, reviewed session whose recording (0.2 s of silence) and sidecar are retained in done/."""
    from pipeline.audio import save_wav

    done = settings.inbox_dir / "done"
    done.mkdir(parents=True, exist_ok=True)
    rec = save_wav(done / f"{sid}.wav", np.zeros(3200, dtype=np.float32), 16000)
    if consent == "same":
        consent = CONSENT_YES if research_use else CONSENT_NO
    if consent is not None:
        (done / f"{sid}.wav.json").write_text(json.dumps({
            "session_id": sid, "client_id": client, "therapist_id": "t-anna", "date": "2025-02-01",
            "client_age": 10, "participants": [{"role": "therapist", "id": "t-anna"}, {"role": "client", "age": 10}],
            "consent": consent}), encoding="utf-8")
    store.save_session(session_id=sid, client_id=client, therapist_id="t-anna", recording_name=rec.name,
                       recording_sha256=hashlib.sha256(rec.read_bytes()).hexdigest(), status="analysed",
                       reason=None, out_dir=None, model_version="sim-v1", research_use=research_use, run_id="r1")
    store.save_flags(sid, [{"start": 0.0, "end": 0.2, "marker_type": "withdrawal", "probability": 0.9}], "sim-v1")
    store.save_review(session_id=sid, flag=store.flags(sid)[0], verdict="rupture", note=None, therapist_id="t-anna")
    return rec


@pytest.fixture()
def clinic(tmp_path, monkeypatch):
    from pipeline.settings import Settings

    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ALLIANCE_INBOX_DIR", str(tmp_path / "inbox"))
    settings = Settings()
    return settings, Store.for_settings(settings)


def test_a_session_without_research_consent_is_not_exported(clinic, tmp_path):
    from flows.export import export_reviews

    settings, store = clinic
    _session(settings, store, "s-yes", "c-1", research_use=True)
    _session(settings, store, "s-no", "c-2", research_use=False)
    out = tmp_path / "export"
    result = export_reviews(settings, out)
    assert result["exported"] == ["s-yes"]
    assert not (out / "s-no").exists()  # no recording, no metadata: nothing of it left the clinic
    (line,) = [s for s in result["skipped"] if s.startswith("s-no:")]
    assert "research" in line and "\n" not in line
    assert [e["session_id"] for e in store.exports()] == ["s-yes"]
    refused = [a for a in store.audit_rows() if a["session_id"] == "s-no"]
    assert [(a["event"], a["outcome"]) for a in refused] == [("reviews exported", "refused")]


def test_the_retained_consent_record_decides_too(clinic, tmp_path):
    """The database says yes (consent at analysis), but the clinic's record next to the recording says no,
    or there is no record to carry: the session stays."""
    from flows.export import export_reviews

    settings, store = clinic
    _session(settings, store, "s-withdrawn", "c-1", research_use=True, consent=CONSENT_NO)
    _session(settings, store, "s-no-record", "c-1", research_use=True, consent=None)
    _session(settings, store, "s-unknown", "c-1", research_use=None)  # a row from before research_use was kept
    result = export_reviews(settings, tmp_path / "export")
    assert result["exported"] == []
    assert sorted(s.split(":")[0] for s in result["skipped"]) == ["s-no-record", "s-unknown", "s-withdrawn"]
    assert "consent.research_use" in next(s for s in result["skipped"] if s.startswith("s-withdrawn:"))
    assert not (tmp_path / "export").exists() or not any((tmp_path / "export").iterdir())
    assert store.exports() == []


def test_an_exported_session_carries_its_consent_and_is_recorded(clinic, tmp_path):
    from flows.export import export_reviews
    from models.dataset import discover_sessions

    settings, store = clinic
    _session(settings, store, "s-1", "c-1", research_use=True)
    out = tmp_path / "export"
    assert export_reviews(settings, out)["exported"] == ["s-1"]
    meta = json.loads((out / "s-1" / "metadata.json").read_text(encoding="utf-8"))
    assert meta["consent"] == CONSENT_YES
    (row,) = store.exports(client_id="c-1")
    assert (row["session_id"], row["path"]) == ("s-1", str((out / "s-1").resolve()))
    assert [s.session_id for s in discover_sessions(out)] == ["s-1"]  # retrain accepts it as it is
    # health data of a minor outside the data directory: private to the service user
    assert (out / "s-1").stat().st_mode & 0o777 == 0o700
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in (out / "s-1").iterdir())


def test_a_session_id_that_is_not_a_plain_name_never_becomes_a_folder(clinic, tmp_path):
    """A row written before ids were checked: ``../escaped`` would put the recording beside the export."""
    from flows.export import export_reviews

    settings, store = clinic
    _session(settings, store, "ok-1", "c-1", research_use=True)
    rec = settings.inbox_dir / "done" / "ok-1.wav"
    store.save_session(session_id="../escaped", client_id="c-1", therapist_id="t-anna", recording_name=rec.name,
                       recording_sha256=hashlib.sha256(rec.read_bytes()).hexdigest(), status="analysed",
                       reason=None, out_dir=None, model_version="sim-v1", research_use=True, run_id="r1")
    store.save_flags("../escaped", [{"start": 0.0, "end": 0.2, "marker_type": "withdrawal", "probability": 0.9}],
                     "sim-v1")
    store.save_review(session_id="../escaped", flag=store.flags("../escaped")[0], verdict="rupture", note=None,
                      therapist_id="t-anna")
    out = tmp_path / "export"
    result = export_reviews(settings, out)
    assert result["exported"] == ["ok-1"]
    assert not (tmp_path / "escaped").exists()
    assert any(s.startswith("'../escaped': ") and "not a valid session id" in s for s in result["skipped"])
    assert [e["session_id"] for e in store.exports()] == ["ok-1"]


def test_the_command_names_each_skipped_session_on_one_line(clinic, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    settings, store = clinic
    _session(settings, store, "s-yes", "c-1", research_use=True)
    _session(settings, store, "s-no", "c-2", research_use=False)
    out = tmp_path / "export"
    r = CliRunner().invoke(app, ["export-reviews", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "Exported 1 reviewed sessions" in r.stdout
    (line,) = [s for s in r.stderr.splitlines() if "s-no" in s]
    assert line.startswith("skipped s-no: ") and "research" in line
    assert sorted(os.listdir(out)) == ["s-yes"]

    blocked = tmp_path / "a-file"
    blocked.write_text("x")
    r = CliRunner().invoke(app, ["export-reviews", "--out", str(blocked)])
    assert r.exit_code == 2
    assert r.stderr.strip().count("\n") == 0 and "--out" in r.stderr and "Traceback" not in r.output


@pytest.mark.parametrize("where", ["inbox", "inbox/done", "data", "data/sessions"])
def test_export_refuses_an_out_folder_inside_the_inbox_or_the_data_dir(tmp_path, monkeypatch, where):
    """Trial: `--out` inside the inbox's done/ was accepted; purge then took the export's metadata.json for an inbox
    file, and the child's exported recording stayed in done/ for good (retention skips folders)."""
    from typer.testing import CliRunner

    from flows.cli import app

    inbox, data = tmp_path / "inbox", tmp_path / "data"
    (inbox / "done").mkdir(parents=True)
    (data / "sessions").mkdir(parents=True)
    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(data))
    out = tmp_path / where / "export"
    result = CliRunner().invoke(app, ["export-reviews", "--out", str(out), "--inbox", str(inbox)])
    assert result.exit_code == 2, result.output
    assert "is inside" in result.output and not out.exists()
