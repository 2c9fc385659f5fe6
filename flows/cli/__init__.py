"""The ``alliance`` command: one typer app, its commands in modules by concern.

``alliance = flows.cli:run`` in pyproject.toml; ``python -m flows.cli`` runs the same.
"""

from flows.cli.app import app
from flows.cli import analyze, clinic, review, research, therapists  # noqa: F401,E402  (they register commands)

__all__ = ["app", "run"]


def run() -> None:
    """The ``alliance`` program: :data:`app`, stopped at once and tidily by Ctrl-C."""
    from flows.cli.app import stop_at_once_on_ctrl_c

    stop_at_once_on_ctrl_c()
    app()
