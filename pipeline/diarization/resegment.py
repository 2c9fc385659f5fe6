"""Resegmentation: the second pass of diarization, one Gaussian mixture of MFCCs per speaker."""

from __future__ import annotations

import numpy as np

from pipeline.diarization.frames import FRAME_S

RESEG_MFCC_CHUNK_S = 60.0
RESEG_MAX_FRAMES = 100_000  # frames per speaker used to fit its mixture (about 17 minutes of speech)


def _mfcc_frames(samples: np.ndarray, sample_rate_hz: int, n_frames: int) -> np.ndarray:
    """20 MFCCs + deltas per 10 ms frame, shape (n_frames, 40), computed in 60 s chunks (bounded memory)."""
    import librosa

    hop = int(round(FRAME_S * sample_rate_hz))
    chunk = int(RESEG_MFCC_CHUNK_S / FRAME_S)
    out = np.zeros((n_frames, 40), dtype=np.float32)
    for f0 in range(0, n_frames, chunk):
        f1 = min(n_frames, f0 + chunk)
        seg = np.asarray(samples[f0 * hop:f1 * hop], dtype=np.float32)
        if seg.size < 2 * hop:
            continue
        m = librosa.feature.mfcc(y=seg, sr=sample_rate_hz, n_mfcc=20, n_fft=int(0.025 * sample_rate_hz),
                                 hop_length=hop, center=True)[:, : f1 - f0]
        d = librosa.feature.delta(m, width=min(9, m.shape[1] - (1 - m.shape[1] % 2))) if m.shape[1] >= 3 else 0 * m
        out[f0:f0 + m.shape[1]] = np.vstack([m, d]).T
    return out


def resegment(samples: np.ndarray, sample_rate_hz: int, frame_labels: np.ndarray, *, n_speakers: int,
              n_components: int = 8, smooth_s: float = 0.5, random_state: int = 0) -> np.ndarray:
    """Relabel speech frames with one Gaussian mixture model of MFCCs per speaker.

    The classic second pass of speaker diarization (Barras et al. 2006): each
    speaker's frames from the first pass train a diagonal-covariance GMM on
    20 MFCCs and their deltas (10 ms frames, standardised over the
    recording); every speech frame then takes the speaker whose log-likelihood,
    averaged over ``smooth_s`` seconds, is highest. It moves boundaries to
    where the voices actually change, at 10 ms resolution, where the first
    pass only knows 2 s windows. Measured over the 15 references of
    ``bench/diarization_eval.py``: mean DER 49.5 → 49.1 %, dev00 20.3 → 17.7 %,
    dev01 13.9 → 13.2 %, Dutch dialogue 1.1 → 0.6 %, sample.wav unchanged.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio.
    sample_rate_hz : int
        Sample rate in Hz (16000).
    frame_labels : np.ndarray, shape (n_frames,), dtype int
        Speaker index per 10 ms frame, -1 for non-speech.
    n_speakers : int
        Number of speakers (labels 0 .. n_speakers - 1).
    n_components : int
        Gaussians per speaker.
    smooth_s : float > 0
        Span of the moving average of the log-likelihoods, in seconds.
    random_state : int
        Seed of the mixtures' initialisation.

    Returns
    -------
    np.ndarray, shape (n_frames,)
        New labels; non-speech frames stay -1. The input comes back unchanged
        when a speaker has fewer than ``10 * n_components`` frames (too few
        to fit a mixture) or a mixture cannot be fitted (degenerate frames).

    References
    ----------
    .. [1] Barras, C., Zhu, X., Meignier, S., Gauvain, J.-L. (2006). Multistage speaker diarization of
       broadcast news. IEEE Transactions on Audio, Speech, and Language Processing 14(5), 1505–1512.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    speech = frame_labels >= 0
    counts = np.bincount(frame_labels[speech], minlength=n_speakers)
    if n_speakers < 2 or counts.size != n_speakers or counts.min() < 10 * n_components:
        return frame_labels
    feats = _mfcc_frames(samples, sample_rate_hz, frame_labels.size)
    mu, sd = feats.mean(axis=0), feats.std(axis=0) + 1e-6
    feats = (feats - mu) / sd
    rng = np.random.default_rng(random_state)
    loglik = np.zeros((frame_labels.size, n_speakers), dtype=np.float32)
    for k in range(n_speakers):
        idx = np.flatnonzero(frame_labels == k)
        if idx.size > RESEG_MAX_FRAMES:
            idx = np.sort(rng.choice(idx, RESEG_MAX_FRAMES, replace=False))
        try:
            with warnings.catch_warnings():
                # 50 EM iterations are the budget, not a failure: the mixture only scores frames, and a fit
                # stopped there scores them as well (a warning printed for it reached the clinic's console)
                warnings.simplefilter("ignore", ConvergenceWarning)
                gmm = GaussianMixture(n_components, covariance_type="diag", random_state=random_state, max_iter=50,
                                      reg_covar=1e-3).fit(feats[idx].astype(np.float64))
        except ValueError:  # degenerate frames (pure tones, digital silence): keep the first pass
            return frame_labels
        for b in range(0, frame_labels.size, 100_000):
            loglik[b:b + 100_000, k] = gmm.score_samples(feats[b:b + 100_000])
    width = max(1, int(round(smooth_s / FRAME_S)))
    kernel = np.ones(width, dtype=np.float32) / width
    smoothed = np.stack([np.convolve(loglik[:, k], kernel, mode="same") for k in range(n_speakers)], axis=1)
    out = smoothed.argmax(axis=1)
    out[~speech] = -1
    return out
