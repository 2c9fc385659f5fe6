"""Voice activity detection (VAD) with Silero.

The Silero VAD v6 ONNX weights ship inside the faster-whisper wheel, so
nothing is downloaded.

References
----------
.. [1] Silero Team (2024). Silero VAD: pre-trained enterprise-grade Voice
   Activity Detector. https://github.com/snakers4/silero-vad
"""

from __future__ import annotations

import collections
import hashlib
import threading

import numpy as np

from pipeline.settings import VadSettings
from pipeline.types import SpeechRegion


def detect_speech(samples: np.ndarray, sample_rate_hz: int, *,
                  settings: VadSettings | None = None) -> tuple[SpeechRegion, ...]:
    """Find speech regions with Silero VAD [1]_, searching long non-speech stretches again with a fresh state.

    Silero is a recurrent model: after a long stretch of steady noise (a fan, a recorder started a minute early)
    its state lags and the first words after it are found seconds late, or not at all. So every non-speech stretch
    of at least ``settings.restart_after_s`` seconds is searched again in overlapping pieces of that length, each
    from a fresh state, as if the recording began there; what they find is added to the first pass. Speech is
    never removed, and a recording without such stretches gets exactly Silero's one-pass regions.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio in [-1, 1].
    sample_rate_hz : int
        Must be 16000 (Silero's rate here).
    settings : VadSettings, optional
        Speech probability threshold, minimum speech/silence durations (ms), padding (ms), and the length (s) of
        non-speech after which Silero searches again.

    Returns
    -------
    tuple of SpeechRegion
        Non-overlapping regions in time order, times in seconds.

    Raises
    ------
    ValueError
        If ``sample_rate_hz`` is not 16000.
    """
    if sample_rate_hz != 16000:
        raise ValueError(f"sample_rate_hz must be 16000 for Silero VAD. Got {sample_rate_hz} instead.")
    settings = settings or VadSettings()
    samples = np.asarray(samples, dtype=np.float32)
    if samples.size == 0:
        return ()
    stamps = _silero(samples, settings)
    piece = int(round(settings.restart_after_s * sample_rate_hz))
    if piece > 0:
        bounds = [0, *(x for s in stamps for x in (s["start"], s["end"])), samples.size]
        extra = []
        for gap_start, gap_end in zip(bounds[::2], bounds[1::2]):
            if gap_end - gap_start < piece:
                continue
            # pieces start every half piece, so speech anywhere in the stretch is met by a state at most one
            # piece old; the last piece reaches past the first pass's next region
            for start in range(gap_start, gap_end, piece // 2):
                end = min(start + piece, samples.size)
                extra += [{"start": s["start"] + start, "end": s["end"] + start}
                          for s in _silero(samples[start:end], settings)]
        if extra:
            stamps = _union(stamps + extra)
    return tuple(SpeechRegion(s["start"] / sample_rate_hz, s["end"] / sample_rate_hz) for s in stamps)


class BoundedSilero:
    """faster-whisper's Silero model, run one batch of windows at a time: the same probabilities, bounded memory.

    faster-whisper (1.2) builds every 512-sample window with its 64 samples of context for the whole recording
    before running the model in batches of 10,000 windows: for 60 minutes a 260 MB array beside a 230 MB padded
    copy of the audio, for each of the three Silero passes of an analysis. This builds each batch's windows when
    it is run, with the same context (the last 64 samples of the window before; none for the first), the same
    recurrent state carried from batch to batch, and the same zeroed last 64 samples of the last window that
    faster-whisper's in-place write gives, so its output is identical (``tests/test_vad.py`` compares them).
    Batches of 1,000 windows (32 s) rather than faster-whisper's 10,000 keep onnxruntime's working memory small:
    a pass over 30 minutes peaked 356 MB above its start with 10,000 and 189 MB with 1,000, in the same time.

    The probabilities depend on the audio only, not on the thresholds applied to them, and an analysis searches
    the same recording three times (the vad stage, the ASR's speech chunks, the fine pauses at speaker changes),
    with many short searches in between (pieces of long silences, the ASR's 10-minute pieces): probabilities are
    kept up to 16 MB (4 bytes per 32 ms window: 675 KB for 90 minutes), keyed by a BLAKE2 digest of the samples,
    so the model runs once per audio.

    Parameters
    ----------
    model : faster_whisper.vad.SileroVADModel
        The loaded model; its onnxruntime session is used.
    """

    BATCH_WINDOWS = 1_000
    KEEP_BYTES = 16 * 2**20  # probabilities kept, least recently used dropped first (4 hours of audio: 1.8 MB)

    def __init__(self, model) -> None:
        self.session = model.session
        self._kept: collections.OrderedDict[bytes, np.ndarray] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, audio: np.ndarray, num_samples: int = 512, context_size_samples: int = 64) -> np.ndarray:
        """Speech probabilities, shape (n_windows,), for ``audio`` of shape (n_windows * num_samples,)."""
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        key = hashlib.blake2b(audio.data, digest_size=20, person=f"{num_samples}-{context_size_samples}".encode()
                              ).digest()
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key].copy()
        probs = self._probabilities(audio, num_samples, context_size_samples)
        with self._lock:
            self._kept[key] = probs.copy()
            while sum(p.nbytes for p in self._kept.values()) > self.KEEP_BYTES and len(self._kept) > 1:
                self._kept.popitem(last=False)
        return probs

    def _probabilities(self, audio: np.ndarray, num_samples: int, context_size_samples: int) -> np.ndarray:
        windows = audio.reshape(-1, num_samples)
        n, ctx = windows.shape[0], context_size_samples
        h = np.zeros((1, 1, 128), dtype=np.float32)
        c = np.zeros((1, 1, 128), dtype=np.float32)
        outputs = []
        for i in range(0, n, self.BATCH_WINDOWS):
            j = min(i + self.BATCH_WINDOWS, n)
            block = np.empty((j - i, num_samples + ctx), dtype=np.float32)
            block[:, ctx:] = windows[i:j]
            if i == 0:
                block[0, :ctx] = 0.0
                block[1:, :ctx] = windows[:j - 1, -ctx:]
            else:
                block[:, :ctx] = windows[i - 1:j - 1, -ctx:]
            if j == n:
                block[-1, -ctx:] = 0.0
            output, h, c = self.session.run(None, {"input": block, "h": h, "c": c})
            outputs.append(output)
        return np.concatenate(outputs, axis=0)


