"""Issue 14: files and folders holding client data are private to the service user (0700 / 0600), whatever the umask.

Each test starts from umask 022 (the usual default, which made every output world-readable) and restores the
process umask afterwards.
"""

from __future__ import annotations

import os
import stat

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.security._fast_session import fast_analysis, run_session, silent_wav


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture()
def open_umask():
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture()
def data(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(folder))
    return folder


def test_session_outputs_are_private(open_umask, data, tmp_path, monkeypatch):
    fast_analysis(monkeypatch)
    run_session(silent_wav(tmp_path / "rec.wav"), session_id="s-0412", language="nl")
    session = data / "sessions" / "s-0412"
    for name in ("session.json", "report.html", "report.en.html", "transcript.json", "features.csv",
                 "utterance_markers.csv", "diarization.rttm", "speech_regions.json"):
        assert oct(mode(session / name)) == oct(0o600), name
    for folder in (data, data / "sessions", session):
        assert oct(mode(folder)) == oct(0o700), folder


def test_an_existing_open_data_dir_is_made_private(open_umask, data, tmp_path, monkeypatch):
    (data / "sessions").mkdir(parents=True, mode=0o755)
    os.chmod(data, 0o755)
    fast_analysis(monkeypatch)
    run_session(silent_wav(tmp_path / "rec.wav"), session_id="s-1", language="nl")
    assert [oct(mode(p)) for p in (data, data / "sessions")] == [oct(0o700)] * 2


def test_the_database_made_by_a_command_is_private(open_umask, data):
    # a command that writes there (`audit` only reads, and refuses a data folder that does not exist)
    result = CliRunner().invoke(app, ["add-therapist", "t-priv", "--password", "a long pass phrase 42"])
    assert result.exit_code == 0, result.output
    assert oct(mode(data / "alliance.db")) == oct(0o600)
    assert oct(mode(data)) == oct(0o700)


def test_inbox_folders_are_private(open_umask, data, tmp_path, monkeypatch):
    import flows.nightly as nightly_module
    from flows.inbox import file_away

    monkeypatch.setattr(nightly_module, "get_run_logger", lambda: __import__("logging").getLogger("alliance.test"))
    monkeypatch.setenv("ALLIANCE_INBOX_SETTLE_S", "0")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    silent_wav(inbox / "no_sidecar.wav")
    summary = nightly_module.nightly_inbox.fn(str(inbox))  # the flow body, as a Prefect worker would start it
    assert [r["file"] for r in summary["rejected"]] == ["no_sidecar.wav"]
    assert oct(mode(inbox / "rejected")) == oct(0o700)
    assert oct(mode(inbox / "rejected" / "no_sidecar.wav.reason.txt")) == oct(0o600)
    assert oct(mode(data / "alliance.db")) == oct(0o600)
    os.umask(0o022)  # the flow set 077; file_away must make its folder private by itself
    moved = file_away([silent_wav(tmp_path / "x.wav")], inbox / "done")
    assert oct(mode(inbox / "done")) == oct(0o700) and moved == [inbox / "done" / "x.wav"]



def test_an_existing_open_database_file_is_made_private(open_umask, data):
    """Trial (stop 44): an alliance.db already there with mode 0644 stayed readable by every user of the machine
    (the folder was tightened, the file not)."""
    data.mkdir(mode=0o755)
    (data / "alliance.db").touch(mode=0o644)
    os.chmod(data / "alliance.db", 0o644)
    result = CliRunner().invoke(app, ["add-therapist", "t-priv", "--password", "a long pass phrase 42"])
    assert result.exit_code == 0, result.output
    assert oct(mode(data / "alliance.db")) == oct(0o600)
