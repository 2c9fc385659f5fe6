"""The CAM++ speaker encoder that voice clustering uses: pinned files, real voices told apart, exact batching."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pipeline.audio import decode
from pipeline.embedders import clustering_embedder
from pipeline.embedders.campplus_backend import (
    ARCHITECTURE_SHA256, EMBEDDING_DIM, WEIGHTS_SHA256, CamPlusPlusEmbedder, find_campplus_files)
from pipeline.errors import BackendUnavailableError
from pipeline.settings import DiarizationSettings
from tests.conftest import ROOT, needs_campplus

DUTCH = ROOT / "tests/data/dutch"
pytestmark = needs_campplus


@pytest.fixture(scope="module")
def campplus():
    return CamPlusPlusEmbedder()


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_the_installed_files_are_the_pinned_ones():
    weights, architecture = find_campplus_files()
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == WEIGHTS_SHA256
    assert hashlib.sha256(architecture.read_bytes()).hexdigest() == ARCHITECTURE_SHA256


def test_two_real_voices_are_told_apart(campplus):
    # two Dutch speakers (a woman, a man), three recordings each, one 1.5 s window from each recording's middle
    vectors = {}
    for name in ("nathalie", "rdh"):
        rows = []
        for path in sorted((DUTCH / name).glob("*.flac"))[:3]:
            x = decode(path).samples
            rows.append(campplus.embed_windows(x, 16000, np.array([max(0.0, x.size / 16000 / 2 - 0.75)]), 1.5)[0])
        vectors[name] = _unit(np.stack(rows))
    same = [float(v[i] @ v[j]) for v in vectors.values() for i in range(3) for j in range(i + 1, 3)]
    other = (vectors["nathalie"] @ vectors["rdh"].T).ravel()
    assert min(same) > max(other) + 0.05, (same, other.tolist())  # measured: same >= 0.50, other <= 0.41


def test_batches_give_the_same_embeddings_as_one_window_at_a_time(campplus, sample_recording):
    x = sample_recording.samples
    starts = np.array([40.0, 0.0, 12.35, 12.0, x.size / 16000 + 5.0])  # out of order; the last is past the end
    together = campplus.embed_windows(x, 16000, starts, 1.5)
    alone = CamPlusPlusEmbedder(batch_size=1).embed_windows(x, 16000, starts, 1.5)
    assert together.shape == (5, EMBEDDING_DIM) and together.dtype == np.float32
    np.testing.assert_allclose(together, alone, atol=1e-4)
    np.testing.assert_allclose(together[4], campplus.embed_windows(x, 16000, np.array([x.size / 16000 - 1.5]), 1.5)[0],
                               atol=1e-4)  # a window past the end is the recording's last 1.5 s


def test_filterbank_frames_follow_kaldi_framing(campplus):
    fb = campplus.filterbank(np.zeros(16000, np.float32) + 0.01)
    assert fb.shape == (1 + (16000 - 400) // 160, 80)
    assert campplus.filterbank(np.zeros(399, np.float32)).shape == (0, 80)


def test_bad_weights_and_inputs_are_refused_with_the_reason(tmp_path, campplus):
    with pytest.raises(BackendUnavailableError, match="does not exist"):
        CamPlusPlusEmbedder(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    other.write_bytes(b"not a state dict")
    with pytest.raises(BackendUnavailableError, match="sha256"):
        CamPlusPlusEmbedder(other, weights_sha256="0" * 64)
    with pytest.raises(BackendUnavailableError, match="not PyTorch weights"):
        CamPlusPlusEmbedder(other)
    with pytest.raises(ValueError, match="16000"):
        campplus.embed_windows(np.zeros(16000, np.float32), 8000, np.array([0.0]), 1.0)


def test_the_setting_chooses_the_clustering_encoder_and_its_window():
    default = DiarizationSettings()
    assert clustering_embedder(default).name == "resemblyzer" and (default.window_s, default.hop_s) == (2.0, 0.25)
    campplus = DiarizationSettings(embedder="campplus")
    assert clustering_embedder(campplus).name == "campplus" and (campplus.window_s, campplus.hop_s) == (1.5, 0.5)
    assert DiarizationSettings(embedder="campplus", window_s=2.0, hop_s="").window_s == 2.0  # a value given wins
    with pytest.raises(ValueError):
        DiarizationSettings(embedder="xvector")


def test_campplus_diarizes_the_call_and_the_meeting_excerpts(settings):
    from pipeline.evaluation import evaluate_diarization_file
    from pipeline.rttm import read_rttm

    dia = settings.diarization.model_copy(update={"embedder": "campplus", "window_s": 1.5, "hop_s": 0.5})
    s = settings.model_copy(update={"diarization": dia})
    embedder = clustering_embedder(dia)
    measured = {}
    for audio, rttm, uri in ((ROOT / "sample_audio/sample.wav", ROOT / "sample_audio/sample.rttm", "sample"),
                             (ROOT / "tests/data/ami/dev00.flac", ROOT / "tests/data/ami/dev.rttm", "dev00"),
                             (ROOT / "tests/data/ami/dev01.flac", ROOT / "tests/data/ami/dev.rttm", "dev01")):
        score, result = evaluate_diarization_file(audio, read_rttm(rttm)[uri], settings=s, embedder=embedder,
                                                  collar_s=0.5)
        measured[uri] = score.der
        assert result.method.startswith("campplus+")
    # measured 0.9, 11.0 and 7.0 % (resemblyzer at its own window: 1.2, 17.7 and 13.2 %)
    assert measured["sample"] <= 0.03 and measured["dev00"] <= 0.14 and measured["dev01"] <= 0.10, measured
