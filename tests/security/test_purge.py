"""Issue 14, severe 1 and 2: `alliance purge` deletes only inside the folders it owns, and reaches exported copies.

Old code accepted a session id of ".."; its session row's out_dir was the data directory itself, and purging that
client removed every client's sessions, alliance.db with the audit log, and Prefect's database.
"""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.store import Store
from pipeline.settings import Settings

runner = CliRunner()


@pytest.fixture()
def clinic(tmp_path, monkeypatch):
    """Two clients' analysed sessions in one data directory, with their rows and audit entries."""
    import flows.store

    data = tmp_path / "data"
    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(data))
    monkeypatch.setattr(flows.store, "delete_prefect_runs", lambda ids: 0)  # no Prefect server in these tests
    store = Store.for_settings(Settings())
    for sid, client in (("s-a1", "c-a"), ("s-b1", "c-b")):
        folder = data / "sessions" / sid
        folder.mkdir(parents=True)
        (folder / "session.json").write_text(json.dumps({"session_id": sid, "client_id": client}))
        store.save_session(session_id=sid, client_id=client, status="analysed", out_dir=str(folder))
        store.audit("analysed", actor="nightly_inbox", outcome="success", client_id=client, session_id=sid)
    return dict(root=tmp_path, data=data, store=store)


def _purge(*args):
    return runner.invoke(app, ["purge", *args])


def test_a_row_pointing_at_the_data_dir_never_deletes_it(clinic):
    data, store = clinic["data"], clinic["store"]
    # what old code wrote for a sidecar with session_id "..": the session's files in the data directory itself
    (data / "report.html").write_text("<html>c-a</html>")
    store.save_session(session_id="..", client_id="c-a", status="analysed", out_dir=str(data))
    result = _purge("c-a")
    assert result.exit_code == 1, result.output  # not everything of c-a could be removed: the operator must look
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert (data / "sessions" / "s-b1" / "session.json").is_file()  # the other client's session
    assert (data / "alliance.db").is_file()
    assert [r["session_id"] for r in Store.for_settings(Settings()).audit_rows(client_id="c-b")] == ["s-b1"]
    assert not (data / "sessions" / "s-a1").exists()  # the rest of c-a's data went
    kept = [line for line in result.output.splitlines() if line.startswith("kept ")]
    assert kept == [f"kept {data.resolve()}: session '..' of client c-a points there, outside "
                    f"{(data / 'sessions').resolve()}; purge deletes only inside it, so remove that session's "
                    "files there by hand"]
    assert store.sessions(client_id="c-a") == []
    last = store.audit_rows(client_id="c-a")[-1]
    assert (last["event"], last["actor"], last["outcome"]) == ("deleted", "alliance purge", "partial")


def test_a_symlinked_session_folder_is_unlinked_not_followed(clinic, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not the client's")
    link = clinic["data"] / "sessions" / "s-a2"
    os.symlink(elsewhere, link)
    clinic["store"].save_session(session_id="s-a2", client_id="c-a", status="analysed", out_dir=str(link))
    result = _purge("c-a")
    assert result.exit_code == 0, result.output
    assert (elsewhere / "keep.txt").is_file() and not os.path.lexists(link)


@pytest.mark.parametrize("bad", ["..", ".", "a/b", "../../x", " "])
def test_purge_refuses_a_client_id_that_is_not_an_id(clinic, bad):
    result = _purge(bad)
    assert result.exit_code == 2
    assert result.output == (f"error: CLIENT must be 1–64 letters, digits, '.', '_' or '-', starting with a letter "
                             f"or digit. Got {bad!r} instead.\n")
    assert (clinic["data"] / "sessions" / "s-a1").is_dir()


def test_inbox_files_are_removed_only_inside_the_inbox(clinic, tmp_path):
    inbox, outside = tmp_path / "inbox", tmp_path / "outside.wav"
    (inbox / "done").mkdir(parents=True)
    outside.write_bytes(b"another recording")
    (inbox / "done" / "a.wav.json").write_text(json.dumps({"client_id": "c-a", "session_id": "s-a1"}))
    os.symlink(outside, inbox / "done" / "a.wav")  # a link to a file outside: the link goes, the file stays
    (inbox / "done" / "a.wav.reason.txt").write_text("x")
    (inbox / "b.wav.json").write_text(json.dumps({"client_id": "c-b"}))
    result = _purge("c-a", "--inbox", str(inbox))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in inbox.rglob("*")) == ["b.wav.json", "done"]
    assert outside.read_bytes() == b"another recording"


