"""Filing refused recordings away (``flows.inbox.file_away``) and deleting them after the retention period.

Written first and seen failing (4 December trial): a sidecar name that is a folder was moved into
``rejected/`` with the recording, made 0600 (a folder nobody can enter) and never deleted by retention, so
whatever it held stayed there for good.
"""
from __future__ import annotations

import os
import stat

from flows.inbox import expire_refused, file_away


class _Store:
    def __init__(self):
        self.rows = []

    def audit(self, action, **kw):
        self.rows.append((action, kw))


def test_a_sidecar_that_is_a_folder_stays_where_it_is_and_rejected_empties_with_retention(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "odd.wav").write_bytes(b"audio")
    sidecar = inbox / "odd.wav.json"
    sidecar.mkdir()
    (sidecar / "inside.txt").write_text("kept")
    moved = file_away([inbox / "odd.wav", sidecar], inbox / "rejected", reason="odd.wav: its sidecar is a folder")
    assert moved == [inbox / "rejected" / "odd.wav"]
    assert sidecar.is_dir() and (sidecar / "inside.txt").read_text() == "kept"
    assert not any(p.is_dir() for p in (inbox / "rejected").iterdir())
    assert stat.S_IMODE(os.stat(inbox / "rejected" / "odd.wav").st_mode) == 0o600
    store = _Store()
    assert expire_refused(inbox / "rejected", 0, store, actor="test") == 1
    assert sorted(p.name for p in (inbox / "rejected").iterdir()) == ["odd.wav.reason.txt"]


def test_a_fifo_sidecar_is_never_moved_or_opened(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "odd.wav").write_bytes(b"audio")
    fifo = inbox / "odd.wav.json"
    os.mkfifo(fifo)
    moved = file_away([inbox / "odd.wav", fifo], inbox / "failed", reason="odd.wav: its sidecar is a pipe")
    assert moved == [inbox / "failed" / "odd.wav"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
