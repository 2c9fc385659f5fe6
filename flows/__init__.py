"""Prefect flows: thin wiring around the pure stages in ``pipeline``.

Importing this package switches Prefect's analytics off unless the user set
the variable themselves.
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
