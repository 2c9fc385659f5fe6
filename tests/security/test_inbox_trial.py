"""Findings of the fresh-user trial of the nightly inbox (issue 14): what the clinic may drop there by mistake.

1. symbolic links are refused as "not a regular file", never followed; 2. every file filed in ``done/``,
``rejected/`` and ``failed/`` is 0600; 3. control characters in file names never break a summary, log, reason or
audit line; 4. one ``NAME.json`` shared by two recordings refuses both; 5. two sidecars for one recording refuse
it; 6. anything else in the inbox is listed as ignored, left where it is.

The analysis is faked as in ``test_nightly_batch.py`` (its ``clinic`` fixture).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from pathlib import Path

import pytest

import flows.inbox as inbox_module
import flows.nightly as nightly_module
from flows.nightly import nightly_inbox
from tests.security.test_nightly_batch import _drop, _record, _store, clinic  # noqa: F401  (clinic: a fixture)

DAY = 86400.0


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


def _events(client_id: str | None = None) -> list[tuple]:
    return [(r["event"], r["outcome"]) for r in _store().audit_rows(client_id=client_id) if r["event"] != "nightly-run"]


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """Every file whose content the nightly run hashes or reads as a sidecar (file names, links not resolved)."""
    seen: list[str] = []
    for module in (nightly_module, inbox_module):
        for name in ("read_sidecar", "recording_sha256"):
            if hasattr(module, name):
                real = getattr(module, name)

                def spy(path, *args, _real=real, **kwargs):
                    seen.append(Path(path).name)
                    return _real(path, *args, **kwargs)

                monkeypatch.setattr(module, name, spy)
    return seen


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """A folder outside the inbox with a recording and a consent record that must never be read or touched."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "secret.wav").write_bytes(b"another family's session")
    (folder / "consent.json").write_text(json.dumps(_record("s-out", "c-999")))
    old = time.time() - 40 * DAY
    for p in folder.iterdir():
        os.chmod(p, 0o644)
        os.utime(p, (old, old))
    return folder


def _untouched(folder: Path) -> None:
    for p in folder.iterdir():
        st = p.stat()
        assert time.time() - st.st_mtime > 39 * DAY, f"{p.name}: its time stamp was changed"
        assert stat.S_IMODE(st.st_mode) == 0o644, f"{p.name}: its mode was changed"
    assert (folder / "secret.wav").read_bytes() == b"another family's session"


# 1. symbolic links ------------------------------------------------------------------------------------------------

def test_a_symlinked_recording_is_rejected_as_the_link_itself_and_its_target_is_never_read(clinic, elsewhere, reads):
    inbox = clinic["inbox"]
    (inbox / "link.wav").symlink_to(elsewhere / "secret.wav")
    (inbox / "link.wav.json").write_text(json.dumps(_record("s-1", "c-001")))
    summary = nightly_inbox(str(inbox))

    assert clinic["calls"] == [] and summary["processed"] == []
    assert [r["file"] for r in summary["rejected"]] == ["link.wav"]
    reason = summary["rejected"][0]["reason"]
    assert reason.startswith("link.wav: ") and "not a regular file" in reason and "\n" not in reason
    rejected = inbox / "rejected"
    assert (rejected / "link.wav").is_symlink() and os.readlink(rejected / "link.wav") == str(elsewhere / "secret.wav")
    assert (rejected / "link.wav.json").is_file()
    assert (rejected / "link.wav.reason.txt").read_text().strip() == reason
    assert not (inbox / "link.wav").exists() and not (inbox / "link.wav").is_symlink()
    assert "link.wav" not in reads and "secret.wav" not in reads
    assert _events("c-001") == [("rejected", "refused")]
    _untouched(elsewhere)


def test_a_symlinked_sidecar_is_not_a_consent_record(clinic, elsewhere, reads):
    inbox = clinic["inbox"]
    _drop(inbox, "s.wav", b"a session", None)
    (inbox / "s.wav.json").symlink_to(elsewhere / "consent.json")
    summary = nightly_inbox(str(inbox))

    assert clinic["calls"] == [] and summary["processed"] == []
    assert [r["file"] for r in summary["rejected"]] == ["s.wav"]
    reason = summary["rejected"][0]["reason"]
    assert "s.wav.json" in reason and "not a regular file" in reason
    rejected = inbox / "rejected"
    assert (rejected / "s.wav").is_file() and (rejected / "s.wav.json").is_symlink()
    assert "s.wav.json" not in reads and "consent.json" not in reads
    assert [r["detail"] for r in _store().audit_rows() if r["event"] == "rejected"] == [reason]
    assert _store().audit_rows(client_id="c-999") == []  # the linked record was never taken as this recording's
    _untouched(elsewhere)


