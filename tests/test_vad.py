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
