"""The benchmarks' peak memory is the measured process's own (fresh-process benchmarks, ``bench/``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def test_a_fresh_process_peak_memory_does_not_count_the_process_that_started_it():
    """4 December: the clinic mix gave both backends the same 1919 MB on the noisy simulated session, where the flow
    alone reached 1239 MB. Linux carries a process's ``ru_maxrss`` over ``exec`` from the process that spawned it
    (the bench's parent, which had just built the session), so every case's peak started at the parent's."""
    held = np.ones(300 * 2**20, dtype=np.uint8)  # 300 MB resident in this (the parent) process
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); import json; from peak_memory import "
            "peak_rss_mb; print(json.dumps(peak_rss_mb()))")
    child = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                      check=True).stdout)
    assert held.sum() == held.size
    assert child < 150, child  # a bare interpreter: tens of MB, not the parent's 300+
