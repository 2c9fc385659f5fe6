"""Pure processing stages of alliance-monitor.

Nothing in this package imports Prefect. Heavy libraries (faster-whisper,
torch, resemblyzer) are imported lazily inside the backend modules, so the
maths can be tested with fake backends.
"""

__version__ = "0.1.0"
