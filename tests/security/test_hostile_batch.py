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
