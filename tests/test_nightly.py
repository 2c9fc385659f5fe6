"""The nightly inbox: consent gate, duplicates by content, failures that do not stop the batch, audit rows."""

from __future__ import annotations

import json
import shutil

import pytest

import pipeline.session as session_module
from flows.nightly import nightly_inbox
from flows.store import AUDIT_FIELDS, Store
from pipeline.settings import Settings
from tests.conftest import ROOT, SAMPLE_WAV

pytestmark = pytest.mark.slow  # the module's fixture runs a nightly batch through a Prefect server and the real models


def _sidecar(path, *, session_id, client_id, age=9, given_by=("parent",), analysis=True):
    record = {"session_id": session_id, "client_id": client_id, "therapist_id": "t-anna", "date": "2026-11-28",
              "language": "en", "client_age": age,
              "participants": [{"role": "therapist", "id": "t-anna"}, {"role": "client", "age": age}],
              "consent": {"analysis": analysis, "research_use": False, "given_by": list(given_by),
                          "date": "2026-11-01"}}
    path.with_name(path.name + ".json").write_text(json.dumps(record))


@pytest.fixture(scope="module")
def nightly_run(prefect_harness, tmp_path_factory):
    root = tmp_path_factory.mktemp("clinic")
    inbox = root / "inbox"
    inbox.mkdir()
    shutil.copy(SAMPLE_WAV, inbox / "a_session.wav")
    _sidecar(inbox / "a_session.wav", session_id="s-001", client_id="c-017")
    shutil.copy(ROOT / "tests/data/ami/dev01.flac", inbox / "b_session.flac")
    _sidecar(inbox / "b_session.flac", session_id="s-002", client_id="c-018", age=14, given_by=("client", "parent"))
    shutil.copy(SAMPLE_WAV, inbox / "c_no_consent.wav")
    _sidecar(inbox / "c_no_consent.wav", session_id="s-003", client_id="c-019", analysis=False)
    (inbox / "d_corrupt.wav").write_bytes(b"this is not audio" * 100)
    _sidecar(inbox / "d_corrupt.wav", session_id="s-004", client_id="c-020")
    shutil.copy(SAMPLE_WAV, inbox / "e_same_again.wav")  # the same content as a_session, dropped twice
    _sidecar(inbox / "e_same_again.wav", session_id="s-005", client_id="c-017")

    decoded: list[str] = []
    original = session_module.decode

    def spy(path, **kwargs):
        decoded.append(str(path))
        return original(path, **kwargs)

    data = root / "data"
    mp = pytest.MonkeyPatch()
    mp.setenv("ALLIANCE_DATA_DIR", str(data))
    mp.setenv("ALLIANCE_NIGHTLY_CONCURRENCY", "2")  # two sessions at once
    mp.setenv("ALLIANCE_INBOX_SETTLE_S", "0")  # the files were just written
    mp.setattr(session_module, "decode", spy)
    try:
        summary = nightly_inbox(str(inbox))
    finally:
        mp.undo()
    return dict(inbox=inbox, data=data, summary=summary, decoded=decoded)


def test_consented_recordings_have_reports(nightly_run):
    s = nightly_run["summary"]
    assert sorted(x["session_id"] for x in s["processed"]) == ["s-001", "s-002"]
    for sid in ("s-001", "s-002"):
        assert (nightly_run["data"] / "sessions" / sid / "report.html").is_file()
    assert (nightly_run["inbox"] / "done" / "a_session.wav").is_file()


def test_unconsented_recording_was_never_decoded_and_is_rejected(nightly_run):
    inbox = nightly_run["inbox"]
    assert not any("c_no_consent" in p for p in nightly_run["decoded"])
    assert (inbox / "rejected" / "c_no_consent.wav").is_file()
    assert (inbox / "rejected" / "c_no_consent.wav.json").is_file()
    reason = (inbox / "rejected" / "c_no_consent.wav.reason.txt").read_text()
    assert "consent to analysis is not given" in reason
    assert [r["file"] for r in nightly_run["summary"]["rejected"]] == ["c_no_consent.wav"]


def test_corrupt_recording_is_reported_and_the_rest_finished(nightly_run):
    failed = nightly_run["summary"]["failed"]
    assert [f["file"] for f in failed] == ["d_corrupt.wav"]
    assert "d_corrupt.wav: cannot be decoded as audio" in failed[0]["reason"]
    assert (nightly_run["inbox"] / "failed" / "d_corrupt.wav").is_file()
    assert "cannot be decoded" in (nightly_run["inbox"] / "failed" / "d_corrupt.wav.reason.txt").read_text()


def test_a_file_dropped_twice_is_processed_once(nightly_run):
    assert nightly_run["summary"]["duplicates"] == [{"file": "e_same_again.wav", "session_id": "s-001"}]
    assert not (nightly_run["data"] / "sessions" / "s-005").exists()
    assert sum("e_same_again" in p for p in nightly_run["decoded"]) == 0