def test_links_in_rejected_expire_without_touching_their_targets(clinic, elsewhere, monkeypatch):
    monkeypatch.setenv("ALLIANCE_REJECTED_RETENTION_DAYS", "0")
    inbox = clinic["inbox"]
    (inbox / "link.wav").symlink_to(elsewhere / "secret.wav")
    (inbox / "link.wav.json").symlink_to(elsewhere / "consent.json")
    nightly_inbox(str(inbox))
    assert sorted(p.name for p in (inbox / "rejected").iterdir()) == ["link.wav.reason.txt"]
    _untouched(elsewhere)
    assert (elsewhere / "consent.json").is_file()


# 2. modes of filed files ---------------------------------------------------------------------------------------

def test_every_file_filed_in_done_rejected_and_failed_is_private(clinic):
    inbox = clinic["inbox"]
    _drop(inbox, "a.wav", b"analysed", _record("s-1", "c-001"))
    _drop(inbox, "b.wav", b"reuses s-1", _record("s-1", "c-002"))  # refused: to failed/
    _drop(inbox, "c.wav", b"no consent", _record("s-3", "c-003", analysis=False))  # to rejected/
    for p in inbox.iterdir():
        os.chmod(p, 0o644)  # as the clinic's copy left them
    nightly_inbox(str(inbox))

    filed = {f"{folder}/{p.name}": _mode(p) for folder in ("done", "rejected", "failed")
             for p in (inbox / folder).iterdir()}
    assert set(filed) == {"done/a.wav", "done/a.wav.json", "failed/b.wav", "failed/b.wav.json",
                          "failed/b.wav.reason.txt", "rejected/c.wav", "rejected/c.wav.json",
                          "rejected/c.wav.reason.txt"}
    assert {name: oct(m) for name, m in filed.items() if m != 0o600} == {}
    assert all(_mode(inbox / folder) == 0o700 for folder in ("done", "rejected", "failed"))


def test_file_away_makes_files_and_reason_private_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        audio = tmp_path / "x.wav"
        audio.write_bytes(b"x")
        os.chmod(audio, 0o644)
        moved = inbox_module.file_away([audio], tmp_path / "failed", reason="why")
    finally:
        os.umask(old)
    assert _mode(moved[0]) == 0o600 and _mode(tmp_path / "failed" / "x.wav.reason.txt") == 0o600


# 3. control characters in file names -------------------------------------------------------------------------

EVIL = "evil\n2026-01-01T00:00:00\tanalysis\tc-001\tok.wav"
SHOWN = "evil\\n2026-01-01T00:00:00\\tanalysis\\tc-001\\tok.wav"


def test_a_file_name_with_a_newline_or_tab_stays_on_one_line_everywhere(clinic, caplog):
    from typer.testing import CliRunner

    from flows.cli import app

    inbox = clinic["inbox"]
    _drop(inbox, EVIL, b"refused", _record("s-1", "c-001", analysis=False))
    _drop(inbox, "x\x1b[2Jy.wav", b"analysed", _record("s-2", "c-002"))
    _drop(inbox, "bad\tsidecar.wav", b"bad sidecar", None)
    (inbox / "bad\tsidecar.wav.json").write_text("{not json")
    (inbox / "note\nabout.txt").write_text("ignored")
    caplog.set_level(logging.INFO)
    result = CliRunner().invoke(app, ["nightly", "--inbox", str(inbox)])
    assert result.exit_code == 0, result.output

    lines = result.output.splitlines()
    assert any(line.startswith(f"  {SHOWN}: ") for line in lines), result.output
    assert not [line for line in lines if line.startswith(("2026-01-01", "about.txt", "sidecar.wav"))], result.output
    assert "\x1b" not in result.output and "  x\\x1b[2Jy.wav" in result.output
    assert "  bad\\tsidecar.wav: bad\\tsidecar.wav.json: not valid JSON" in result.output
    assert "  note\\nabout.txt: " in result.output
    # the reason file, the audit rows and the log lines
    assert (inbox / "rejected" / f"{EVIL}.reason.txt").read_text().count("\n") == 1
    assert SHOWN in (inbox / "rejected" / f"{EVIL}.reason.txt").read_text()
    details = [r["detail"] or "" for r in _store().audit_rows()]
    assert any(SHOWN in d for d in details) and not [d for d in details if "\n" in d or "\t" in d or "\x1b" in d]
    logged = [r.getMessage() for r in caplog.records if "evil" in r.getMessage() or "sidecar.wav" in r.getMessage()]
    assert logged and not [m for m in logged if "\n" in m or "\t" in m], logged


