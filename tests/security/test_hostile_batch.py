"""Hostile inbox items found by the 4 December trial: each must be refused on its own, never stop the batch.

Written first and seen failing: a deeply nested sidecar (RecursionError) and ``"participants": 5``
(TypeError) ended the whole nightly run, night after night; a file name that is not UTF-8 ended it after the
analyses, losing the database rows of sessions already analysed; a ``done/`` folder that is a link to another
folder was written through (recordings moved there, its files deleted by retention); a FIFO given as metadata
blocked ``alliance analyze``; duplicate keys let the last ``consent`` win without a word.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from flows.nightly import nightly_inbox
from pipeline.errors import MetadataError, PipelineError
from pipeline.sidecar import read_sidecar

from .test_nightly_batch import _audit, _drop, _record, _store, clinic  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow  # nightly batches through a Prefect server


def test_a_deeply_nested_sidecar_is_refused_and_the_batch_goes_on(clinic):  # noqa: F811
    inbox = clinic["inbox"]
    _drop(inbox, "a.wav", b"first", _record("s-a", "c-001"))
    deep = "[" * 100_000 + "]" * 100_000
    (inbox / "b.wav").write_bytes(b"second")
    (inbox / "b.wav.json").write_text('{"client_id": "c-002", "x": ' + deep + "}", encoding="utf-8")
    _drop(inbox, "z.wav", b"third", _record("s-z", "c-003"))
    summary = nightly_inbox(str(inbox))

    assert sorted(p["session_id"] for p in summary["processed"]) == ["s-a", "s-z"]
    (refused,) = summary["rejected"]
    assert refused["file"] == "b.wav" and "nested too deeply" in refused["reason"]
    assert (inbox / "rejected" / "b.wav").is_file()


def test_participants_that_are_not_a_list_are_refused_and_the_batch_goes_on(clinic):  # noqa: F811
    inbox = clinic["inbox"]
    _drop(inbox, "a.wav", b"first", _record("s-a", "c-001"))
    _drop(inbox, "b.wav", b"second", _record("s-b", "c-002", participants=5))
    summary = nightly_inbox(str(inbox))

    assert [p["session_id"] for p in summary["processed"]] == ["s-a"]
    (refused,) = summary["rejected"]
    assert refused["file"] == "b.wav" and "participants" in refused["reason"]
    assert "\n" not in refused["reason"]


def test_a_file_name_that_is_not_utf8_is_refused_and_the_analysed_sessions_are_kept(clinic):  # noqa: F811
    inbox = clinic["inbox"]
    _drop(inbox, "a.wav", b"first", _record("s-a", "c-001"))
    odd = os.path.join(os.fsencode(inbox), b"b\xff.wav")
    with open(odd, "wb") as f:
        f.write(b"second")
    with open(odd + b".json", "w", encoding="utf-8") as f:
        json.dump(_record("s-b", "c-002"), f)
    _drop(inbox, "z.wav", b"third", _record("s-z", "c-003"))
    summary = nightly_inbox(str(inbox))

    assert sorted(p["session_id"] for p in summary["processed"]) == ["s-a", "s-z"]
    assert {r["session_id"] for r in _store().sessions()} == {"s-a", "s-z"}
    assert (inbox / "done" / "z.wav").is_file()
    (refused,) = summary["rejected"]
    assert "UTF-8" in refused["reason"]
    # a second night finds nothing left to do and does not fail
    again = nightly_inbox(str(inbox))
    assert again["processed"] == [] and again["failed"] == []


def test_a_done_folder_that_is_a_link_is_never_written_through(clinic, tmp_path):  # noqa: F811
    inbox = clinic["inbox"]
    victim = tmp_path / "victim"
    victim.mkdir()
    os.chmod(victim, 0o755)
    old = victim / "old.wav"
    old.write_bytes(b"someone else's file")
    os.utime(old, (1, 1))  # decades old: retention would delete it if it took the folder for done/
    (inbox / "done").symlink_to(victim, target_is_directory=True)
    _drop(inbox, "a.wav", b"first", _record("s-a", "c-001"))
    with pytest.raises(PipelineError, match=r"done: is a link.*Nothing was moved or deleted"):
        nightly_inbox(str(inbox))

    assert old.read_bytes() == b"someone else's file"
    assert sorted(p.name for p in victim.iterdir()) == ["old.wav"]
    assert stat.S_IMODE(victim.stat().st_mode) == 0o755
    assert (inbox / "a.wav").is_file() and (inbox / "a.wav.json").is_file()  # left where it was: nothing lost
    assert clinic["calls"] == []


def test_duplicate_keys_in_a_sidecar_are_refused(tmp_path):
    path = tmp_path / "a.wav.json"
    path.write_text('{"consent": {"analysis": false}, "client_id": "c-1", "consent": {"analysis": true}}')
    with pytest.raises(MetadataError, match="'consent' twice"):
        read_sidecar(path)


def test_metadata_that_is_a_fifo_is_refused_at_once(tmp_path):
    fifo = tmp_path / "meta.json"
    os.mkfifo(fifo)
    result: list = []

    def read() -> None:
        try:
            read_sidecar(fifo)
        except MetadataError as exc:
            result.append(str(exc))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=5)
    if reader.is_alive():  # unblock the reader so the test process can end
        with open(fifo, "w"):
            pass
        reader.join(timeout=5)
        pytest.fail("reading a FIFO as metadata blocked")
    assert result and "not a regular file" in result[0]


# 5 December trial -------------------------------------------------------------------------------------------------

def test_a_filing_error_after_an_analysis_keeps_every_analysed_session(clinic, monkeypatch):  # noqa: F811
    """`done/` replaced by a file during the run: moving the first analysed recording raised and ended the run, so
    the second analysed session got no database row and was refused the next night as "already used"."""
    import flows.nightly as nightly_module

    real = nightly_module.file_away
    broken = {"a.wav"}

    def file_away(files, folder, **kw):
        if folder.name == "done" and files and files[0] is not None and files[0].name in broken:
            raise FileExistsError(17, "File exists", str(folder))
        return real(files, folder, **kw)

    monkeypatch.setattr(nightly_module, "file_away", file_away)
    inbox = clinic["inbox"]
    _drop(inbox, "a.wav", b"first", _record("s-a", "c-001"))
    _drop(inbox, "b.wav", b"second", _record("s-b", "c-002"))
    summary = nightly_inbox(str(inbox))
    assert [p["session_id"] for p in summary["processed"]] == ["s-b"]
    (failed,) = summary["failed"]
    assert failed["file"] == "a.wav" and "could not be moved to done/" in failed["reason"]
    assert "\n" not in failed["reason"]
    assert _store().session("s-a")["status"] == "analysed" and _store().session("s-b")["status"] == "analysed"
    assert (inbox / "a.wav").is_file() and (inbox / "done" / "b.wav").is_file()
    # the next night files it away as what it is: already analysed
    broken.clear()
    summary = nightly_inbox(str(inbox))
    assert summary["failed"] == [] and [d["session_id"] for d in summary["duplicates"]] == ["s-a"]
    assert (inbox / "done" / "a.wav").is_file()


def test_a_recording_that_vanishes_after_the_scan_does_not_stop_the_batch(clinic, monkeypatch):  # noqa: F811
    import flows.nightly as nightly_module

    real = nightly_module.recording_sha256

    def sha(path):
        if path.name == "b.wav":
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real(path)

    monkeypatch.setattr(nightly_module, "recording_sha256", sha)
    inbox = clinic["inbox"]
    _drop(inbox, "a.wav", b"first", _record("s-a", "c-001"))
    _drop(inbox, "b.wav", b"second", _record("s-b", "c-002"))
    _drop(inbox, "c.wav", b"third", _record("s-c", "c-003"))
    summary = nightly_inbox(str(inbox))
    assert sorted(p["session_id"] for p in summary["processed"]) == ["s-a", "s-c"]
    (failed,) = summary["failed"]
    assert failed["file"] == "b.wav" and "could not be read" in failed["reason"]


def test_a_recording_that_failed_can_be_delivered_again_under_its_session_id(clinic, monkeypatch):  # noqa: F811
    """An empty recording failed; the clinic delivered the proper one with the same sidecar and it was refused as
    "already used for another recording", though nothing of the failed one was kept."""
    import flows.nightly as nightly_module
    from pipeline.errors import PipelineError

    real = nightly_module.analyze_session

    @nightly_module.flow(name="empty_fails", persist_result=False)
    def picky(recording: str, out_dir: str | None = None, metadata_path: str | None = None,
              session_id: str | None = None):
        if Path(recording).read_bytes() == b"empty":
            raise PipelineError(f"{Path(recording).name}: file is empty")
        return real.fn(recording, out_dir=out_dir, metadata_path=metadata_path, session_id=session_id)

    inbox = clinic["inbox"]
    monkeypatch.setattr(nightly_module, "analyze_session", picky)
    _drop(inbox, "a.wav", b"empty", _record("s-a", "c-001"))
    assert [f["session_id"] for f in nightly_inbox(str(inbox))["failed"]] == ["s-a"]
    _drop(inbox, "a.wav", b"the proper recording", _record("s-a", "c-001"))
    summary = nightly_inbox(str(inbox))
    assert [p["session_id"] for p in summary["processed"]] == ["s-a"] and summary["failed"] == []
    assert _store().session("s-a")["status"] == "analysed"
    # another client's recording still may not take a failed session's id
    _drop(inbox, "b.wav", b"empty", _record("s-b", "c-001"))
    nightly_inbox(str(inbox))
    _drop(inbox, "b2.wav", b"another client", _record("s-b", "c-009"))
    summary = nightly_inbox(str(inbox))
    assert "already used" in summary["failed"][0]["reason"]


@pytest.mark.parametrize("record, said", [
    ({**_record("s-b", "c-002"), "client_id": None}, "client_id is missing"),
    (_record("s-sheila", "c-002", participants=[{"role": "therapist", "id": "t-anna"},
                                                  {"role": "client", "age": 9, "name": "Sheila"}]),
     "session_id holds a participant's name"),
])
def test_a_sidecar_without_client_id_or_with_a_name_in_an_id_is_refused(clinic, record, said):  # noqa: F811
    """A session without client_id could never be purged nor shown in a team; a name in the session id reached
    the session folder, the report title, the RTTM, the database and the audit log."""
    if record.get("client_id") is None:
        record.pop("client_id")
    inbox = clinic["inbox"]
    _drop(inbox, "a.wav", b"first", _record("s-a", "c-001"))
    _drop(inbox, "b.wav", b"second", record)
    summary = nightly_inbox(str(inbox))
    assert [p["session_id"] for p in summary["processed"]] == ["s-a"]
    (refused,) = summary["rejected"]
    assert said in refused["reason"] and "Sheila" not in refused["reason"] + json.dumps(summary)
    assert not (clinic["data"] / "sessions" / "s-sheila").exists()


def test_a_recording_dated_in_the_future_is_not_left_waiting_forever(clinic):  # noqa: F811
    inbox = clinic["inbox"]
    audio = _drop(inbox, "a.wav", b"first", _record("s-a", "c-001"))
    future = time.time() + 200 * 86400
    os.utime(audio, (future, future))
    os.utime(audio.with_name("a.wav.json"), (future, future))
    summary = nightly_inbox(str(inbox))
    assert [p["session_id"] for p in summary["processed"]] == ["s-a"] and summary["waiting"] == []
