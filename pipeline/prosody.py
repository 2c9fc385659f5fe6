"""Prosody per speaker turn: F0 and intensity.

References
----------
.. [1] Mauch, M., Dixon, S. (2014). pYIN: A fundamental frequency estimator
   using probabilistic threshold distributions. ICASSP, 659–663.
"""

from __future__ import annotations

import logging
import math
from typing import Sequence

import numpy as np

from pipeline.settings import FeatureSettings, available_cores
from pipeline.types import SpeakerTurn, TurnProsody


def f0_track(samples: np.ndarray, sample_rate_hz: int, *, fmin_hz: float, fmax_hz: float,
             hop_s: float, resolution_st: float = 0.1) -> np.ndarray:
    """Fundamental frequency (F0) with pYIN [1]_, NaN where unvoiced.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio in [-1, 1].
    sample_rate_hz : int > 0
        Sample rate in Hz.
    fmin_hz, fmax_hz : float > 0
        Search range in Hz (``fmin_hz < fmax_hz``).
    hop_s : float > 0
        Frame hop in seconds (20 ms by default: half the cost of 10 ms).
    resolution_st : float in (0, 1]
        Pitch grid of pYIN's Viterbi decoding, in semitones (librosa's
        default is 0.1; 0.25 runs about 6 times faster).

    Returns
    -------
    np.ndarray, shape (n_frames,)
        F0 in Hz per frame, NaN for unvoiced frames.
    """
    import librosa

    hop = max(1, int(round(hop_s * sample_rate_hz)))
    frame_length = 1024 if sample_rate_hz <= 16000 else 2048
    if samples.size < frame_length:
        return np.full(0, np.nan)
    f0, voiced, _ = librosa.pyin(np.asarray(samples, dtype=np.float32), fmin=fmin_hz, fmax=fmax_hz,
                                 sr=sample_rate_hz, frame_length=frame_length, hop_length=hop, center=False,
                                 resolution=resolution_st)
    return np.where(voiced, f0, np.nan)


