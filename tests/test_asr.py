"""ASR: WER on real audio with the bundled Whisper base, and the offline model store."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pipeline.asr import transcribe
from pipeline.asr.model_store import join_parts, resolve_model_dir
from pipeline.errors import BackendUnavailableError
from pipeline.settings import AsrSettings
from pipeline.types import Transcript, Word
from tests.conftest import SAMPLE_STM, read_stm_text, word_error_rate


@pytest.mark.slow
def test_wer_on_sample_is_at_most_20_percent(sample_transcript):
    wer = word_error_rate(read_stm_text(SAMPLE_STM), sample_transcript.text)
    assert wer <= 0.20, f"WER {wer:.3f}"


@pytest.mark.slow
def test_word_times_are_ordered_and_inside_speech(sample_transcript):
    words = sample_transcript.words
    assert len(words) > 50
    assert all(0.0 <= w.start <= w.end <= 30.0 for w in words)
    assert all(a.start <= b.start for a, b in zip(words, words[1:]))
    # the first word of the reference ("Hello?") starts at 6.68 s
    assert words[0].start == pytest.approx(6.68, abs=0.5)


@pytest.mark.slow
def test_language_is_detected_when_auto(sample_recording, asr_backend):
    t = transcribe(sample_recording.samples[: 16000 * 15], 16000, settings=AsrSettings(language="auto"),
                   backend=asr_backend)
    assert t.language == "en"
    assert t.language_probability > 0.5


@pytest.mark.slow
def test_silence_gives_no_words(asr_backend):
    t = transcribe(np.zeros(16000 * 10, np.float32), 16000, settings=AsrSettings(), backend=asr_backend,
                   language="nl")
    assert t.words == () and t.language == "nl"
    t = transcribe(np.zeros(16000 * 10, np.float32), 16000, settings=AsrSettings(language="auto"),
                   backend=asr_backend)
    assert t.words == () and t.language == "unknown" and t.language_probability == 0.0


class _FakeBackend:
    name = "fake"

    def __init__(self):
        self.languages = []

    def transcribe(self, samples, *, language, progress=None):
        self.languages.append(language)
        return Transcript((Word(0.0, 0.5, "ja", 0.9),), language or "nl", 1.0, samples.size / 16000)


def test_auto_language_is_passed_as_none_to_the_backend():
    fake = _FakeBackend()
    transcribe(np.zeros(16000, np.float32), 16000, settings=AsrSettings(language="auto"), backend=fake)
    transcribe(np.zeros(16000, np.float32), 16000, settings=AsrSettings(language="auto"), backend=fake, language="nl")
    assert fake.languages == [None, "nl"]


def _parts(tmp_path):
    a, b, cfg = tmp_path / "p1", tmp_path / "p2", tmp_path / "config.json"
    a.write_bytes(b"first-part-")
    b.write_bytes(b"second-part")
    cfg.write_text("{}")
    return a, b, cfg


def test_join_parts_verifies_size_and_checksum(tmp_path):
    a, b, cfg = _parts(tmp_path)
    joined = b"first-part-second-part"
    target = join_parts([a, b], [cfg], tmp_path / "model", expected_bytes=len(joined),
                        expected_sha256=hashlib.sha256(joined).hexdigest())
    assert (target / "model.bin").read_bytes() == joined
    assert (target / "config.json").is_file()


def test_join_parts_refuses_a_wrong_checksum(tmp_path):
    a, b, cfg = _parts(tmp_path)
    with pytest.raises(BackendUnavailableError, match="sha256 .* does not match"):
        join_parts([a, b], [cfg], tmp_path / "model", expected_bytes=22, expected_sha256="0" * 64)
    assert not (tmp_path / "model").exists()


def test_join_parts_refuses_a_wrong_size(tmp_path):
    a, b, cfg = _parts(tmp_path)
    with pytest.raises(BackendUnavailableError, match="joined 22 bytes .* expected 23"):
        join_parts([a, b], [cfg], tmp_path / "model", expected_bytes=23, expected_sha256="0" * 64)


def test_configured_model_dir_must_hold_a_model(tmp_path):
    with pytest.raises(BackendUnavailableError, match="not a faster-whisper model directory"):
        resolve_model_dir(tmp_path, cache_dir=tmp_path)


def test_bundled_model_is_joined_and_verified(settings):
    from pipeline.asr.model_store import BASE_MODEL_BYTES, bundled_base_model

    folder = bundled_base_model(settings.model_cache_dir)
    assert (folder / "model.bin").stat().st_size == BASE_MODEL_BYTES
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (folder / name).is_file()


@pytest.mark.slow
def test_long_recordings_are_transcribed_in_pieces_on_one_time_line():
    from pipeline.asr import piece_bounds, transcribe_in_pieces
    from pipeline.types import Transcript, Word

    class Piecewise:
        name = "fake"

        def __init__(self):
            self.lengths = []

        def transcribe(self, samples, *, language, progress=None):
            self.lengths.append(samples.size / 16000)
            return Transcript((Word(1.0, 1.5, "woord", 0.9),), language or "nl", 0.9, samples.size / 16000)

    x = np.zeros(25 * 60 * 16000, np.float32)  # 25 minutes
    bounds = piece_bounds(x)
    assert bounds[0][0] == 0.0 and bounds[-1][1] == pytest.approx(1500.0)
    assert all(b1 == a2 for (_, b1), (a2, _) in zip(bounds, bounds[1:]))
    assert max(b - a for a, b in bounds) <= 1.2 * 600
    fake = Piecewise()
    t = transcribe_in_pieces(x, backend=fake, language="nl")
    assert len(fake.lengths) == len(bounds) == 3  # 600 + 600 + 300 s: never the whole 25 minutes at once
    assert [w.start for w in t.words] == [1.0 + a for a, _ in bounds]
    assert t.duration_s == pytest.approx(1500.0)
