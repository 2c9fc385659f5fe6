"""Speaker-encoder settings and weights: refused at once, in one line that names the setting or the file.

Found by the fresh-user trial of 5 December: a wrong CAM++ weights setting was met only at the diarization stage,
after decoding and ASR, and the nightly inbox then filed every recording of the night as failed; torch's own
multi-line text reached the user; a sha256 that is not one, and one without weights, were taken silently.
"""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline.embedders.campplus_backend import WEIGHTS_SHA256, CamPlusPlusEmbedder, find_campplus_files
from pipeline.errors import BackendUnavailableError
from pipeline.settings import DiarizationSettings
from tests.conftest import SAMPLE_WAV, needs_campplus


def test_encoder_settings_that_cannot_be_right_are_refused():
    with pytest.raises(ValueError, match="64 hexadecimal"):
        DiarizationSettings(embedder="campplus", embedder_weights="/tmp/w.pt", embedder_weights_sha256="not-hex!")
    with pytest.raises(ValueError, match="embedder_weights"):
        DiarizationSettings(embedder="campplus", embedder_weights_sha256="a" * 64)  # a sha256 of nothing
    with pytest.raises(ValueError, match="campplus"):
        DiarizationSettings(embedder="resemblyzer", embedder_weights="/tmp/w.pt")  # weights resemblyzer never reads
    with pytest.raises(ValueError, match="hop_s"):
        DiarizationSettings(window_s=1.0, hop_s=2.0)  # speech between windows would have no embedding
    assert DiarizationSettings(embedder="campplus", embedder_weights="/tmp/w.pt",
                               embedder_weights_sha256=WEIGHTS_SHA256.upper()).embedder_weights_sha256 == WEIGHTS_SHA256


@needs_campplus
@pytest.mark.parametrize("kind", ["folder", "empty", "random", "text", "other network", "newline"])
def test_unusable_weights_get_one_short_line(tmp_path, kind):
    import torch

    path = tmp_path / "w.pt"
    if kind == "folder":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(bytes(range(256)) * 40)
    elif kind == "text":
        path.write_text("these are not weights\n")
    elif kind == "other network":
        torch.save({"layer.weight": torch.zeros(3, 3)}, path)
    else:
        path = tmp_path / "w.pt\nerror: a forged second line"
        path.write_bytes(b"")
    with pytest.raises(BackendUnavailableError) as caught:
        CamPlusPlusEmbedder(path)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 400, message
    assert "weights_only" not in message and "ALLIANCE_DIARIZATION__EMBEDDER_WEIGHTS" in message
    expected = {"folder": "is a folder", "empty": "empty", "random": "not PyTorch weights",
                "text": "not PyTorch weights", "other network": "another network", "newline": "empty"}[kind]
    assert expected in message, message


@needs_campplus
def test_weights_other_than_the_pinned_ones_are_named_in_the_method(tmp_path):
    import hashlib

    import torch

    weights, _ = find_campplus_files()
    resaved = tmp_path / "resaved.pt"  # the same tensors in another file: other bytes, so another sha256
    torch.save(torch.load(weights, map_location="cpu", weights_only=True), resaved)
    digest = hashlib.sha256(resaved.read_bytes()).hexdigest()
    assert digest != WEIGHTS_SHA256
    assert CamPlusPlusEmbedder().name == "campplus"
    assert CamPlusPlusEmbedder(weights).name == "campplus"  # the pinned file given by path
    assert CamPlusPlusEmbedder(resaved).name == f"campplus@{digest[:12]}"  # what was loaded, in the method


@needs_campplus
@pytest.mark.slow
def test_analyze_refuses_missing_weights_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ALLIANCE_DIARIZATION__EMBEDDER", "campplus")
    monkeypatch.setenv("ALLIANCE_DIARIZATION__EMBEDDER_WEIGHTS", str(tmp_path / "missing.pt"))
    result = CliRunner().invoke(app, ["analyze", str(SAMPLE_WAV), "--speakers", "2", "--language", "en"])
    assert result.exit_code != 0
    assert "missing.pt" in result.output and "ALLIANCE_DIARIZATION__EMBEDDER_WEIGHTS" in result.output
    assert "recognised" not in result.output and "Flow run" not in result.output  # nothing ran
    assert not (tmp_path / "data" / "sessions").exists() or not any((tmp_path / "data" / "sessions").iterdir())


@needs_campplus
@pytest.mark.slow
def test_nightly_with_unusable_weights_stops_and_moves_nothing(tmp_path, monkeypatch):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(SAMPLE_WAV, inbox / "a.wav")
    (inbox / "a.wav.json").write_text(json.dumps({
        "session_id": "s-1", "client_id": "c-1", "therapist_id": "t-1", "date": "2026-11-28", "language": "en",
        "participants": [{"role": "therapist", "id": "t-1"}, {"role": "client", "age": 9}],
        "consent": {"analysis": True, "research_use": False, "given_by": ["parent"], "date": "2026-11-01"}}))
    bad = tmp_path / "text.pt"
    bad.write_text("not weights")
    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ALLIANCE_INBOX_SETTLE_S", "0")
    monkeypatch.setenv("ALLIANCE_DIARIZATION__EMBEDDER", "campplus")
    monkeypatch.setenv("ALLIANCE_DIARIZATION__EMBEDDER_WEIGHTS", str(bad))
    result = CliRunner().invoke(app, ["nightly", "--inbox", str(inbox)])
    assert result.exit_code != 0 and "text.pt" in result.output
    assert (inbox / "a.wav").is_file() and (inbox / "a.wav.json").is_file()  # still waiting for a good night
    assert not (inbox / "failed").exists() or not any((inbox / "failed").iterdir())


def test_eval_diarization_rttm_out_that_is_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    result = CliRunner().invoke(app, ["eval-diarization", str(SAMPLE_WAV), "--reference",
                                      str(SAMPLE_WAV.with_suffix(".rttm")), "--rttm-out", str(blocker / "sub")])
    assert result.exit_code == 2, result.output
    assert "--rttm-out" in result.output and "Traceback" not in result.output and result.exception is None or \
        isinstance(result.exception, SystemExit)


def test_backends_load_shares_the_one_resemblyzer(monkeypatch):
    """With resemblyzer as the clustering encoder, the model build and the benches load it once, not twice."""
    from pipeline import session
    from pipeline.settings import Settings

    made = []
    real = session.ResemblyzerEmbedder

    def counting():
        made.append(1)
        return real()

    monkeypatch.setattr(session, "ResemblyzerEmbedder", counting)
    monkeypatch.setattr("pipeline.embedders.resemblyzer_backend.ResemblyzerEmbedder", counting)
    monkeypatch.setattr(session.asr_stage, "load_backend", lambda *a, **k: None)
    backends = session.Backends.load(Settings())
    assert len(made) == 1
    assert backends.clustering is None or backends.clustering is backends.embedder
