"""The ``alliance`` command: one typer app, its commands in modules by concern.

``alliance = flows.cli:app`` in pyproject.toml; ``python -m flows.cli`` runs the same app.
"""

from flows.cli.app import app
from flows.cli import analyze, clinic, review, research, therapists  # noqa: F401,E402  (they register commands)

__all__ = ["app"]
