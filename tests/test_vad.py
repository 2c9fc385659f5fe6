"""VAD: speech regions against the reference turns of sample.wav, and silence."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.vad import detect_speech, speech_mask


def test_speech_share_matches_reference(sample_recording, sample_speech, sample_reference_turns):
    n = 3000
    ref = speech_mask(tuple(sample_reference_turns), n, 0.01)  # SpeakerTurn has start/end like SpeechRegion
    hyp = speech_mask(sample_speech, n, 0.01)
    assert hyp.mean() == pytest.approx(ref.mean(), abs=0.08)
    # frame agreement between VAD and the reference speech/non-speech labels
    assert (hyp == ref).mean() >= 0.9


def test_regions_are_ordered_and_inside_recording(sample_speech):
    starts = [r.start for r in sample_speech]
    assert starts == sorted(starts)
    assert all(0 <= r.start < r.end <= 30.0 for r in sample_speech)
    assert all(a.end <= b.start for a, b in zip(sample_speech, sample_speech[1:]))


def test_silence_and_low_noise_have_no_speech():
    rng = np.random.default_rng(0)
    assert detect_speech(np.zeros(5 * 16000, np.float32), 16000) == ()
    assert detect_speech((0.001 * rng.standard_normal(5 * 16000)).astype(np.float32), 16000) == ()
    assert detect_speech(np.zeros(0, np.float32), 16000) == ()


def test_wrong_rate_is_refused():
    with pytest.raises(ValueError, match="must be 16000"):
        detect_speech(np.zeros(8000, np.float32), 8000)


def test_silero_batches_give_faster_whispers_probabilities_exactly(sample_recording):
    """Built batch by batch (11 batches of 1,000 windows here), the probabilities equal faster-whisper's single call."""
    from faster_whisper.vad import SileroVADModel, get_assets_path
    from pathlib import Path

    from pipeline.vad import BoundedSilero

    audio = np.tile(sample_recording.samples, 12)[: 10_750 * 512].copy()
    original = SileroVADModel(str(Path(get_assets_path()) / "silero_vad_v6.onnx"))
    expected = original(audio.copy())  # it writes into its input
    got = BoundedSilero(original)(audio)
    assert got.shape == expected.shape == (10_750,)
    np.testing.assert_array_equal(got, expected)


def test_vad_memory_does_not_grow_with_the_recording_beyond_one_copy(sample_recording):
    """20 minutes: numpy's allocations during a Silero pass stay near one copy of the audio (faster-whisper's own
    call built a second, larger one: every window with its context)."""
    import tracemalloc

    audio = np.tile(sample_recording.samples, 40)[: 20 * 60 * 16000].copy()
    detect_speech(audio[: 16000 * 5], 16000)  # model loaded outside the measurement
    tracemalloc.start()
    detect_speech(audio, 16000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1.5 * audio.nbytes + 25e6, (peak / 1e6, audio.nbytes / 1e6)


def _count_model_runs(model, monkeypatch) -> list:
    """From now on, every onnxruntime call of ``model`` appends to the returned list."""
    real, calls = model.session, []

    class Counting:
        def run(self, *args, **kwargs):
            calls.append(1)
            return real.run(*args, **kwargs)

    monkeypatch.setattr(model, "session", Counting())
    return calls


def test_silero_runs_once_per_audio_across_passes(sample_recording, monkeypatch):
    """The vad stage, the ASR's speech chunks and the fine pauses each search the whole recording with their own
    thresholds; Silero's probabilities depend on the audio only, so the model runs once per audio and every pass
    gets the regions it got before."""
    from faster_whisper import vad as fw_vad

    from pipeline.settings import VadSettings
    from pipeline.vad import fine_pauses

    audio = np.tile(sample_recording.samples, 3)
    other_settings = VadSettings(threshold=0.6, speech_pad_ms=100)
    coarse = detect_speech(audio, 16000)
    other = detect_speech(audio, 16000, settings=other_settings)
    pauses = fine_pauses(audio, 16000)
    model = fw_vad.get_vad_model()  # the bounded model the passes above used
    calls = _count_model_runs(model, monkeypatch)
    assert detect_speech(audio, 16000) == coarse
    assert detect_speech(audio, 16000, settings=other_settings) == other
    assert fine_pauses(audio, 16000) == pauses
    assert calls == []
    louder = detect_speech(audio * 0.5, 16000)  # other audio: the model runs
    assert calls and louder


def test_a_long_recordings_probabilities_outlive_the_short_pieces_searched_in_between(sample_recording, monkeypatch):
    """Between the passes over the whole recording come many short searches (8 s pieces of long silences, the
    ASR's 10-minute pieces); they must not push the whole recording's probabilities out."""
    from faster_whisper import vad as fw_vad

    from pipeline.vad import _bounded_model_installed

    _bounded_model_installed()
    model = fw_vad.get_vad_model()
    audio = np.tile(sample_recording.samples, 4)[: 240 * 512 * 8]
    model(audio)
    for i in range(40):  # 40 different 8 s pieces
        model(audio[i * 512: i * 512 + 8 * 16000])
    calls = _count_model_runs(model, monkeypatch)
    model(audio)
    assert calls == []
