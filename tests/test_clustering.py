"""Clustering and speaker-count maths on toy vectors (no audio, no models)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.diarization import FRAME_S, cluster_embeddings, count_speakers, estimate_num_speakers
from pipeline.diarization.clustering import cosine_affinity, spread_indices, unit_rows
from pipeline.diarization.speaker_count import COUNT_MIN_SPEAKERS


def test_unit_rows_have_length_one_and_zero_rows_stay_zero():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]])
    u = unit_rows(x)
    assert np.allclose(u, [[0.6, 0.8], [0.0, 0.0], [0.0, -1.0]])


def test_cosine_affinity_is_symmetric_in_0_1_with_opposites_at_0():
    u = unit_rows(np.array([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0]]))
    a = cosine_affinity(u)
    assert np.allclose(a, a.T) and a.min() >= 0.0 and a.max() <= 1.0
    assert np.allclose(np.diag(a), 1.0)
    assert a[0, 1] == pytest.approx(np.sqrt(0.5)) and a[0, 2] == 0.0  # cos 45° kept, cos 180° = -1 clipped


def test_spread_indices_keep_first_and_last():
    assert list(spread_indices(5, 10)) == [0, 1, 2, 3, 4]
    idx = spread_indices(1000, 7)
    assert idx.size == 7 and idx[0] == 0 and idx[-1] == 999 and (np.diff(idx) > 0).all()


def test_clusters_are_numbered_by_first_appearance():
    rng = np.random.default_rng(4)
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])
    x = np.vstack([b + 0.05 * rng.standard_normal((6, 3)), a + 0.05 * rng.standard_normal((6, 3))])
    assert list(cluster_embeddings(x, 2)) == [0] * 6 + [1] * 6  # the first window's group is 0


def test_no_more_windows_than_speakers_gives_one_cluster_each():
    x = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]])
    assert list(cluster_embeddings(x, 3)) == [0, 1, 2]
    assert list(cluster_embeddings(x, 5)) == [0, 1, 2]


def test_estimate_with_too_few_windows_is_min_speakers_and_no_eigenvalues():
    x = np.eye(4)[:2]
    count, eigenvalues = estimate_num_speakers(x, min_speakers=2)
    assert count == 2 and eigenvalues.size == 0
    ten = np.vstack([np.eye(8)[:2]] * 5)  # two clear groups, but fewer windows than min_windows
    assert estimate_num_speakers(ten, min_windows=20)[0] == 1


def test_estimate_stays_within_its_bounds():
    rng = np.random.default_rng(6)
    x = np.vstack([c + 0.05 * rng.standard_normal((30, 8)) for c in np.eye(8)[:4]])
    assert estimate_num_speakers(x)[0] == 4
    assert estimate_num_speakers(x, max_speakers=2)[0] <= 2
    with pytest.raises(ValueError, match="need 1 <= min_speakers <= max_speakers"):
        estimate_num_speakers(x, min_speakers=3, max_speakers=2)


class _HalvesEmbedder:
    """Fake embedder: one voice before ``change_s``, another after, with a little deterministic noise."""

    name = "halves-fake"

    def __init__(self, change_s: float) -> None:
        self.change_s = change_s

    def embed_windows(self, samples, sample_rate_hz, starts_s, window_s):
        rng = np.random.default_rng(0)
        centre = np.where((np.asarray(starts_s) + window_s / 2 < self.change_s)[:, None],
                          [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0])
        return centre + 0.05 * rng.standard_normal(centre.shape)


def test_count_speakers_finds_two_voices_and_says_it_estimated():
    duration_s = 40.0
    mask = np.ones(int(round(duration_s / FRAME_S)), dtype=bool)
    count, detail = count_speakers(np.zeros(int(duration_s * 16000), np.float32), 16000, mask,
                                   embedder=_HalvesEmbedder(change_s=20.0))
    assert count == 2
    assert detail.startswith("speaker count estimated: 2 (largest eigengap")


def test_count_speakers_with_too_little_speech_assumes_therapist_and_client():
    mask = np.zeros(int(round(30.0 / FRAME_S)), dtype=bool)
    mask[:500] = True  # 5 s of speech: fewer windows than COUNT_MIN_WINDOWS
    count, detail = count_speakers(np.zeros(30 * 16000, np.float32), 16000, mask,
                                   embedder=_HalvesEmbedder(change_s=2.5))
    assert count == COUNT_MIN_SPEAKERS
    assert "too little speech" in detail