def test_the_summary_values_themselves_are_one_line(clinic):
    inbox = clinic["inbox"]
    _drop(inbox, EVIL, b"refused", _record("s-1", "c-001", analysis=False))
    _drop(inbox, "ok\t.wav", b"analysed", _record("s-2", "c-002"))
    (inbox / "orphan\n.json").write_text("{}")
    summary = nightly_inbox(str(inbox))
    items = [item for kind, v in summary.items() if isinstance(v, list) for item in v]
    assert len(items) == 3
    assert not [i for i in items if any(c in str(value) for value in i.values() for c in "\n\t")], items
    assert [r["file"] for r in summary["rejected"]] == [SHOWN]
    assert [r["file"] for r in summary["processed"]] == ["ok\\t.wav"]


# 4. one NAME.json for two recordings ------------------------------------------------------------------------------

def test_a_sidecar_shared_by_two_recordings_refuses_both_and_moves_all_of_them(clinic):
    inbox = clinic["inbox"]
    _drop(inbox, "share.wav", b"one", None)
    _drop(inbox, "share.mp3", b"two", None)
    (inbox / "share.json").write_text(json.dumps(_record("s-1", "c-001")))
    summary = nightly_inbox(str(inbox))

    assert clinic["calls"] == [] and summary["processed"] == [] and summary["failed"] == []
    assert sorted(r["file"] for r in summary["rejected"]) == ["share.mp3", "share.wav"]
    for r in summary["rejected"]:
        assert "share.json is the sidecar of share.mp3 and share.wav" in r["reason"]
        assert "give each recording its own NAME.ext.json" in r["reason"]
        assert "not found" not in r["reason"]
    assert sorted(p.name for p in inbox.iterdir()) == ["rejected"]
    assert sorted(p.name for p in (inbox / "rejected").iterdir()) == [
        "share.json", "share.mp3", "share.mp3.reason.txt", "share.wav", "share.wav.reason.txt"]
    assert _events("c-001") == [("rejected", "refused"), ("rejected", "refused")]


def test_a_shared_sidecar_waits_while_one_of_its_recordings_is_still_being_copied(clinic, monkeypatch):
    monkeypatch.setenv("ALLIANCE_INBOX_SETTLE_S", "3600")
    inbox = clinic["inbox"]
    old = time.time() - DAY
    _drop(inbox, "share.wav", b"one", None)
    (inbox / "share.json").write_text(json.dumps(_record("s-1", "c-001")))
    for p in inbox.iterdir():
        os.utime(p, (old, old))
    _drop(inbox, "share.mp3", b"still arriving", None)
    summary = nightly_inbox(str(inbox))
    assert summary["rejected"] == [] and summary["processed"] == []
    assert sorted(w["file"] for w in summary["waiting"]) == ["share.mp3", "share.wav"]
    assert sorted(p.name for p in inbox.iterdir()) == ["share.json", "share.mp3", "share.wav"]


# 5. two sidecars for one recording -------------------------------------------------------------------------------

def test_a_recording_with_two_sidecars_is_refused_naming_both(clinic):
    inbox = clinic["inbox"]
    _drop(inbox, "amb.wav", b"which consent?", _record("s-1", "c-001"))
    (inbox / "amb.json").write_text(json.dumps(_record("s-1", "c-001", analysis=False)))
    summary = nightly_inbox(str(inbox))

    assert clinic["calls"] == [] and summary["processed"] == []
    assert [r["file"] for r in summary["rejected"]] == ["amb.wav"]
    reason = summary["rejected"][0]["reason"]
    assert "amb.wav.json" in reason and "amb.json" in reason
    assert sorted(p.name for p in inbox.iterdir()) == ["rejected"]
    assert sorted(p.name for p in (inbox / "rejected").iterdir()) == [
        "amb.json", "amb.wav", "amb.wav.json", "amb.wav.reason.txt"]
    assert _events("c-001") == [("rejected", "refused")]


