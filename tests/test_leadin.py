"""A minute of steady noise before the conversation (a fan, a recorder started early): speech after it is found and
transcribed as at the start of a file.

Before the fix, with 60 s of pink noise in front of sample.wav, Silero's state lagged and the VAD's first speech
came 2.2 s late (the first word was lost): the one-pass regions began at 68.9 s where speech begins at 66.7 s.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.vad import detect_speech
from tests.conftest import SAMPLE_STM, read_stm_text, word_error_rate

LEAD_IN_S = 60.0
FIRST_SPEECH_S = 6.68  # sample.wav's first reference word (sample.rttm)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise with a 1/f power spectrum (shaped white noise)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, n)
    return noise / np.sqrt(np.mean(noise ** 2))


def with_lead_in(samples: np.ndarray, *, lead_in_s: float, snr_db: float, seed: int = 0) -> np.ndarray:
    """``lead_in_s`` of pink noise, then the recording, the noise going on under it at ``snr_db`` below its speech."""
    lead = int(lead_in_s * 16000)
    speech_rms = np.sqrt(np.mean(samples[np.abs(samples) > 1e-4] ** 2))
    noise = pink_noise(lead + samples.size, np.random.default_rng(seed)) * speech_rms * 10 ** (-snr_db / 20)
    noise[lead:] += samples
    return noise.astype(np.float32)


@pytest.mark.parametrize("snr_db", [20.0, 10.0])
def test_speech_after_a_minute_of_noise_is_found_on_time(sample_recording, snr_db):
    audio = with_lead_in(sample_recording.samples, lead_in_s=LEAD_IN_S, snr_db=snr_db)
    regions = detect_speech(audio, 16000)
    assert regions, "no speech found"
    assert regions[0].start - LEAD_IN_S == pytest.approx(FIRST_SPEECH_S, abs=0.25)
    # the noise alone is not speech
    assert not any(r.end < LEAD_IN_S for r in regions)


def test_the_second_pass_only_adds_speech(sample_recording):
    from pipeline.settings import VadSettings

    audio = with_lead_in(sample_recording.samples, lead_in_s=LEAD_IN_S, snr_db=20.0)
    one_pass = detect_speech(audio, 16000, settings=VadSettings(restart_after_s=0))
    both = detect_speech(audio, 16000)
    assert one_pass[0].start - LEAD_IN_S > FIRST_SPEECH_S + 1.0  # the lag this fixes, seen on the one pass
    for r in one_pass:  # every one-pass region lies inside a region of the two passes
        assert any(b.start <= r.start + 1e-3 and r.end <= b.end + 1e-3 for b in both)


@pytest.mark.slow
def test_words_after_a_minute_of_noise_are_transcribed(sample_recording, asr_backend):
    reference = read_stm_text(SAMPLE_STM)
    plain = asr_backend.transcribe(sample_recording.samples, language="en")
    audio = with_lead_in(sample_recording.samples, lead_in_s=LEAD_IN_S, snr_db=20.0)
    late = asr_backend.transcribe(audio, language="en")
    assert late.words[0].start - LEAD_IN_S == pytest.approx(plain.words[0].start, abs=0.3)
    wer_plain = word_error_rate(reference, " ".join(w.text for w in plain.words))
    wer_late = word_error_rate(reference, " ".join(w.text for w in late.words))
    assert wer_late <= wer_plain + 0.05, (wer_plain, wer_late)
