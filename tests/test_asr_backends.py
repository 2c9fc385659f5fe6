"""The openai-whisper backend and the CTranslate2 → openai-whisper checkpoint conversion."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from pathlib import Path

from pipeline.asr import load_backend, transcribe
from pipeline.asr.convert import ModelConversionError, convert_model, openai_state_dict, read_ct2_model
from pipeline.asr.model_store import bundled_base_model
from pipeline.settings import AsrSettings
from tests.conftest import SAMPLE_STM, read_stm_text, word_error_rate


@pytest.fixture(scope="module")
def base_model_dir(settings):
    return bundled_base_model(settings.model_cache_dir)


@pytest.fixture(scope="module")
def checkpoint(base_model_dir, tmp_path_factory):
    return convert_model(base_model_dir, tmp_path_factory.mktemp("openai") / "whisper-base.pt")


@pytest.fixture(scope="module")
def openai_backend(checkpoint, settings):
    return load_backend(AsrSettings(backend="openai-whisper", checkpoint=checkpoint),
                        model_cache_dir=settings.model_cache_dir, vad_settings=settings.vad)


@pytest.mark.slow
def test_converted_model_gives_the_same_greedy_tokens_as_faster_whisper_on_sample(
        checkpoint, base_model_dir, sample_recording):
    import torch
    import whisper

    from pipeline.asr.faster_whisper_backend import FasterWhisperBackend
    from pipeline.asr.openai_whisper_backend import load_checkpoint

    audio = np.asarray(sample_recording.samples, dtype=np.float32)
    ct2 = FasterWhisperBackend(base_model_dir, compute_type="float32", beam_size=1)._unused[0]
    segments, _ = ct2.transcribe(audio, language="en", beam_size=1, temperature=0.0,
                                 condition_on_previous_text=False, vad_filter=False)
    ct2_tokens = [t for s in segments for t in s.tokens]

    model = load_checkpoint(checkpoint)
    with torch.no_grad():
        result = whisper.transcribe(model, audio, language="en", temperature=0.0, condition_on_previous_text=False,
                                    fp16=False, verbose=None)
    torch_tokens = [t for s in result["segments"] for t in s["tokens"]]

    assert len(ct2_tokens) > 100  # 30 s of conversation
    assert torch_tokens == ct2_tokens


@pytest.mark.slow
def test_checkpoint_keeps_the_alignment_heads_of_the_config(checkpoint, base_model_dir):
    import json

    from pipeline.asr.openai_whisper_backend import load_checkpoint

    heads = json.loads((base_model_dir / "config.json").read_text())["alignment_heads"]
    mask = load_checkpoint(checkpoint).alignment_heads.to_dense().numpy()
    assert mask.shape == (6, 8)  # Whisper base: 6 decoder layers × 8 heads
    assert sorted(map(list, zip(*np.nonzero(mask)))) == sorted(heads)


@pytest.mark.slow
def test_openai_backend_transcribes_sample_with_word_times(openai_backend, sample_recording):
    t = transcribe(sample_recording.samples, 16000, settings=AsrSettings(), backend=openai_backend, language="en")
    wer = word_error_rate(read_stm_text(SAMPLE_STM), t.text)
    assert wer <= 0.20, f"WER {wer:.3f}"
    assert t.words[0].start == pytest.approx(6.68, abs=0.5)  # the reference's first word, after 6 s of silence
    assert all(0.0 <= w.start <= w.end <= 30.0 for w in t.words)
    assert all(a.start <= b.start for a, b in zip(t.words, t.words[1:]))


@pytest.mark.slow
def test_openai_backend_detects_the_language_and_keeps_silence_empty(openai_backend, sample_recording):
    t = transcribe(sample_recording.samples[: 16000 * 15], 16000, settings=AsrSettings(language="auto"),
                   backend=openai_backend)
    assert t.language == "en" and t.language_probability > 0.5
    t = transcribe(np.zeros(16000 * 10, np.float32), 16000, settings=AsrSettings(language="auto"),
                   backend=openai_backend)
    assert t.words == () and t.language == "unknown"


def _string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _ct2_file(path, variables: dict[str, np.ndarray], aliases=(), version=6, spec="WhisperSpec"):
    out = struct.pack("<I", version) + _string(spec) + struct.pack("<II", 3, len(variables))
    for name, a in variables.items():
        dtype_id = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2,
                    np.dtype(np.float16): 4}[a.dtype]
        out += _string(name) + struct.pack("<B", a.ndim) + struct.pack(f"<{a.ndim}I", *a.shape)
        out += struct.pack("<BI", dtype_id, a.nbytes) + a.tobytes()
    out += struct.pack("<I", len(aliases)) + b"".join(_string(a) + _string(b) for a, b in aliases)
    path.write_bytes(out)
    return path


def test_reader_returns_names_shapes_dtypes_and_aliases(tmp_path):
    w = np.arange(6, dtype=np.float16).reshape(2, 3)
    path = _ct2_file(tmp_path / "model.bin", {"decoder/embeddings/weight": w,
                                             "decoder/num_heads": np.array(8, np.int16)},
                     aliases=[("decoder/projection/weight", "decoder/embeddings/weight")])
    spec, variables, aliases = read_ct2_model(path)
    assert spec == "WhisperSpec"
    np.testing.assert_array_equal(variables["decoder/embeddings/weight"], w)
    assert variables["decoder/embeddings/weight"].dtype == np.float16
    assert int(variables["decoder/num_heads"]) == 8
    assert aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}


def test_bad_model_files_are_named_with_the_problem(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVE")
    with pytest.raises(ModelConversionError, match="model.bin: not a CTranslate2"):
        read_ct2_model(bad)
    good = _ct2_file(tmp_path / "cut.bin", {"encoder/conv1/weight": np.zeros((4, 2, 3), np.float16)})
    good.write_bytes(good.read_bytes()[:40])
    with pytest.raises(ModelConversionError, match="cut.bin: .*truncated"):
        read_ct2_model(good)
    with pytest.raises(ModelConversionError, match="quantized"):
        openai_state_dict({"encoder/layer_0/ffn/linear_0/weight": np.zeros((2, 2), np.int8),
                           "encoder/layer_0/ffn/linear_0/weight_scale": np.ones(2, np.float32)}, {})
    with pytest.raises(ModelConversionError, match="not a CTranslate2 Whisper model"):
        openai_state_dict({"encoder/layer_0/ffn/linear_0/weight": np.zeros((2, 2), np.float16)}, {})
    (tmp_path / "config.json").write_text("{}")
    _ct2_file(tmp_path / "model.bin", {"x": np.zeros(2, np.float16)}, spec="TransformerSpec")
    with pytest.raises(ModelConversionError, match="a TransformerSpec model, not Whisper"):
        convert_model(tmp_path, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_missing_checkpoint_is_a_clear_error(tmp_path, settings):
    from pipeline.errors import BackendUnavailableError

    with pytest.raises(BackendUnavailableError, match="nothere.pt: openai-whisper checkpoint not found"):
        load_backend(AsrSettings(backend="openai-whisper", checkpoint=tmp_path / "nothere.pt"),
                     model_cache_dir=settings.model_cache_dir)


def test_every_checkpoint_problem_names_the_variable(tmp_path):
    """Trial, 5 December: an empty or junk checkpoint did not say which setting to fix, and /dev/null was "not
    found"."""
    from pipeline.asr.openai_whisper_backend import check_checkpoint_file
    from pipeline.errors import BackendUnavailableError

    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 64)
    for path, words in ((empty, "empty"), (junk, "not a PyTorch checkpoint"), (Path("/dev/null"), "not a regular file"),
                        (tmp_path, "is a folder"), (tmp_path / "gone.pt", "not found")):
        with pytest.raises(BackendUnavailableError) as info:
            check_checkpoint_file(path)
        assert words in str(info.value) and "ALLIANCE_ASR__CHECKPOINT" in str(info.value), str(info.value)


