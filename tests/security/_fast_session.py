"""Run the ``analyze_session`` flow body in this process, fast: no Prefect engine, no Whisper, no speaker encoder.

Decoding, VAD, the report and every file write are real; ASR returns no words and the speaker encoder is a stub
(the recordings used here are silent, so diarization never embeds). ``calls["decode"]`` lists every decode.
"""

from __future__ import annotations

import logging
import types
from pathlib import Path

import numpy as np

TASKS = ("decode_task", "vad_task", "asr_task", "diarization_task", "markers_task", "report_task")


def silent_wav(path: Path, seconds: float = 2.0) -> Path:
    """A short silent 16 kHz WAV file at ``path``."""
    from pipeline.audio import save_wav

    return save_wav(path, np.zeros(int(16000 * seconds), np.float32), 16000)


def fast_analysis(monkeypatch) -> dict:
    """Patch ``flows.analyze`` for an in-process run; return ``{"decode": [paths decoded]}``."""
    import flows.analyze as analyze_module
    import pipeline.asr
    import pipeline.session
    from pipeline.types import Transcript

    calls: dict[str, list[str]] = {"decode": []}
    original = pipeline.session.decode

    def spy(path, **kwargs):
        calls["decode"].append(str(path))
        return original(path, **kwargs)

    def no_words(samples, rate, **_):
        return Transcript(words=(), language="nl", language_probability=0.0, duration_s=len(samples) / rate)

    monkeypatch.setattr(pipeline.session, "decode", spy)
    for name in TASKS:
        monkeypatch.setattr(analyze_module, name, getattr(analyze_module, name).fn)
    monkeypatch.setattr(analyze_module, "get_run_logger", lambda: logging.getLogger("alliance.test"))
    monkeypatch.setattr(analyze_module, "_asr_backend", lambda settings_json: None)
    monkeypatch.setattr(analyze_module, "_embedder", lambda: types.SimpleNamespace(name="stub"))
    monkeypatch.setattr(pipeline.asr, "transcribe", no_words)
    return calls


def run_session(recording: Path, **kwargs) -> str:
    """``analyze_session``'s body with ``kwargs``; the path of the report it wrote. Call :func:`fast_analysis` first."""
    import flows.analyze as analyze_module
    from pipeline.settings import Settings

    report = analyze_module.analyze_session.fn(str(recording), **kwargs)
    folder = analyze_module.session_folder_path(Settings().data_dir, report.session_id, kwargs.get("out_dir"))
    return str(folder / "report.html")


def files_under(folder: Path) -> set[str]:
    """Every path under ``folder``, relative, as strings."""
    return {str(p.relative_to(folder)) for p in Path(folder).rglob("*")}
