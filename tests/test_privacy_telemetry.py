"""onnxruntime's telemetry is switched off before its first model loads (fresh-user trial: strace of one analysis
showed look-ups of Microsoft's event host)."""

from __future__ import annotations

import os

import numpy as np


def test_telemetry_is_off_before_the_first_onnxruntime_session(monkeypatch):
    import onnxruntime

    import pipeline
    from pipeline import privacy
    from pipeline.overlap import SegmentationOverlapDetector
    from pipeline.vad import detect_speech

    assert pipeline.__name__ and os.environ.get("ORT_DISABLE_TELEMETRY") == "1"
    calls: list[str] = []
    monkeypatch.setattr(onnxruntime, "disable_telemetry_events", lambda: calls.append("disable"))
    real_session = onnxruntime.InferenceSession

    def session(*args, **kwargs):
        calls.append("session")
        return real_session(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    privacy.no_onnxruntime_telemetry.cache_clear()
    SegmentationOverlapDetector()
    privacy.no_onnxruntime_telemetry.cache_clear()
    detect_speech(np.zeros(16000, np.float32), 16000)
    assert calls[:2] == ["disable", "session"] and calls.count("disable") == 2


def test_an_analysis_process_leaves_no_telemetry_files_in_the_users_home(tmp_path):
    """Trial of 4 December: onnxruntime 1.32 still opened ~/.cache/Microsoft/DeveloperTools/.onnxruntime/onnxruntime.db
    (82 queued events) in every run: the variable set was ORT_TELEMETRY_DISABLED, which onnxruntime does not read;
    its opt-out is ORT_DISABLE_TELEMETRY, read once when it starts."""
    import subprocess
    import sys

    code = ("import numpy as np, pipeline; from pipeline.vad import detect_speech; "
            "from pipeline.overlap import SegmentationOverlapDetector; "
            "detect_speech(np.zeros(16000, np.float32), 16000); SegmentationOverlapDetector()")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORT_")}
    env.update(HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / ".cache"))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300, capture_output=True)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                  if "Microsoft" in str(p) or "onnxruntime" in str(p))
    assert left == []
