"""Issue 14, part C: the nightly inbox run cannot mix, mislabel, keep or leak a child's recording.

The analysis itself is faked (a tiny Prefect flow that writes a report and session.json) wherever the real
pipeline is not the point, so each run takes a second or two; the one-line-failure test runs the real
``analyze_session`` on a corrupt file, which fails at decoding before any model is loaded.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from prefect import flow

import flows.nightly as nightly_module
from flows.nightly import nightly_inbox
from flows.store import RUNS, SESSIONS, Store
from pipeline.settings import Settings

pytestmark = pytest.mark.slow  # every test runs nightly batches through a Prefect server

DAY = 86400.0


def _record(session_id: str | None, client_id: str, *, analysis: bool = True, **extra) -> dict:
    record = {"client_id": client_id, "therapist_id": "t-anna", "date": "2026-11-28", "language": "nl",
              "client_age": 9, "participants": [{"role": "therapist", "id": "t-anna"}, {"role": "client", "age": 9}],
              "consent": {"analysis": analysis, "research_use": False, "given_by": ["parent"], "date": "2026-11-01"}}
    if session_id is not None:
        record["session_id"] = session_id
    record.update(extra)
    return record


def _drop(inbox: Path, name: str, content: bytes, record: dict | None) -> Path:
    """A recording (any bytes: the analysis is faked) and its sidecar ``NAME.json`` in the inbox."""
    audio = inbox / name
    audio.write_bytes(content)
    if record is not None:
        audio.with_name(name + ".json").write_text(json.dumps(record), encoding="utf-8")
    return audio


@pytest.fixture
def clinic(prefect_harness, tmp_path, monkeypatch):
    """An empty inbox and data folder, settled files, and a fake analysis that records what it was given."""
    inbox, data = tmp_path / "inbox", tmp_path / "data"
    inbox.mkdir()
    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(data))
    monkeypatch.setenv("ALLIANCE_INBOX_SETTLE_S", "0")
    calls: list[dict] = []

    @flow(name="fake_analyze_session", persist_result=False)
    def fake_analyze(recording: str, out_dir: str | None = None, metadata_path: str | None = None,
                     session_id: str | None = None) -> SimpleNamespace:
        calls.append({"recording": recording, "session_id": session_id, "content": Path(recording).read_bytes()})
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "session.json").write_text(json.dumps({"session_id": session_id, "recording": Path(recording).name,
                                                      "content": Path(recording).read_bytes().decode(),
                                                      "model_version": "fake-1", "flags": []}))
        (out / "report.html").write_text(f"<p>{session_id} {Path(recording).name}</p>")
        return SimpleNamespace(session_id=session_id, model_version="fake-1", flags=())  # what nightly reads

    monkeypatch.setattr(nightly_module, "analyze_session", fake_analyze)
    return {"inbox": inbox, "data": data, "calls": calls}


def _store() -> Store:
    return Store.for_settings(Settings())


def _audit(client_id: str | None = None) -> list[tuple]:
    return [(r["event"], r["outcome"], r["session_id"]) for r in _store().audit_rows(client_id=client_id)]


# 1. two recordings with one session id in one batch -------------------------------------------------------------

def test_a_second_recording_with_the_same_session_id_in_one_batch_is_refused(clinic):
    inbox, data = clinic["inbox"], clinic["data"]
    _drop(inbox, "a.wav", b"client one speaking", _record("s-1", "c-001"))
    _drop(inbox, "b.wav", b"client eight speaking", _record("s-1", "c-008"))
    summary = nightly_inbox(str(inbox))

    assert [(p["file"], p["session_id"]) for p in summary["processed"]] == [("a.wav", "s-1")]
    assert [c["content"] for c in clinic["calls"]] == [b"client one speaking"]  # b.wav was never analysed
    assert [f["file"] for f in summary["failed"]] == ["b.wav"]
    assert "session id 's-1' is already used for another recording" in summary["failed"][0]["reason"]
    assert (inbox / "done" / "a.wav").is_file() and (inbox / "failed" / "b.wav").is_file()
    assert (inbox / "failed" / "b.wav.json").is_file()
    assert "session id 's-1' is already used" in (inbox / "failed" / "b.wav.reason.txt").read_text()
    # the first session's outputs and database row are intact
    assert json.loads((data / "sessions" / "s-1" / "session.json").read_text())["content"] == "client one speaking"
    row = _store().session("s-1")
    assert (row["client_id"], row["recording_name"], row["status"]) == ("c-001", "a.wav", "analysed")
    assert _audit("c-001") == [("analysed", "success", "s-1")]
    assert _audit("c-008") == [("rejected", "refused", None)]  # s-1 is c-001's session: not in c-008's row


# 2. ids from the sidecar ------------------------------------------------------------------------------------------

def test_invalid_ids_in_a_sidecar_reject_the_recording_before_anything_is_written(clinic):
    inbox, data = clinic["inbox"], clinic["data"]
    _drop(inbox, "dots.wav", b"one", _record("..", "c-001"))
    _drop(inbox, "slash.wav", b"two", _record("s-2", "a/b"))
    _drop(inbox, "therapist.wav", b"three", _record("s-3", "c-003", therapist_id="../t"))
    _drop(inbox, "number.wav", b"four", _record(412, "c-004"))
    summary = nightly_inbox(str(inbox))

    assert clinic["calls"] == [] and summary["processed"] == []
    assert not (data / "sessions").exists() or not any((data / "sessions").iterdir())
    assert _store().sessions() == []
    reasons = {r["file"]: r["reason"] for r in summary["rejected"]}
    assert set(reasons) == {"dots.wav", "slash.wav", "therapist.wav", "number.wav"}
    assert "session_id must be" in reasons["dots.wav"] and "'..'" in reasons["dots.wav"]
    assert "client_id must be" in reasons["slash.wav"] and "'a/b'" in reasons["slash.wav"]
    assert "therapist_id must be" in reasons["therapist.wav"]
    assert "session_id must be" in reasons["number.wav"]
    for name in reasons:
        assert (inbox / "rejected" / name).is_file() and (inbox / "rejected" / f"{name}.json").is_file()
        assert (inbox / "rejected" / f"{name}.reason.txt").read_text().strip() == reasons[name]
        assert "\n" not in reasons[name]
    # an invalid client id is not written into the audit log as if it were one
    assert {r["client_id"] for r in _store().audit_rows() if r["event"] == "rejected"} == {"c-001", "c-003", "c-004",
                                                                                              None}


def test_a_session_id_taken_from_the_file_name_is_a_valid_id(clinic):
    inbox, data = clinic["inbox"], clinic["data"]
    _drop(inbox, "sessie 3 (kopie).wav", b"five", _record(None, "c-005"))
    summary = nightly_inbox(str(inbox))
    assert [p["session_id"] for p in summary["processed"]] == ["sessie-3-kopie"]
    assert (data / "sessions" / "sessie-3-kopie" / "report.html").is_file()


# 3. the same recording filed under another client ------------------------------------------------------------------

def test_a_recording_already_analysed_for_another_client_is_refused_as_a_possible_misfiling(clinic):
    inbox = clinic["inbox"]
    _drop(inbox, "a.wav", b"the same words", _record("s-1", "c-001"))
    nightly_inbox(str(inbox))
    _drop(inbox, "b.wav", b"the same words", _record("s-2", "c-008"))  # filed under another client
    _drop(inbox, "c.wav", b"the same words", _record("s-3", "c-001"))  # the same client again: a duplicate
    summary = nightly_inbox(str(inbox))

    assert len(clinic["calls"]) == 1
    assert summary["duplicates"] == [{"file": "c.wav", "session_id": "s-1"}]
    assert [f["file"] for f in summary["failed"]] == ["b.wav"]
    reason = summary["failed"][0]["reason"]
    assert "possible misfiling" in reason and "same recording as a session of another client" in reason
    assert "c-001" not in reason and "s-1" not in reason
    assert (inbox / "failed" / "b.wav").is_file() and (inbox / "done" / "c.wav").is_file()
    assert (inbox / "failed" / "b.wav.reason.txt").read_text().strip() == reason
    rows = _store().audit_rows(client_id="c-008")
    assert [(r["event"], r["outcome"], r["session_id"]) for r in rows] == [("rejected", "refused", None)]
    assert "c-001" not in rows[0]["detail"] and "s-1" not in rows[0]["detail"]
    # the other client's record says that a copy of its session's recording turned up elsewhere
    assert ("possible-misfiling", "refused", "s-1") in _audit("c-001")
    assert "c-008" not in json.dumps(_store().audit_rows(client_id="c-001"))
    assert _store().session("s-2") is None


def test_two_copies_for_two_clients_in_one_batch_are_neither_analysed(clinic):
    """Which client the recording belongs to is not known. The first by name was analysed and shown to its
    therapist without a word, while the audit said that session was refused (second trial, stop 44): every holder
    is refused now, its same-client copies too, as `retrain` sets aside every holder of a shared recording."""
    inbox = clinic["inbox"]
    _drop(inbox, "a.wav", b"the same words", _record("s-1", "c-001"))
    _drop(inbox, "b.wav", b"the same words", _record("s-2", "c-008"))
    _drop(inbox, "c.wav", b"the same words", _record("s-3", "c-001"))  # a same-client copy of a.wav
    _drop(inbox, "d.wav", b"other words", _record("s-4", "c-001"))
    summary = nightly_inbox(str(inbox))
    assert [p["file"] for p in summary["processed"]] == ["d.wav"] and summary["duplicates"] == []
    assert sorted(f["file"] for f in summary["failed"]) == ["a.wav", "b.wav", "c.wav"]
    assert all("possible misfiling" in f["reason"] for f in summary["failed"])
    assert [c["session_id"] for c in clinic["calls"]] == ["s-4"]
    assert _store().session("s-1") is None and _store().session("s-2") is None
    assert ("rejected", "refused", None) in _audit("c-008") and ("analysed", "success", "s-1") not in _audit("c-001")
    assert all((inbox / "failed" / n).is_file() for n in ("a.wav", "b.wav", "c.wav"))


# 4. retention of rejected/ and failed/ ---------------------------------------------------------------------------

def _filed(folder: Path, name: str, client_id: str, age_days: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    audio = _drop(folder, name, b"audio", _record("s-x", client_id))
    reason = folder / f"{name}.reason.txt"
    reason.write_text("why\n")
    old = time.time() - age_days * DAY
    for p in (audio, audio.with_name(name + ".json"), reason):
        os.utime(p, (old, old))
    return audio


def test_rejected_and_failed_audio_is_deleted_after_its_retention_period_and_the_reason_is_kept(clinic):
    inbox = clinic["inbox"]
    rejected, failed = inbox / "rejected", inbox / "failed"
    _filed(rejected, "old.wav", "c-101", 8)
    _filed(rejected, "new.wav", "c-102", 6)
    _filed(failed, "old.wav", "c-103", 31)
    _filed(failed, "new.wav", "c-104", 29)
    nightly_inbox(str(inbox))

    for folder in (rejected, failed):
        assert not (folder / "old.wav").exists() and not (folder / "old.wav.json").exists()
        assert (folder / "old.wav.reason.txt").read_text() == "why\n"
        assert (folder / "new.wav").is_file() and (folder / "new.wav.json").is_file()
    for client, folder in (("c-101", "rejected"), ("c-103", "failed")):
        rows = _store().audit_rows(client_id=client)
        assert [(r["event"], r["outcome"]) for r in rows] == [("deleted", "success")]
        assert "old.wav" in rows[0]["detail"] and folder in rows[0]["detail"]
    assert _audit("c-102") == [] and _audit("c-104") == []


def test_retention_periods_are_settings(clinic, monkeypatch):
    assert (Settings().rejected_retention_days, Settings().failed_retention_days) == (7, 30)
    monkeypatch.setenv("ALLIANCE_REJECTED_RETENTION_DAYS", "0")
    monkeypatch.setenv("ALLIANCE_FAILED_RETENTION_DAYS", "1")
    inbox = clinic["inbox"]
    _drop(inbox, "unconsented.wav", b"no", _record("s-9", "c-009", analysis=False))
    _filed(inbox / "failed", "f.wav", "c-010", 2)
    nightly_inbox(str(inbox))
    assert not (inbox / "rejected" / "unconsented.wav").exists()  # 0: deleted in the same run
    assert (inbox / "rejected" / "unconsented.wav.reason.txt").is_file()
    assert not (inbox / "failed" / "f.wav").exists()
    assert [e for e, _, _ in _audit("c-009")] == ["rejected", "deleted"]


def test_a_recording_with_an_old_file_time_stays_its_full_period_after_it_was_rejected(clinic):
    inbox = clinic["inbox"]
    audio = _drop(inbox, "copied.wav", b"kept times", _record("s-7", "c-007", analysis=False))
    old = time.time() - 60 * DAY  # copied with its original time stamps
    os.utime(audio, (old, old))
    nightly_inbox(str(inbox))
    nightly_inbox(str(inbox))
    assert (inbox / "rejected" / "copied.wav").is_file()


# 5. a failed session is one line, not a traceback ------------------------------------------------------------------

def test_a_failed_session_logs_one_line_and_keeps_the_traceback_for_the_debug_log(prefect_harness, tmp_path,
                                                                                     monkeypatch, caplog):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ALLIANCE_INBOX_SETTLE_S", "0")
    _drop(inbox, "d_corrupt.wav", b"this is not audio" * 100, _record("s-004", "c-020"))
    caplog.set_level(logging.DEBUG, logger="alliance")
    summary = nightly_inbox(str(inbox))  # the real analyze_session: decoding fails before any model loads

    assert [f["session_id"] for f in summary["failed"]] == ["s-004"]
    shown = [r for r in caplog.records if r.levelno >= logging.INFO and "cannot be decoded" in r.getMessage()]
    assert len(shown) == 1, [r.getMessage() for r in shown]
    line = shown[0].getMessage()
    assert "\n" not in line and "d_corrupt.wav" in line and "s-004" in line and not shown[0].exc_info
    assert not [r for r in caplog.records if r.levelno >= logging.INFO and r.exc_info]
    debug = [r for r in caplog.records if r.name.startswith("alliance") and r.levelno == logging.DEBUG]
    assert any(r.exc_info and type(r.exc_info[1]).__name__ == "AudioDecodeError" for r in debug)


def test_the_nightly_command_prints_file_session_and_reason_on_one_line(clinic, monkeypatch):
    from typer.testing import CliRunner

    from flows.cli import app

    def failing(recording, **kwargs):
        from pipeline.errors import AudioDecodeError

        raise AudioDecodeError(recording, "cannot be decoded as audio (test)")

    monkeypatch.setattr(nightly_module, "analyze_session", failing)
    _drop(clinic["inbox"], "d.wav", b"bad", _record("s-004", "c-020"))
    result = CliRunner().invoke(app, ["nightly", "--inbox", str(clinic["inbox"])])
    assert result.exit_code == 1
    assert "  d.wav (session s-004): d.wav: cannot be decoded as audio (test)\n" in result.output
    assert "Traceback" not in result.output


# 6. a participant's name in the file name ------------------------------------------------------------------------

def _everything_written(inbox: Path, data: Path) -> str:
    """File names under the inbox and data folder, the text of every output, and every database row."""
    parts = [str(p.relative_to(inbox)) for p in inbox.rglob("*")]
    for p in data.rglob("*"):
        parts.append(str(p.relative_to(data)))
        if p.is_file() and p.suffix in (".json", ".html", ".txt", ".csv"):
            parts.append(p.read_text(errors="replace"))
    store = _store()
    with store.engine.connect() as c:
        for table in (SESSIONS, RUNS):
            parts += [json.dumps(dict(r._mapping), default=str) for r in c.execute(sa.select(table))]
    parts += [json.dumps(r) for r in store.audit_rows()]
    return "\n".join(parts)


def test_a_participants_name_in_the_file_name_never_reaches_outputs_database_or_prefect(clinic, monkeypatch):
    import asyncio

    from prefect.client.orchestration import get_client

    inbox, data = clinic["inbox"], clinic["data"]
    named = {"participants": [{"role": "therapist", "id": "t-anna"}, {"role": "client", "name": "Sanne de Vries",
                                                                      "age": 9}]}
    _drop(inbox, "verslag-Sanne.wav", b"session ten", _record("s-10", "c-010", **named))
    _drop(inbox, "TIM_gesprek.wav", b"about a brother", _record(None, "c-011", other_names={"Tim": "sibling"}))
    _drop(inbox, "Sanne-geen-toestemming.wav", b"no consent", _record("s-12", "c-012", analysis=False, **named))
    summary = nightly_inbox(str(inbox))

    # without a session id in the sidecar, the name in the file name is replaced by the person's role
    assert sorted(p["session_id"] for p in summary["processed"]) == ["s-10", "sibling_gesprek"]
    assert (inbox / "done" / "s-10.wav").is_file() and (inbox / "done" / "s-10.wav.json").is_file()
    assert (inbox / "rejected" / "s-12.wav").is_file()
    assert all("sanne" not in c["recording"].lower() and "tim" not in Path(c["recording"]).name.lower()
               for c in clinic["calls"])
    renamed = summary["renamed"]
    assert len(renamed) == 3 and all("held a participant's name" in r["reason"] for r in renamed)
    # (the sidecars themselves keep the names they were given: they are the consent record)
    written = _everything_written(inbox, data) + json.dumps(summary)
    assert "sanne" not in written.lower() and "TIM" not in written

    async def parameters():
        async with get_client() as client:
            return json.dumps([r.parameters for r in await client.read_flow_runs(limit=200)])

    assert "Sanne" not in asyncio.run(parameters())


def test_a_name_in_a_file_still_being_copied_is_not_shown_either(clinic, monkeypatch):
    inbox = clinic["inbox"]
    monkeypatch.setenv("ALLIANCE_INBOX_SETTLE_S", "3600")
    _drop(inbox, "Sanne.wav", b"being copied",
          _record("s-20", "c-020", participants=[{"role": "client", "name": "Sanne", "age": 9}]))
    summary = nightly_inbox(str(inbox))
    assert len(summary["waiting"]) == 1 and "Sanne" not in json.dumps(summary)
    assert (inbox / "Sanne.wav").is_file()  # left alone until it has settled


# 7. a bug in one session (not a PipelineError) does not stop the batch -------------------------------------------

def test_an_unexpected_error_in_one_session_does_not_stop_the_batch(clinic, monkeypatch):
    real = nightly_module.analyze_session

    @flow(name="buggy_analyze_session", persist_result=False)
    def buggy(recording: str, out_dir: str | None = None, metadata_path: str | None = None,
              session_id: str | None = None) -> SimpleNamespace:
        if session_id == "s-bug":
            raise ZeroDivisionError("division by zero")
        return real.fn(recording, out_dir=out_dir, metadata_path=metadata_path, session_id=session_id)

    monkeypatch.setattr(nightly_module, "analyze_session", buggy)
    _drop(clinic["inbox"], "a.wav", b"first", _record("s-bug", "c-001"))
    _drop(clinic["inbox"], "b.wav", b"second", _record("s-ok", "c-002"))
    summary = nightly_inbox(str(clinic["inbox"]))
    assert [p["session_id"] for p in summary["processed"]] == ["s-ok"]
    assert [(f["session_id"], f["reason"]) for f in summary["failed"]] == [
        ("s-bug", "a.wav: internal error in the analysis (ZeroDivisionError); see the debug log")]
    assert (clinic["inbox"] / "failed" / "a.wav").is_file() and (clinic["inbox"] / "done" / "b.wav").is_file()
    assert ("analysed", "failed", "s-bug") in _audit("c-001")


def test_a_session_id_whose_folder_holds_a_direct_analysis_is_refused(clinic):
    """Trial: `alliance analyze` wrote sessions/stereo (no database row); a sidecar naming session 'stereo' for
    another client's recording replaced those results in the nightly run, without a word."""
    inbox, data = clinic["inbox"], clinic["data"]
    direct = data / "sessions" / "stereo"
    direct.mkdir(parents=True)
    (direct / "session.json").write_text(json.dumps({"session_id": "stereo", "content": "the direct analysis"}))
    _drop(inbox, "overwrite.wav", b"client thirty-two speaking", _record("stereo", "c-032"))
    summary = nightly_inbox(str(inbox))
    assert clinic["calls"] == [] and summary["processed"] == []
    assert "session id 'stereo' is already used for another recording" in summary["failed"][0]["reason"]
    assert json.loads((direct / "session.json").read_text())["content"] == "the direct analysis"