def test_a_checkpoint_of_another_model_is_refused_by_the_check_before_any_work(tmp_path, settings):
    """Trial, 5 December: a valid PyTorch file that is not a Whisper checkpoint passed the check before work, so
    the nightly run sent a good recording to failed/ instead of stopping in one line naming the variable."""
    import torch

    from pipeline.asr import check_backend
    from pipeline.errors import BackendUnavailableError

    for content in ({"layer.weight": torch.zeros(2)}, {"dims": {"n_mels": 80}, "model_state_dict": {}}):
        path = tmp_path / "other.pt"
        torch.save(content, path)
        with pytest.raises(BackendUnavailableError, match="not a usable openai-whisper checkpoint") as info:
            check_backend(AsrSettings(backend="openai-whisper", checkpoint=path), model_cache_dir=settings.model_cache_dir)
        assert "ALLIANCE_ASR__CHECKPOINT" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.slow
def test_cli_converts_and_analyses_with_the_openai_backend(prefect_harness, checkpoint, tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from flows.cli import app
    from tests.conftest import SAMPLE_WAV

    runner = CliRunner()
    result = runner.invoke(app, ["convert-model", "--model-dir", str(tmp_path), "--out", str(tmp_path / "x.pt")])
    assert result.exit_code == 1 and "not a faster-whisper model directory" in result.output
    result = runner.invoke(app, ["analyze", str(SAMPLE_WAV), "--asr-backend", "whisperx"])
    assert result.exit_code == 2 and "--asr-backend must be faster-whisper or openai-whisper" in result.output

    monkeypatch.setenv("ALLIANCE_ASR__CHECKPOINT", str(checkpoint))
    monkeypatch.setenv("ALLIANCE_ASR__BACKEND", "faster-whisper")  # restored after the test; the option overrides it
    # 12 s of the call (its words from 6.5 s on); the backend's WER on the whole call is the test above
    from pipeline.audio import decode, save_wav

    clip = tmp_path / "call-12s.wav"
    save_wav(clip, decode(SAMPLE_WAV).samples[int(6.5 * 16000):int(18.5 * 16000)], 16000)
    out = tmp_path / "session"
    result = runner.invoke(app, ["analyze", str(clip), "--speakers", "2", "--language", "en",
                                 "--out", str(out), "--asr-backend", "openai-whisper"])
    assert result.exit_code == 0, result.output
    session = json.loads((out / "session.json").read_text())
    assert session["settings"]["asr"]["backend"] == "openai-whisper"
    words = [w["text"].strip(" .,?!").lower() for w in session["transcript"]["words"]]
    assert len(words) >= 20 and "chicago" in words


@pytest.mark.slow
def test_openai_backend_gives_the_same_words_when_sessions_share_it_in_threads(openai_backend, sample_recording):
    """The nightly run analyses sessions in threads that share one loaded model."""
    from concurrent.futures import ThreadPoolExecutor

    clips = [sample_recording.samples[16000 * 6: 16000 * 12], sample_recording.samples[16000 * 22:]]

    def words(x):
        return [w.text for w in openai_backend.transcribe(x, language="en").words]

    alone = [words(x) for x in clips]
    with ThreadPoolExecutor(max_workers=2) as pool:
        together = list(pool.map(words, clips))
    assert together == alone and all(len(w) > 10 for w in alone)


def test_empty_path_settings_mean_unset(monkeypatch):
    from pipeline.settings import Settings

    monkeypatch.setenv("ALLIANCE_ASR__CHECKPOINT", "")
    monkeypatch.setenv("ALLIANCE_ASR__MODEL_DIR", " ")
    s = Settings()
    assert s.asr.checkpoint is None and s.asr.model_dir is None
    # 5 December trial: the README gives "empty" as the classifier settings' default too, but an empty
    # ALLIANCE_MODEL__ACTIVE_MODEL was taken as the folder "." and an empty threshold was refused
    monkeypatch.setenv("ALLIANCE_MODEL__ACTIVE_MODEL", "")
    monkeypatch.setenv("ALLIANCE_MODEL__FLAG_THRESHOLD", " ")
    s = Settings()
    assert s.model.active_model is None and s.model.flag_threshold is None


@pytest.mark.slow
def test_a_damaged_cached_checkpoint_is_converted_again(base_model_dir, tmp_path):
    from pipeline.asr.model_store import resolve_checkpoint
    from pipeline.asr.openai_whisper_backend import check_checkpoint_file
    from pipeline.errors import BackendUnavailableError

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "whisper-base-ct2").symlink_to(base_model_dir)
    first = resolve_checkpoint(None, model_dir=None, cache_dir=cache)
    size = first.stat().st_size
    first.write_bytes(first.read_bytes()[: size // 2])  # cut short, as by a full disk
    again = resolve_checkpoint(None, model_dir=None, cache_dir=cache)
    assert again == first and again.stat().st_size == size
    check_checkpoint_file(again)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(BackendUnavailableError, match="empty.pt: the checkpoint file is empty"):
        check_checkpoint_file(tmp_path / "empty.pt")
    with pytest.raises(BackendUnavailableError, match="model.bin: not a PyTorch checkpoint"):
        check_checkpoint_file(base_model_dir / "model.bin")