def _bounded_model_installed() -> None:
    """Make faster-whisper's ``get_speech_timestamps`` use :class:`BoundedSilero` (once per process)."""
    from faster_whisper import vad as fw_vad

    if not getattr(fw_vad.get_vad_model, "_alliance_bounded", False):
        original = fw_vad.get_vad_model
        bounded = BoundedSilero(original())

        def get_vad_model():
            return bounded

        get_vad_model._alliance_bounded = True
        fw_vad.get_vad_model = get_vad_model


def _silero(samples: np.ndarray, settings: VadSettings) -> list[dict]:
    """One Silero pass from a fresh state (faster-whisper's): speech regions as sample indices."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    from pipeline.privacy import no_onnxruntime_telemetry

    no_onnxruntime_telemetry()
    _bounded_model_installed()

    options = VadOptions(
        threshold=settings.threshold,
        min_speech_duration_ms=settings.min_speech_duration_ms,
        min_silence_duration_ms=settings.min_silence_duration_ms,
        speech_pad_ms=settings.speech_pad_ms,
    )
    return get_speech_timestamps(samples, options, sampling_rate=16000)


def _union(stamps: list[dict]) -> list[dict]:
    """Overlapping or touching regions (sample indices) merged, in time order."""
    merged: list[dict] = []
    for s in sorted(stamps, key=lambda s: s["start"]):
        if merged and s["start"] <= merged[-1]["end"]:
            merged[-1]["end"] = max(merged[-1]["end"], s["end"])
        else:
            merged.append(dict(s))
    return merged


def speech_mask(regions: tuple[SpeechRegion, ...], n_frames: int, frame_s: float) -> np.ndarray:
    """Boolean speech mask on a regular frame grid.

    Parameters
    ----------
    regions : tuple of SpeechRegion
        Speech regions in seconds.
    n_frames : int >= 0
        Number of frames in the grid.
    frame_s : float > 0
        Frame period in seconds.

    Returns
    -------
    np.ndarray, shape (n_frames,), dtype bool
        True where the frame lies inside a region.
    """
    mask = np.zeros(n_frames, dtype=bool)
    for r in regions:
        mask[int(round(r.start / frame_s)): int(round(r.end / frame_s))] = True
    return mask


def fine_pauses(samples: np.ndarray, sample_rate_hz: int, *, threshold: float = 0.5,
                min_silence_ms: int = 100) -> list[tuple[float, float]]:
    """Short silences between speech, from a Silero pass with no padding (for gaps at speaker changes).

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio at 16 kHz.
    sample_rate_hz : int
        16000.
    threshold : float in (0, 1)
        Speech probability threshold.
    min_silence_ms : int
        Shortest silence kept, in ms.

    Returns
    -------
    list of (start_s, end_s)
        Silences between consecutive speech regions, in seconds.
    """
    fine = detect_speech(samples, sample_rate_hz, settings=VadSettings(
        threshold=threshold, min_speech_duration_ms=50, min_silence_duration_ms=min_silence_ms, speech_pad_ms=0))
    return [(a.end, b.start) for a, b in zip(fine, fine[1:]) if b.start > a.end]