def test_a_run_stopped_during_a_later_recording_keeps_the_sessions_already_analysed(clinic, monkeypatch):
    """Trial (stop 44): a nightly run stopped (Ctrl-C, SIGTERM) after a session's report was written left that
    session without its database row, audit row or filing (they were all written when the whole batch ended); the
    next run refused the recording because its session folder was there, and the session never reached the review
    app."""
    inbox = clinic["inbox"]
    fake = nightly_module.analyze_session

    @flow(name="fake_then_stopped", persist_result=False)
    def stopped_at_second(recording: str, out_dir: str | None = None, metadata_path: str | None = None,
                          session_id: str | None = None):
        if session_id == "s-2":
            raise KeyboardInterrupt  # what the operator's Ctrl-C does to the batch
        return fake.fn(recording, out_dir=out_dir, metadata_path=metadata_path, session_id=session_id)

    monkeypatch.setattr(nightly_module, "analyze_session", stopped_at_second)
    monkeypatch.setenv("ALLIANCE_NIGHTLY_CONCURRENCY", "1")
    _drop(inbox, "a.wav", b"first", _record("s-1", "c-001"))
    _drop(inbox, "b.wav", b"second", _record("s-2", "c-002"))
    with pytest.raises(BaseException) as stopped:
        nightly_inbox(str(inbox))
    assert isinstance(stopped.value, KeyboardInterrupt)
    row = _store().session("s-1")
    assert row is not None and row["status"] == "analysed"
    assert _audit("c-001") == [("analysed", "success", "s-1")]
    assert (inbox / "done" / "a.wav").is_file() and (inbox / "b.wav").is_file()  # b.wav waits for the next run


