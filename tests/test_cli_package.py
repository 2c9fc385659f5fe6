"""The `alliance` command is one app whose commands live in modules by concern (issue 17)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("analyze", "nightly", "deploy", "serve", "audit", "purge", "web", "export-reviews", "eval-diarization",
            "simulate", "retrain", "evaluate", "activate-model", "convert-model", "enroll-voice", "add-therapist",
            "disable-therapist", "remove-therapist")
HIDDEN = ("enroll-therapist",)  # the old name of enroll-voice, kept working for scripts and the old README


def test_python_m_flows_cli_has_every_command_of_alliance():
    """Its __main__ block sat in the middle of cli.py, so `python -m flows.cli` lacked 8 commands."""
    from flows.cli import app

    registered = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    assert registered == set(COMMANDS) | set(HIDDEN)
    out = subprocess.run([sys.executable, "-m", "flows.cli", "--help"], capture_output=True, text=True, cwd=ROOT,
                         env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"}, check=True).stdout
    assert all(f" {name} " in out for name in COMMANDS), out
    assert not any(f" {name} " in out for name in HIDDEN), out


def test_the_voice_profile_and_the_login_commands_say_which_is_which():
    """Issue 18: `enroll-therapist` (a voice profile) and `add-therapist` (a login) were taken for one another."""
    from typer.testing import CliRunner

    from flows.cli import app

    runner = CliRunner()
    voice = " ".join(runner.invoke(app, ["enroll-voice", "--help"], terminal_width=200).output.split())
    login = " ".join(runner.invoke(app, ["add-therapist", "--help"], terminal_width=200).output.split())
    assert "voice profile" in voice and "not a login" in voice and "add-therapist" in voice
    assert "login" in login and "not a voice profile" in login and "enroll-voice" in login
    old = " ".join(runner.invoke(app, ["enroll-therapist", "--help"], terminal_width=200).output.split())
    assert "voice profile" in old and "enroll-voice" in old  # the hidden old name still works


def test_add_therapist_reads_the_password_from_stdin_without_a_getpass_warning(tmp_path):
    """Issue 18: piped into `add-therapist`, getpass printed "GetPassWarning: Can not control echo ...".
    Without a terminal the password is the first line of standard input (documented in the README)."""
    import os

    env = {**os.environ, "ALLIANCE_DATA_DIR": str(tmp_path / "data"), "PYTHONWARNINGS": "default"}
    run = subprocess.run([sys.executable, "-m", "flows.cli", "add-therapist", "t-anna"], input="kaars-vijver-42\n",
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "Warning" not in run.stderr and "echo" not in run.stderr, run.stderr
    assert "kaars-vijver-42" not in run.stdout + run.stderr
    assert "Login for t-anna saved." in run.stdout
    from flows.store import Store
    from flows.web import verify_password
    from pipeline.settings import Settings

    store = Store.for_settings(Settings(data_dir=tmp_path / "data"))
    assert verify_password(store.password_hash("t-anna"), "kaars-vijver-42")
    empty = subprocess.run([sys.executable, "-m", "flows.cli", "add-therapist", "t-bram"], input="",
                           capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert empty.returncode == 2 and "Warning" not in empty.stderr
    assert "no password on standard input" in empty.stderr


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_an_analysis_at_once_and_leaves_nothing_behind(tmp_path, how):
    """Ctrl-C reaches the whole foreground process group, Prefect's temporary server included: the analysis went
    on to the end, then reported its state to the stopped server for minutes (hundreds of ConnectError lines).
    Now it stops within seconds, in one line, and removes the session's unfinished work. SIGTERM to the command
    alone (`kill`, a service manager; trial, stop 44) left Prefect's temporary server running, answering on its port
    with the runs' parameters: it now stops the same way."""
    import os
    import signal
    import time

    data = tmp_path / "data"
    env = {**os.environ, "ALLIANCE_DATA_DIR": str(data)}
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "analyze", str(ROOT / "sample_audio/sample.wav")],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,  # its own group, as a terminal's foreground job
                            # a suite started in the background by a shell ignores SIGINT, and children inherit that
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while not list(data.glob("sessions/*/.work-*/audio.npy")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list(data.glob("sessions/*/.work-*/audio.npy")), "the analysis never started"
        time.sleep(1.0)
        stopped_at = time.monotonic()
        if how == "SIGINT":
            os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole group
        else:
            os.kill(proc.pid, signal.SIGTERM)  # `kill PID`: the command alone
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - stopped_at
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 128 + getattr(signal, how), err[-3000:]
    assert took < 15, f"{took:.1f} s"
    assert "Traceback" not in err and "ConnectError" not in err, err[-3000:]
    assert ("stopped (Ctrl-C)" if how == "SIGINT" else "stopped (SIGTERM)") in err
    assert not list(data.glob("sessions/*/.work-*")) and not list(data.glob("sessions/*/report.html"))
    assert _running_in_group(proc.pid) == [], "left running"  # the server, pitch helpers


def _running_in_group(pgid: int, wait_s: float = 5.0) -> list[int]:
    """Processes of group ``pgid`` still running (zombies not counted) after up to ``wait_s`` seconds."""
    import time

    import psutil

    deadline = time.monotonic() + wait_s
    while True:
        left = []
        for p in psutil.process_iter():
            try:
                if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(p.pid)
            except (OSError, psutil.Error):
                pass
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def test_scratch_left_by_a_killed_run_is_removed_and_a_chosen_out_folder_is_kept(tmp_path):
    """A run killed outright (a crash) left ``.work-*`` with decoded audio for good; a folder the user made and
    gave as --out was removed when the run failed or was stopped (fresh-user trial)."""
    from flows.analyze import _end_scratch, _new_scratch, discard_unfinished

    out = tmp_path / "chosen"
    out.mkdir()
    dead = out / ".work-999999999-abc"  # no such process
    dead.mkdir()
    (dead / "audio.npy").write_bytes(b"x")
    alive = out / f".work-{os.getpid()}-def"  # a run still going in this process
    alive.mkdir()
    work = _new_scratch(out, remove_out=False)
    assert not dead.exists() and alive.exists() and work.is_dir()
    alive.rmdir()
    _end_scratch(work)
    assert out.is_dir() and not any(out.iterdir())  # the user's folder stays
    made = tmp_path / "made-by-the-run"
    made.mkdir()
    _new_scratch(made, remove_out=True)
    assert discard_unfinished() == 1 and not made.exists()


def test_scratch_of_an_older_version_without_a_process_id_is_removed_once_a_day_old(tmp_path):
    """Versions before the process id was in the name left ``.work-<random>`` folders with decoded audio; they can
    never be matched to a process, so one older than a day is removed (a fresh one may be a run still going)."""
    from flows.analyze import _end_scratch, _new_scratch

    out = tmp_path / "session"
    out.mkdir()
    old, recent = out / ".work-k2j4h1x", out / ".work-p9q8r7s"
    for folder in (old, recent):
        folder.mkdir()
        (folder / "audio.npy").write_bytes(b"x")
    day_and_more = time.time() - 25 * 3600
    os.utime(old, (day_and_more, day_and_more))
    work = _new_scratch(out, remove_out=False)
    assert not old.exists() and recent.exists()
    _end_scratch(work)


def test_a_scratch_name_that_links_outside_the_session_folder_is_never_followed(tmp_path):
    """The sweep removes only folders inside the session folder: a ``.work-*`` link to elsewhere is left alone."""
    from flows.analyze import _end_scratch, _new_scratch

    out, elsewhere = tmp_path / "session", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("x")
    (out / ".work-999999999-abc").symlink_to(elsewhere)
    (out / ".work-k2j4h1x").symlink_to(elsewhere)
    day_and_more = time.time() - 25 * 3600
    os.utime(elsewhere, (day_and_more, day_and_more))
    _end_scratch(_new_scratch(out, remove_out=False))
    assert (elsewhere / "keep.txt").is_file()


@pytest.mark.slow
def test_child_processes_do_not_import_modules_from_the_working_folder(tmp_path):
    """A ``uvicorn.py`` in the folder `alliance` runs from was imported by Prefect's temporary server
    (``python -m uvicorn``), which then died (fresh-user trial); the program sets PYTHONSAFEPATH for its children."""
    import os

    script = Path(sys.executable).parent / "alliance"
    if not script.exists():
        pytest.skip("the alliance program is not installed in this environment (make install)")
    plant = tmp_path / "plant"
    plant.mkdir()
    marker = tmp_path / "planted-module-ran"
    (plant / "uvicorn.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (tmp_path / "inbox").mkdir()
    env = {**os.environ, "ALLIANCE_DATA_DIR": str(tmp_path / "data")}
    env.pop("PYTHONSAFEPATH", None)
    run = subprocess.run([str(script), "nightly", "--inbox", str(tmp_path / "inbox")], cwd=plant, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert not marker.exists()


@pytest.mark.slow  # two commands in fresh processes per variable
@pytest.mark.parametrize("variable", ["ALLIANCE_OVERLAP__MODEL_PATH", "ALLIANCE_MODEL__ACTIVE_MODEL"])
def test_an_unusable_model_file_is_a_setting_error_in_analyze_and_nightly_alike(tmp_path, variable):
    """A model path that leads nowhere is a bad setting: exit status 2 and one line naming the variable, in
    `analyze` as in `nightly` (before, 1 and 2), before any recording is read; the refused command leaves no empty
    `prefect/` folder nor a database in the data directory (before, Prefect's home was made when the check was
    imported, and `nightly` opened the database first) and the inbox as it was. Trial, 5 December: a classifier folder that cannot be loaded was found only inside each
    session, so a whole night's good recordings went to `failed/`."""
    import json
    import shutil

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copyfile(ROOT / "sample_audio/sample.wav", inbox / "s.wav")
    (inbox / "s.wav.json").write_text(json.dumps({
        "session_id": "s-1", "client_id": "c-1", "language": "en",
        "consent": {"analysis": True, "research_use": False, "given_by": ["parent"], "date": "2026-11-01"}}))
    bad = tmp_path / ("gone.onnx" if variable.startswith("ALLIANCE_OVERLAP") else "empty-model-folder")
    if not variable.startswith("ALLIANCE_OVERLAP"):
        bad.mkdir()
    for command in (["analyze", str(ROOT / "sample_audio/sample.wav")], ["nightly", "--inbox", str(inbox)]):
        data = tmp_path / f"data-{command[0]}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ALLIANCE_", "PREFECT_"))}
        env.update({"ALLIANCE_DATA_DIR": str(data), "ALLIANCE_INBOX_SETTLE_S": "0", variable: str(bad)})
        run = subprocess.run([sys.executable, "-m", "flows.cli", *command], capture_output=True, text=True, cwd=ROOT,
                             env=env, timeout=300)
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        assert run.returncode == 2, (command[0], run.returncode, run.stderr, run.stdout)
        assert len(lines) == 1 and bad.name in lines[0] and variable in lines[0], lines
        left = sorted(p.name for p in data.iterdir()) if data.exists() else []
        assert "prefect" not in left and "alliance.db" not in left, (command[0], left)
        assert sorted(p.name for p in inbox.iterdir()) == ["s.wav", "s.wav.json"]
