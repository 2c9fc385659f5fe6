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

    assert pipeline.__name__ and os.environ.get("ORT_TELEMETRY_DISABLED") == "1"
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