def _export(root, session_id, client_id, *, metadata=True):
    folder = root / "export" / session_id
    folder.mkdir(parents=True)
    (folder / "recording.wav").write_bytes(b"RIFF")
    if metadata:
        (folder / "metadata.json").write_text(json.dumps({"session_id": session_id, "client_id": client_id}))
    return folder


def test_purge_deletes_the_exported_copies_it_knows_of(clinic):
    store = clinic["store"]
    copy = _export(clinic["root"], "s-a1", "c-a")
    other = _export(clinic["root"], "s-b1", "c-b")
    store.record_export(session_id="s-a1", client_id="c-a", path=copy)
    store.record_export(session_id="s-b1", client_id="c-b", path=other)
    result = _purge("c-a")
    assert result.exit_code == 0, result.output
    assert not copy.exists() and (other / "recording.wav").is_file()
    assert store.exports(client_id="c-a") == []
    assert store.exports(client_id="c-a", include_removed=True)[0]["removed_at"] is not None
    assert "1 exported copies" in result.output
    events = [(r["event"], r["outcome"], r["session_id"]) for r in store.audit_rows(client_id="c-a")]
    assert ("export deleted", "success", "s-a1") in events


def test_purge_names_the_copies_it_could_not_remove(clinic):
    store = clinic["store"]
    moved = clinic["root"] / "export" / "s-a1"  # recorded, then moved away or on another machine
    store.record_export(session_id="s-a1", client_id="c-a", path=moved)
    foreign = _export(clinic["root"], "s-a9", "c-a", metadata=False)  # no metadata.json: not clearly an export
    store.record_export(session_id="s-a9", client_id="c-a", path=foreign)
    result = _purge("c-a")
    assert result.exit_code == 1, result.output
    assert (foreign / "recording.wav").is_file()  # left in place
    lines = result.output.splitlines()
    assert f"remains {moved.resolve()}: exported copy of session s-a1 not found there (moved, or on another " \
           "machine); delete it where it is" in lines
    assert f"remains {foreign.resolve()}: does not hold the metadata.json of session s-a9 of client c-a, so it " \
           "was left in place; check it and delete it by hand" in lines
    assert len(store.exports(client_id="c-a")) == 2  # still known, still to be dealt with
    outcomes = {(r["event"], r["session_id"]): r["outcome"] for r in store.audit_rows(client_id="c-a")}
    assert outcomes[("export kept", "s-a1")] == "not found" and outcomes[("export kept", "s-a9")] == "refused"


def test_purge_without_an_inbox_says_the_recordings_may_remain(clinic, monkeypatch):
    """Trial: `purge c-004` without --inbox claimed success while done/s-004.wav and its sidecar stayed."""
    monkeypatch.delenv("ALLIANCE_INBOX_DIR", raising=False)
    store = clinic["store"]
    store.save_session(session_id="s-a2", client_id="c-a", status="analysed", recording_name="s-a2.wav",
                       recording_sha256="0" * 64, out_dir=str(clinic["data"] / "sessions" / "s-a2"))
    result = _purge("c-a")
    assert result.exit_code == 1, result.output
    assert ("remains the recordings of 1 session of client c-a (s-a2.wav) in the nightly inbox's done/, failed/ "
            "or rejected/ folders, if still retained: run `alliance purge c-a --inbox DIR` "
            "(or set ALLIANCE_INBOX_DIR)") in result.output


def test_purge_keeps_what_it_needs_to_finish_when_prefect_cannot_be_reached(clinic, monkeypatch):
    """Trial: a purge that could not reach Prefect forgot the client's session ids, so a second purge reported
    0 Prefect run records while the runs (recording paths, session ids) were still there."""
    import flows.store

    asked: list[set] = []

    def unreachable(ids):
        raise RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server.")

    monkeypatch.setattr(flows.store, "delete_prefect_runs", unreachable)
    first = _purge("c-a")
    assert first.exit_code == 1
    assert "remains Prefect's run records of sessions s-a1" in first.output
    assert not (clinic["data"] / "sessions" / "s-a1").exists()  # the files went
    monkeypatch.setattr(flows.store, "delete_prefect_runs", lambda ids: asked.append(set(ids)) or len(ids))
    second = _purge("c-a")
    assert second.exit_code == 0, second.output
    assert asked == [{"s-a1"}]
    assert "1 Prefect run records" in second.output
    assert clinic["store"].sessions(client_id="c-a") == []


