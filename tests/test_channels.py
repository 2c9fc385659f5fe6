"""Channel-per-speaker recordings: detection, attribution by channel, overlap kept."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.audio import decode
from pipeline.channels import _fill_pauses, detect_channel_per_speaker, diarize_by_channel, frame_levels_db
from pipeline.settings import DiarizationSettings, VadSettings
from pipeline.vad import detect_speech
from tests.conftest import ROOT, der, speech_time_error_s

STEREO = ROOT / "tests/data/fw/stereo_diarization.wav"


@pytest.fixture(scope="module")
def built_stereo(sample_recording, sample_reference_turns):
    """sample.wav split by its RTTM: speaker90 left, speaker91 right, each with -20 dB cross-talk and noise."""
    x = sample_recording.samples

    def only(spk):
        m = np.zeros(x.size, np.float32)
        for t in sample_reference_turns:
            if t.speaker == spk:
                m[int(t.start * 16000): int(t.end * 16000)] = 1.0
        return x * m

    left, right = only("speaker90"), only("speaker91")
    noise = 0.002 * np.random.default_rng(0).standard_normal((2, x.size))
    return (np.stack([left + 0.1 * right, right + 0.1 * left]) + noise).astype(np.float32)


def test_frame_levels_of_a_sine():
    t = np.arange(16000) / 16000
    x = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), np.zeros_like(t)])
    levels = frame_levels_db(x, 16000, frame_s=0.05)
    assert levels.shape == (2, 20)
    assert np.allclose(levels[0], 20 * np.log10(0.5 / np.sqrt(2)), atol=0.05)
    assert np.all(levels[1] == -80.0)


def test_fill_pauses_only_where_nobody_else_spoke():
    mask = np.array([1, 1, 0, 0, 1, 0, 0, 0, 0, 1], dtype=bool)
    blocked = np.zeros(10, dtype=bool)
    assert _fill_pauses(mask, blocked, 2).tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 0, 1]
    blocked[3] = True
    assert _fill_pauses(mask, blocked, 2).tolist() == [1, 1, 0, 0, 1, 0, 0, 0, 0, 1]


def test_built_stereo_is_detected_and_attributed_by_channel(built_stereo, sample_reference_turns):
    decision = detect_channel_per_speaker(built_stereo, 16000)
    assert decision.per_speaker, decision
    d = diarize_by_channel(built_stereo, 16000, vad_settings=VadSettings(), settings=DiarizationSettings())
    assert d.method == "channel-per-speaker" and d.speakers == ("SPEAKER_00", "SPEAKER_01")
    assert speech_time_error_s(sample_reference_turns, d.turns) <= 1.0
    assert der(sample_reference_turns, d.turns, uri="sample")["diarization error rate"] <= 0.05
    # the reference overlap 18.15-18.59 s is kept for both speakers, not given to one
    both = [t for t in d.turns if t.start < 18.5 and t.end > 18.3]
    assert {t.speaker for t in both} == {"SPEAKER_00", "SPEAKER_01"}
    # the reference turns overlap for 1.89 s; speaker90 cuts in at 27.85 s while speaker91 talks until 28.5 s
    from pipeline.roles import assign_roles
    from pipeline.turns import overlap_time, turn_metrics

    m = turn_metrics(d, assign_roles(d), duration_s=30.0)
    assert m.overlap_time_s == pytest.approx(overlap_time(sample_reference_turns), abs=0.5)
    assert m.interruptions["SPEAKER_00"] >= 1


def test_shared_stereo_file_is_attributed_by_channel():
    rec = decode(STEREO, keep_channels=True)
    assert rec.channels.shape == (2, 80000)
    assert detect_channel_per_speaker(rec.channels, 16000).per_speaker
    d = diarize_by_channel(rec.channels, 16000, vad_settings=VadSettings(), settings=DiarizationSettings())
    # truth: each channel holds one clean speaker, so its own VAD speech time is that speaker's
    for c, name in enumerate(("SPEAKER_00", "SPEAKER_01")):
        truth = sum(r.duration for r in detect_speech(rec.channels[c], 16000))
        assert d.speech_time_s()[name] == pytest.approx(truth, abs=1.0)
    assert any(a.speaker != b.speaker and a.start < b.end and b.start < a.end for a in d.turns for b in d.turns)


def test_one_room_in_two_channels_is_mixed_down(sample_recording):
    x = sample_recording.samples
    assert not detect_channel_per_speaker(np.stack([x, x]), 16000).per_speaker
    spaced = 0.8 * np.roll(x, 16) + 0.001 * np.random.default_rng(1).standard_normal(x.size)
    assert not detect_channel_per_speaker(np.stack([x, spaced]), 16000).per_speaker
    assert not detect_channel_per_speaker(x[None, :], 16000).per_speaker