def test_audit_log_has_one_row_per_event_with_its_fields(nightly_run, monkeypatch):
    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(nightly_run["data"]))
    rows = Store.for_settings(Settings()).audit_rows()
    events = [(r["event"], r["outcome"], r["session_id"]) for r in rows]
    assert events == [
        ("rejected", "refused", None),  # screened first: never decoded
        ("analysed", "success", "s-001"),
        ("analysed", "success", "s-002"),
        ("analysed", "failed", "s-004"),
        ("skipped-duplicate", "success", "s-005"),  # waited for its first copy
        ("nightly-run", "partial", None),  # one recording failed
    ]
    for r in rows:
        assert set(AUDIT_FIELDS) <= set(r) and r["at"] and r["actor"] == "nightly_inbox"
    assert rows[0]["client_id"] == "c-019"


def test_audit_log_is_append_only(nightly_run, monkeypatch):
    import sqlalchemy as sa

    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(nightly_run["data"]))
    store = Store.for_settings(Settings())
    with pytest.raises(sa.exc.DatabaseError, match="append-only"):
        with store.engine.begin() as c:
            c.exec_driver_sql("DELETE FROM audit")


def test_purge_removes_a_client_and_records_it(nightly_run, monkeypatch):
    from typer.testing import CliRunner

    from flows.cli import app

    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(nightly_run["data"]))
    result = CliRunner().invoke(app, ["purge", "c-017", "--inbox", str(nightly_run["inbox"])])
    assert result.exit_code == 0, result.output
    assert not (nightly_run["data"] / "sessions" / "s-001").exists()
    assert (nightly_run["data"] / "sessions" / "s-002").exists()  # another client's session stays
    assert not list(nightly_run["inbox"].rglob("a_session.wav*")) and not list(nightly_run["inbox"].rglob("e_same*"))
    store = Store.for_settings(Settings())
    assert store.sessions(client_id="c-017") == []
    assert "1 Prefect run records" in result.output  # s-001's analyze_session run (s-005 was never run)

    import asyncio

    from prefect.client.orchestration import get_client

    async def session_ids():
        async with get_client() as client:
            return {(r.parameters or {}).get("session_id") for r in await client.read_flow_runs(limit=200)}

    ids = asyncio.run(session_ids())
    assert "s-001" not in ids and "s-002" in ids
    last = store.audit_rows(client_id="c-017")[-1]
    assert (last["event"], last["actor"], last["outcome"]) == ("deleted", "alliance purge", "success")


def test_audio_is_deleted_after_processing_when_retention_is_zero(prefect_harness, tmp_path, monkeypatch):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(ROOT / "tests/data/fw/stereo_diarization.wav", inbox / "short.wav")
    _sidecar(inbox / "short.wav", session_id="s-r0", client_id="c-900", age=17, given_by=("client",))
    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ALLIANCE_AUDIO_RETENTION_DAYS", "0")
    monkeypatch.setenv("ALLIANCE_INBOX_SETTLE_S", "0")
    summary = nightly_inbox(str(inbox))
    assert [x["session_id"] for x in summary["processed"]] == ["s-r0"]
    assert not (inbox / "done" / "short.wav").exists()
    assert (inbox / "done" / "short.wav.json").exists()  # the consent record is kept
    events = [r["event"] for r in Store.for_settings(Settings()).audit_rows(client_id="c-900")]
    assert events == ["analysed", "deleted"]


def test_recordings_still_being_copied_wait_and_session_ids_are_never_reused(prefect_harness, tmp_path, monkeypatch):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path / "data"))
    shutil.copy(ROOT / "tests/data/fw/stereo_diarization.wav", inbox / "fresh.wav")
    _sidecar(inbox / "fresh.wav", session_id="s-x", client_id="c-1", age=17, given_by=("client",))
    monkeypatch.setenv("ALLIANCE_INBOX_SETTLE_S", "3600")
    summary = nightly_inbox(str(inbox))
    assert summary["processed"] == [] and [w["file"] for w in summary["waiting"]] == ["fresh.wav"]
    assert (inbox / "fresh.wav").exists()
    monkeypatch.setenv("ALLIANCE_INBOX_SETTLE_S", "0")
    assert [p["session_id"] for p in nightly_inbox(str(inbox))["processed"]] == ["s-x"]
    # another client's recording with the same session id must not overwrite s-x
    shutil.copy(SAMPLE_WAV, inbox / "other.wav")
    _sidecar(inbox / "other.wav", session_id="s-x", client_id="c-2", age=17, given_by=("client",))
    summary = nightly_inbox(str(inbox))
    assert "session id 's-x' is already used for another recording" in summary["failed"][0]["reason"]
    store = Store.for_settings(Settings())
    assert store.session("s-x")["client_id"] == "c-1"
    refused = store.audit_rows(client_id="c-2")
    assert [(r["event"], r["outcome"], r["session_id"]) for r in refused] == [("rejected", "refused", None)]


