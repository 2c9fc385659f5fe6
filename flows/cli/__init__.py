"""The ``alliance`` command: one typer app, its commands in modules by concern.

``alliance = flows.cli:run`` in pyproject.toml; ``python -m flows.cli`` runs the same.
"""

from flows.cli.app import app
from flows.cli import analyze, clinic, review, research, therapists  # noqa: F401,E402  (they register commands)

__all__ = ["app", "run"]


def run() -> None:
    """The ``alliance`` program: :data:`app`, stopped at once and tidily by Ctrl-C; the Python processes it starts
    (Prefect's temporary server ``python -m uvicorn``, Dask workers, pitch helpers) never import modules from the
    folder it was started in (``PYTHONSAFEPATH``: a planted ``numpy.py`` there ran inside Prefect's server)."""
    import os

    from flows.cli.app import stop_at_once_on_ctrl_c

    os.environ["PYTHONSAFEPATH"] = "1"
    stop_at_once_on_ctrl_c()
    app()