def intensity_db(samples: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale (dBFS).

    A full-scale sine reads -3.01 dB; digital silence reads -inf (returned as -120 dB).

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono audio in [-1, 1].
    """
    if samples.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20.0 * math.log10(rms) if rms > 1e-6 else -120.0


def turn_prosody(samples: np.ndarray, sample_rate_hz: int, turns: Sequence[SpeakerTurn], *,
                 settings: FeatureSettings, processes: int | None = None) -> tuple[TurnProsody, ...]:
    """F0 median and range, intensity and voicing per speaker turn.

    pYIN runs only on the audio of each turn, so silence costs nothing. pYIN
    holds Python's global interpreter lock for most of its time (a loop over
    frames), so threads do not share the work; with ``processes`` of 2 or
    more, helper processes take turns from the same list while this process
    works through it from the other end (``python -m pipeline.prosody``, a
    fresh interpreter each, started for this call and stopped after it; it
    imports nothing of the caller). Each turn's figures do not depend on
    where they were computed. Where no helper can start, or one fails, its
    turns are done here.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio.
    sample_rate_hz : int > 0
        Sample rate in Hz.
    turns : sequence of SpeakerTurn
        Turns in seconds.
    settings : FeatureSettings
        pYIN range (Hz) and hop (s); ``prosody_processes`` when ``processes``
        is not given.
    processes : int >= 1, optional
        Processes that share the turns, this one included (1: this one only);
        never more than the cores this process may use or the pieces of work.

    Returns
    -------
    tuple of TurnProsody
        One per turn: ``f0_median_hz``, ``f0_range_st`` (5th to 95th
        percentile in semitones), ``intensity_db`` (dBFS) and the voiced
        fraction of frames in [0, 1].
    """
    processes = settings.prosody_processes if processes is None else processes
    if processes < 1:
        raise ValueError(f"processes must be >= 1. Got {processes} instead.")
    segments = [samples[int(t.start * sample_rate_hz): int(t.end * sample_rate_hz)] for t in turns]
    pitch = (settings.pitch_fmin_hz, settings.pitch_fmax_hz, settings.pitch_hop_s, settings.pitch_resolution_st)
    chunks = _chunks(segments, sample_rate_hz)
    processes = min(processes, available_cores(), len(chunks))  # more would only compete for the cores
    if processes > 1:
        figures, _ = _shared_out(chunks, segments, sample_rate_hz, pitch, helpers=processes - 1)
    else:
        figures = [f for idx in chunks for f in _segments_prosody([segments[i] for i in idx], sample_rate_hz, pitch)]
    return tuple(TurnProsody(t.start, t.end, t.speaker, *f) for t, f in zip(turns, figures))


#: Pieces a session's turns are cut into for sharing (each about the same length of audio), and the least audio
#: worth starting a helper process for. A helper needs about 2.8 s of the other core to start (numpy, librosa's
#: compiled pYIN), and this process waits for the piece it took: measured on 2 idle cores, turns of 54, 107, 214,
#: 267, 374 and 534 s took 1.2, 2.7, 5.1, 6.1, 11.3 and 14.6 s alone against 3.7, 4.9, 6.3, 6.0, 7.8 and 10.6 s
#: shared, so the helper pays from about 4.5 minutes of turns on.
SHARE_PIECES = 24
SHARE_MIN_AUDIO_S = 300.0
#: How long a helper may go on with a chunk after this process ran out of work, at least (s); also twice the
#: longest chunk this process did
HELPER_GRACE_S = 60.0


def _chunks(segments: list[np.ndarray], sample_rate_hz: int) -> list[list[int]]:
    """Consecutive turn indices cut into about :data:`SHARE_PIECES` runs of similar audio length."""
    sizes = np.array([s.size for s in segments], dtype=np.float64)
    total = float(sizes.sum())
    if total < SHARE_MIN_AUDIO_S * sample_rate_hz or len(segments) < 2:
        return [list(range(len(segments)))]
    edges = np.searchsorted(np.cumsum(sizes), total * np.arange(1, SHARE_PIECES) / SHARE_PIECES, side="left") + 1
    bounds = [0, *sorted(set(int(e) for e in edges if 0 < e < len(segments))), len(segments)]
    return [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]


def _segments_prosody(segments: Sequence[np.ndarray], sample_rate_hz: int,
                      pitch: tuple[float, float, float, float]) -> list[tuple[float, float, float, float]]:
    """``(f0_median_hz, f0_range_st, intensity_db, voiced_fraction)`` of each segment (run in helpers too)."""
    fmin, fmax, hop, resolution = pitch
    out = []
    for seg in segments:
        f0 = f0_track(seg, sample_rate_hz, fmin_hz=fmin, fmax_hz=fmax, hop_s=hop, resolution_st=resolution)
        voiced = f0[np.isfinite(f0)]
        if voiced.size >= 3:
            lo, hi = np.percentile(voiced, [5, 95])
            median, rng = float(np.median(voiced)), float(12.0 * np.log2(hi / lo))
        else:
            median, rng = math.nan, math.nan
        out.append((median, rng, intensity_db(seg), float(voiced.size / f0.size) if f0.size else 0.0))
    return out


def _shared_out(chunks: list[list[int]], segments: list[np.ndarray], sample_rate_hz: int,
                pitch: tuple[float, float, float, float], *, helpers: int) -> tuple[list[tuple], int]:
    """The figures of every segment, and how many chunks helpers did.

    Helpers take chunks from the front of one queue while this process takes them from the back. A helper that
    cannot start, fails or dies leaves its chunk to this process; one still busy long after this process ran out
    of work (twice the longest chunk here, at least :data:`HELPER_GRACE_S`) is stopped and its chunk done here.
    """
    import collections
    import threading
    import time

    todo = collections.deque(range(len(chunks)))
    lock = threading.Lock()
    done: list[list | None] = [None] * len(chunks)
    by_helpers = [0]

    def feed(helper: _Helper) -> None:
        try:
            while True:
                with lock:
                    if not todo:
                        return
                    j = todo.popleft()
                figures = helper.run([segments[i] for i in chunks[j]], sample_rate_hz, pitch)
                if figures is None:  # the helper failed or died: its chunk goes back to the queue
                    with lock:
                        todo.appendleft(j)
                    return
                done[j] = figures
                with lock:
                    by_helpers[0] += 1
        finally:
            helper.close()

    started = [h for h in (_Helper.start() for _ in range(helpers)) if h is not None]
    feeders = [threading.Thread(target=feed, args=(h,), name="pyin-helper", daemon=True) for h in started]
    for t in feeders:
        t.start()
    longest = 0.0
    while True:
        with lock:
            if not todo:
                break
            j = todo.pop()
        t0 = time.monotonic()
        done[j] = _segments_prosody([segments[i] for i in chunks[j]], sample_rate_hz, pitch)
        longest = max(longest, time.monotonic() - t0)
    for helper, t in zip(started, feeders):
        t.join(max(HELPER_GRACE_S, 2 * longest))
        if t.is_alive():  # hung: stop it; its chunk is done below
            helper.kill()
            t.join()
            logging.getLogger(__name__).warning(
                "pitch helper process stopped: no answer %.0f s after the other work ended; its turns were "
                "measured in the analysis process (same figures, more time)", max(HELPER_GRACE_S, 2 * longest))
    for j, idx in enumerate(chunks):  # chunks a helper gave back after this process ran out of work
        if done[j] is None:
            done[j] = _segments_prosody([segments[i] for i in idx], sample_rate_hz, pitch)
    return [f for part in done for f in part], by_helpers[0]


class _Helper:
    """A ``python -m pipeline.prosody`` process that computes :func:`_segments_prosody` for this one.

    A plain subprocess, not :mod:`multiprocessing`: that would import the caller's main script again in the
    helper (a script without an ``if __name__ == "__main__"`` guard would run its whole analysis there). Jobs
    and results are pickled over the helper's stdin and stdout, which nothing else writes to.
    """

    def __init__(self, proc) -> None:
        self._proc = proc

    @classmethod
    def start(cls) -> "_Helper | None":
        """A running helper, or None where none can start (no interpreter path, no processes allowed)."""
        import os
        import subprocess
        import sys
        from pathlib import Path

        if not sys.executable:
            return None
        root = str(Path(__file__).resolve().parent.parent)  # the folder that holds ``pipeline``
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        try:
            # -P: the folder the analysis runs from is not put on the module path (a stray numpy.py there is
            # never imported); this package is found through PYTHONPATH
            proc = subprocess.Popen([sys.executable, "-P", "-m", "pipeline.prosody"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, env=env)
        except (OSError, ValueError):
            return None
        return cls(proc)

    def run(self, segments: list[np.ndarray], sample_rate_hz: int, pitch: tuple) -> list[tuple] | None:
        """The helper's figures for ``segments``; None when it failed or is gone."""
        import pickle

        try:
            pickle.dump((segments, sample_rate_hz, pitch), self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._proc.stdin.flush()
            reply = pickle.load(self._proc.stdout)
        except (OSError, EOFError, ValueError, pickle.UnpicklingError):
            return None
        return reply if isinstance(reply, list) else None

    def close(self) -> None:
        """End the helper (end of its input), killing it if it does not stop within 5 s."""
        import subprocess

        try:
            self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Stop the helper at once."""
        try:
            self._proc.kill()
            self._proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - already gone
            pass


def _serve() -> None:
    """The helper's loop: read a pickled job from stdin, write its figures (or a failure) to stdout, until EOF."""
    import os
    import pickle
    import signal
    import sys

    # Ctrl-C in a terminal reaches this helper too: the analysis process decides what stops (it ends this
    # helper, or closes its input)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints of any library go to stderr, not the results
    source = sys.stdin.buffer
    while True:
        try:
            segments, sample_rate_hz, pitch = pickle.load(source)
        except EOFError:
            return
        try:
            reply = _segments_prosody(segments, sample_rate_hz, pitch)
        except Exception as exc:  # noqa: BLE001 - the analysis process redoes the chunk and raises it there
            reply = ("failed", type(exc).__name__)
        pickle.dump(reply, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()


if __name__ == "__main__":
    _serve()
