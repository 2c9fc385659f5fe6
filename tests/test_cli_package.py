"""The `alliance` command is one app whose commands live in modules by concern (issue 17)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
