"""Processes that fill an empty numba cache at the same time leave it whole (numba issue 10128).

Seen in CI and fresh-clone runs: the work pool's flow processes and Dask's workers ended with a segmentation fault
in prosody (``librosa.pyin`` calls ``util.localmin``), after other processes had compiled librosa's functions at the
same time. Here the race is made certain: process A compiles into an empty cache and pauses just before saving
``util.localmin``'s kernel; process B starts meanwhile; then a third process uses ``localmin`` and ``localmax`` on
every type they were compiled for.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

PAUSING = """
import os, time
from numba.core import caching
save = caching.IndexDataCacheFile._save_data
def paused(self, name, data):
    if name.startswith("utils._localmin"):  # the kernel (the wrapper's file starts with guf-)
        open(os.environ["PAUSED"], "w").close()
        deadline = time.monotonic() + 90
        # until B has finished, or has said it waits for A
        while time.monotonic() < deadline and not os.path.exists(os.environ["B_DONE"]):
            if "waiting for it" in open(os.environ["B_LOG"]).read():
                break
            time.sleep(0.2)
    save(self, name, data)
caching.IndexDataCacheFile._save_data = paused
import pipeline, librosa
librosa.util.localmax
"""

SECOND = """
import logging, os
logging.basicConfig(filename=os.environ["B_LOG"], level=logging.INFO)
import pipeline, librosa
librosa.util.localmax
open(os.environ["B_DONE"], "w").close()
"""

USE = """
import numpy as np, librosa
x = np.random.default_rng(0).standard_normal(500) * 100
for t in (np.int16, np.int32, np.int64, np.float32, np.float64):
    librosa.util.localmin(x.astype(t)); librosa.util.localmax(x.astype(t))
print("used")
"""


@pytest.mark.slow
def test_two_processes_filling_an_empty_numba_cache_leave_it_usable(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"), "PAUSED": str(tmp_path / "a-paused"),
           "B_DONE": str(tmp_path / "b-done"), "B_LOG": str(tmp_path / "b.log")}
    (tmp_path / "b.log").touch()
    a = subprocess.Popen([sys.executable, "-c", PAUSING], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (tmp_path / "a-paused").exists():
        assert a.poll() is None, a.stderr.read()
        assert time.monotonic() < deadline, "A never reached the save of util.localmin"
        time.sleep(0.2)
    b = subprocess.run([sys.executable, "-c", SECOND], env=env, capture_output=True, text=True, timeout=300)
    assert b.returncode == 0, b.stderr
    assert a.wait(timeout=300) == 0, a.stderr.read()
    used = subprocess.run([sys.executable, "-c", USE], env=env, capture_output=True, text=True, timeout=300)
    assert used.returncode == 0 and "used" in used.stdout, (used.returncode, used.stderr[-2000:])
    # B waited for A rather than compiling beside it
    assert "waiting for it" in (tmp_path / "b.log").read_text()
