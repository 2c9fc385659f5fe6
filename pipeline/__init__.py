"""Pure processing stages of alliance-monitor.

Nothing in this package imports Prefect. Heavy libraries (faster-whisper,
torch, resemblyzer) are imported lazily inside the backend modules, so the
maths can be tested with fake backends.
"""

import os

# onnxruntime (Silero VAD, the overlap model) sends telemetry events and keeps an offline cache of them under
# ~/.cache/Microsoft unless told not to; ORT_DISABLE_TELEMETRY (the name its library reads, 1.29 and later on Linux)
# is read once, when onnxruntime starts, so it is set before anything here imports it (a user's own value wins)
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

# librosa's numba functions are compiled and cached by one process at a time (numba issue 10128: processes filling an
# empty cache together can leave a pair that crashes every later process); see pipeline.compile_lock
from pipeline.compile_lock import install as _install_compile_lock  # noqa: E402

_install_compile_lock()

__version__ = "0.1.0"