def test_a_name_json_that_is_another_recordings_own_sidecar_is_not_ambiguous(clinic):
    inbox = clinic["inbox"]
    _drop(inbox, "pair.wav", b"first", _record("s-1", "c-001"))  # pair.wav.json
    _drop(inbox, "pair.mp3", b"second", None)
    (inbox / "pair.json").write_text(json.dumps(_record("s-2", "c-001")))  # the sidecar of pair.mp3 only
    summary = nightly_inbox(str(inbox))
    assert sorted((p["file"], p["session_id"]) for p in summary["processed"]) == [("pair.mp3", "s-2"),
                                                                                  ("pair.wav", "s-1")]
    assert summary["rejected"] == [] and summary.get("ignored") == []


# 6. everything else in the inbox ----------------------------------------------------------------------------------

def test_orphans_and_other_files_are_listed_as_ignored_and_left_alone(clinic, elsewhere):
    from typer.testing import CliRunner

    from flows.cli import app

    inbox = clinic["inbox"]
    (inbox / "orphan.wav.json").write_text(json.dumps(_record("s-1", "c-001")))
    (inbox / "notes.txt").write_text("a note")
    (inbox / "sub").mkdir()
    (inbox / "linked").symlink_to(elsewhere)
    (inbox / "folder.wav").mkdir()
    (inbox / "Sanne.json").write_text(json.dumps(_record(None, "c-002", participants=[
        {"role": "client", "name": "Sanne", "age": 9}])))
    before = sorted(p.name for p in inbox.iterdir())
    result = CliRunner().invoke(app, ["nightly", "--inbox", str(inbox)])
    assert result.exit_code == 0, result.output

    assert sorted(p.name for p in inbox.iterdir() if p.name not in ("done", "rejected", "failed")) == before
    summary = json.loads(json.dumps(nightly_inbox(str(inbox))))  # the second run lists them again, folders ignored
    ignored = {i["file"]: i["reason"] for i in summary["ignored"]}
    assert set(ignored) == {"orphan.wav.json", "notes.txt", "sub", "linked", "folder.wav",
                            "a .json sidecar whose file name holds a participant's name"}
    assert "no recording" in ignored["orphan.wav.json"]
    assert "not a recording" in ignored["notes.txt"]
    assert "folder" in ignored["sub"] and "link" in ignored["linked"] and "folder" in ignored["folder.wav"]
    assert all("\n" not in r for r in ignored.values())
    assert "Sanne" not in json.dumps(summary) and "Sanne" not in result.output
    assert "ignored: 6" in result.output and "  orphan.wav.json: " in result.output
    assert _events() == []  # no audit row for things that are not recordings
    _untouched(elsewhere)


def test_a_link_an_earlier_run_filed_in_done_is_not_served_and_expires_as_a_link(clinic, elsewhere, monkeypatch):
    from flows.inbox import find_recording
    from pipeline.audio import recording_sha256

    done = clinic["inbox"] / "done"
    done.mkdir()
    (done / "link.wav").symlink_to(elsewhere / "secret.wav")  # as the code before this fix filed it
    row = {"recording_name": "link.wav", "recording_sha256": recording_sha256(elsewhere / "secret.wav")}
    assert find_recording(clinic["inbox"], row) is None  # the review app never plays what a link points to
    monkeypatch.setenv("ALLIANCE_AUDIO_RETENTION_DAYS", "0")
    nightly_inbox(str(clinic["inbox"]))
    assert not os.path.lexists(done / "link.wav")
    _untouched(elsewhere)


def test_file_away_never_moves_a_recording_through_a_filing_folder_that_became_a_link(tmp_path):
    """Third trial (stop 44): done/ swapped for a link while the run analysed took the analysed recordings out of
    the inbox, to wherever the link led (the run checks its filing folders only when it starts)."""
    from flows.inbox import file_away

    inbox, elsewhere = tmp_path / "inbox", tmp_path / "elsewhere"
    inbox.mkdir()
    elsewhere.mkdir()
    (inbox / "done").symlink_to(elsewhere)
    rec = inbox / "a.wav"
    rec.write_bytes(b"audio")
    with pytest.raises(OSError, match="link"):
        file_away([rec], inbox / "done")
    assert rec.is_file() and list(elsewhere.iterdir()) == []
