"""``python -m flows.cli``: the same command as ``alliance``."""

from flows.cli import run

run()