def test_purge_finds_the_folders_alliance_analyze_wrote_without_a_database_row(clinic):
    """`alliance analyze` with a consent record writes <data dir>/sessions/<id> but no row (fresh-user trial)."""
    data = clinic["data"]
    for sid, client in (("direct-a", "c-a"), ("direct-b", "c-b")):
        (data / "sessions" / sid).mkdir()
        (data / "sessions" / sid / "session.json").write_text(json.dumps({"session_id": sid, "client_id": client}))
    (data / "sessions" / "broken").mkdir()
    (data / "sessions" / "broken" / "session.json").write_text("{not json")
    result = _purge("c-a")
    assert result.exit_code == 0, result.output
    assert not (data / "sessions" / "direct-a").exists() and not (data / "sessions" / "s-a1").exists()
    assert (data / "sessions" / "direct-b" / "session.json").is_file()  # the other client's
    assert (data / "sessions" / "broken" / "session.json").is_file()  # names nobody: left alone
    assert "Purged client c-a: 2 sessions, 2 session folders" in result.output


def _filed(store, done, name, content, session_id, client_id):
    """A recording filed in done/ under ``name`` (a time-stamped name for a reused one) with its session row."""
    from pipeline.audio import recording_sha256

    (done / name).write_bytes(content)
    store.save_session(session_id=session_id, client_id=client_id, status="analysed", recording_name=name.split(
        ".2026")[0], recording_sha256=recording_sha256(done / name))


def test_purge_takes_exactly_the_clients_files_when_names_were_reused(clinic):
    """5 December trial: purging c-a also deleted c-b's recording and consent record filed under a time-stamped
    name (they started with c-a's file name), and a NAME.json sidecar took y.2.wav, another client's recording;
    purging c-b kept its time-stamped recording."""
    root, store = clinic["root"], clinic["store"]
    inbox = root / "inbox"
    done = inbox / "done"
    done.mkdir(parents=True)
    stamp = "2026-12-04T221916_0000"
    _filed(store, done, "x.wav", b"client a", "s-x1", "c-a")
    (done / "x.wav.json").write_text(json.dumps({"session_id": "s-x1", "client_id": "c-a"}))
    _filed(store, done, f"x.wav.{stamp}.wav", b"client b", "s-x2", "c-b")
    (done / f"x.wav.json.{stamp}.json").write_text(json.dumps({"session_id": "s-x2", "client_id": "c-b"}))
    _filed(store, done, "y.wav", b"client a again", "s-y1", "c-a")
    (done / "y.json").write_text(json.dumps({"session_id": "s-y1", "client_id": "c-a"}))
    _filed(store, done, "y.2.wav", b"client b again", "s-y2", "c-b")
    (done / "y.2.wav.json").write_text(json.dumps({"session_id": "s-y2", "client_id": "c-b"}))
    result = _purge("c-a", "--inbox", str(inbox))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in done.iterdir()) == sorted(
        [f"x.wav.{stamp}.wav", f"x.wav.json.{stamp}.json", "y.2.wav", "y.2.wav.json"])
    result = _purge("c-b", "--inbox", str(inbox))
    assert result.exit_code == 0, result.output
    assert list(done.iterdir()) == []


def test_purge_removes_the_clients_cached_features(clinic):
    """5 December trial: `alliance evaluate` or `retrain` had cached per-window markers of the client's recording in
    <data dir>/feature-cache; the purge left them."""
    from pipeline.audio import recording_sha256

    root, store, data = clinic["root"], clinic["store"], clinic["data"]
    rec = root / "r.wav"
    rec.write_bytes(b"client a's recording")
    sha = recording_sha256(rec)
    store.save_session(session_id="s-a1", client_id="c-a", status="analysed", recording_name="r.wav",
                       recording_sha256=sha, out_dir=str(data / "sessions" / "s-a1"))
    mine = data / "feature-cache" / f"{sha[:16]}-3fa41608-71aca3de"
    theirs = data / "feature-cache" / ("0" * 16 + "-3fa41608-71aca3de")
    for folder in (mine, theirs):
        folder.mkdir(parents=True)
        (folder / "features.json").write_text("{}")
    assert _purge("c-a").exit_code in (0, 1)
    assert not mine.exists() and theirs.exists()
