"""Pure processing stages of alliance-monitor.

Nothing in this package imports Prefect. Heavy libraries (faster-whisper,
torch, resemblyzer) are imported lazily inside the backend modules, so the
maths can be tested with fake backends.
"""

import os

# onnxruntime (Silero VAD, the overlap model) sends telemetry events unless told not to; its environment variable
# is read once, when onnxruntime starts, so it is set before anything here imports it (a user's own value wins)
os.environ.setdefault("ORT_TELEMETRY_DISABLED", "1")

__version__ = "0.1.0"
