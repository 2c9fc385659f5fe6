"""The `alliance` command is one app whose commands live in modules by concern (issue 17)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("analyze", "nightly", "deploy", "serve", "audit", "purge", "web", "export-reviews", "eval-diarization",
            "simulate", "retrain", "evaluate", "activate-model", "convert-model", "enroll-therapist", "add-therapist",
            "disable-therapist", "remove-therapist")


def test_python_m_flows_cli_has_every_command_of_alliance():
    """Its __main__ block sat in the middle of cli.py, so `python -m flows.cli` lacked 8 commands."""
    from flows.cli import app

    registered = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    assert registered == set(COMMANDS)
    out = subprocess.run([sys.executable, "-m", "flows.cli", "--help"], capture_output=True, text=True, cwd=ROOT,
                         env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"}, check=True).stdout
    assert all(f" {name} " in out for name in COMMANDS), out
