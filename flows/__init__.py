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
if "PREFECT_HOME" not in os.environ:
    _home = (Path(os.environ.get("ALLIANCE_DATA_DIR", "").strip() or "alliance-data") / "prefect").resolve()
    try:
        _home.mkdir(parents=True, exist_ok=True)  # Prefect's temporary server fails to start without it
    except OSError:
        pass  # an unusable ALLIANCE_DATA_DIR: the `alliance` command reports it in one line before any flow runs
    os.environ["PREFECT_HOME"] = str(_home)
