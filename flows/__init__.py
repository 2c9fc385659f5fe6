"""Prefect flows: thin wiring around the pure stages in ``pipeline``.

Importing this package, before Prefect is imported, switches Prefect's
analytics off and keeps anything Prefect stores about failed runs (their
exceptions name files) inside the configured data directory. A variable the
user set wins.
"""

import os

from pipeline.settings import Settings

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH",
                      str((Settings().data_dir / "prefect-results").resolve()))