def test_a_session_folder_a_stopped_run_left_for_the_same_recording_is_analysed_again(clinic):
    """Third trial (stop 44): a run stopped in the second between a session's report being written and the run
    recording it left the folder without a row, and the next run refused the recording as "session id already used"
    (the same recording). The run now claims each session before analysing it; a claimed folder without a row,
    for the same recording and client, is analysed again; for another recording the id stays refused."""
    from flows.inbox import write_claim
    from pipeline.audio import recording_sha256

    inbox, data = clinic["inbox"], clinic["data"]
    audio = _drop(inbox, "a.wav", b"first", _record("s-1", "c-001"))
    _drop(inbox, "b.wav", b"second", _record("s-2", "c-002"))
    for sid, digest, client in (("s-1", recording_sha256(audio), "c-001"), ("s-2", "0" * 64, "c-002")):
        left = data / "sessions" / sid
        left.mkdir(parents=True)
        (left / "session.json").write_text(json.dumps({"session_id": sid}))  # what the stopped run published
        write_claim(data, sid, digest=digest, client=client)
    summary = nightly_inbox(str(inbox))
    assert [p["session_id"] for p in summary["processed"]] == ["s-1"]
    assert _store().session("s-1")["status"] == "analysed" and (inbox / "done" / "a.wav").is_file()
    assert [f["file"] for f in summary["failed"]] == ["b.wav"]  # another recording's folder: refused as before
    assert "already used" in summary["failed"][0]["reason"]
    assert not (data / "nightly-claims" / "s-1.json").exists()  # recorded: the claim is gone


def test_purge_removes_the_claims_a_stopped_run_left_for_the_client(clinic):
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.inbox import CLAIMS_FOLDER, write_claim

    data = clinic["data"]
    write_claim(data, "s-1", digest="0" * 64, client="c-001")
    write_claim(data, "s-2", digest="1" * 64, client="c-002")
    result = CliRunner().invoke(app, ["purge", "c-001"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (data / CLAIMS_FOLDER).iterdir()) == ["s-2.json"]
