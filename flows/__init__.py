"""Prefect flows: thin wiring around the pure stages in ``pipeline``.

Importing this package, before Prefect is imported, switches Prefect's
analytics off and points Prefect's home (its local database of runs, which
holds recording paths and session ids, and the exceptions of failed runs) at
``<data dir>/prefect``, so nothing about a session is kept outside the
configured data directory. A variable the user set wins.
"""

import os
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Prefect's temporary server gives up after 20 s; on a busy 2-core machine it needs longer to start
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
if "PREFECT_HOME" not in os.environ:
    # the value as the settings read it (pipeline.settings refuses one with spaces or a line break at its ends)
    _data = os.environ.get("ALLIANCE_DATA_DIR", "")
    _home = Path(_data or "alliance-data") / "prefect"
    try:
        _home = _home.resolve()
    except (OSError, RuntimeError):  # a link loop, a name too long: the `alliance` command says so in one line
        _home = _home.absolute()
    os.environ["PREFECT_HOME"] = str(_home)
try:
    _HOME_WAS_THERE = Path(os.environ["PREFECT_HOME"]).exists()
except (OSError, ValueError):
    _HOME_WAS_THERE = True  # never removed by discard_unused_prefect_home


def make_prefect_home() -> None:
    """Create Prefect's home, private (0700: its runs name sessions), before Prefect first runs.

    Called by the modules that run Prefect, not at import: ``alliance --help`` in any folder must not leave an
    ``alliance-data/`` there. An unusable ``ALLIANCE_DATA_DIR`` is left for the ``alliance`` command to report
    in one line before any flow runs.
    """
    home = Path(os.environ["PREFECT_HOME"])
    try:  # Prefect's temporary server fails to start without it
        home.mkdir(parents=True, exist_ok=True)
        os.chmod(home, 0o700)
    except OSError:
        pass


def discard_unused_prefect_home() -> None:
    """Remove Prefect's home again when this process made it and nothing was written to it.

    For a command refused before any flow ran (an unusable model file, say): the modules that hold the checks
    make the home on import, and an empty ``prefect/`` must not be the only trace of a refused command.
    """
    if _HOME_WAS_THERE:
        return
    try:
        Path(os.environ["PREFECT_HOME"]).rmdir()  # only an empty folder goes
    except OSError:
        pass
