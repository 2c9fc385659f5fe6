"""faster-whisper decodes a long recording in parts at once, one single-threaded decoder per part."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.asr.faster_whisper_backend import TEMPERATURES, TemperaturesUntil

from pipeline.asr.faster_whisper_backend import split_chunks


def _chunks(lengths_s):
    out, t = [], 0
    for length in lengths_s:
        out.append({"start": t, "end": t + int(length * 16000)})
        t += int((length + 1.0) * 16000)  # a second of silence between regions
    return out


def test_regions_are_grouped_in_order_into_parts_of_about_equal_speech():
    chunks = _chunks([10] * 12)
    groups = split_chunks(chunks, 2)
    assert [len(g) for g in groups] == [6, 6]
    assert [c for g in groups for c in g] == chunks  # every region once, in time order
    groups = split_chunks(chunks, 3)
    assert [len(g) for g in groups] == [4, 4, 4]
    uneven = _chunks([100, 5, 5, 5, 5])
    assert [len(g) for g in split_chunks(uneven, 2)] == [1, 4]  # the long region alone is half the speech


def test_fewer_regions_than_parts_give_fewer_parts():
    assert split_chunks(_chunks([30]), 4) == [_chunks([30])]
    groups = split_chunks(_chunks([30, 30]), 4)
    assert [len(g) for g in groups] == [1, 1]
    assert split_chunks(_chunks([10, 10, 10]), 1) == [_chunks([10, 10, 10])]


@pytest.mark.slow
def test_two_decoders_transcribe_a_long_recording_as_well_as_one(tmp_path, settings):
    """3 minutes of the Dutch clips: words in time order, none lost or doubled at the cut, WER within 1 point."""
    from models.real_clips import build
    from pipeline.asr import load_backend, transcribe
    from pipeline.audio import decode
    from pipeline.evaluation import word_error_rate

    wav, reference = build(3.0, tmp_path / "nl.wav", ("nl",), seed=1)
    samples = decode(wav).samples
    results = {}
    for decoders in (1, 2):
        asr = settings.asr.model_copy(update={"decoders": decoders, "cpu_threads": 1})
        backend = load_backend(asr, model_cache_dir=settings.model_cache_dir, vad_settings=settings.vad)
        seen: list[float] = []
        t = transcribe(samples, 16000, settings=asr, backend=backend, language="nl", progress=seen.append)
        assert seen and seen[-1] == 1.0 and all(b >= a for a, b in zip(seen, seen[1:]))
        starts = np.array([w.start for w in t.words])
        assert np.all(np.diff(starts) >= 0)
        results[decoders] = (t, word_error_rate(reference, t.text))
    (one, wer_one), (two, wer_two) = results[1], results[2]
    assert wer_two <= wer_one + 0.01, (wer_one, wer_two)
    doubled = [(a.text, a.start) for a, b in zip(two.words, two.words[1:]) if a.text == b.text and b.start - a.start < 0.1]
    assert not doubled  # a region is decoded in one part only
    assert two.language == "nl"


@pytest.mark.slow
def test_past_the_time_limit_the_rest_is_decoded_quickly_and_said(settings, sample_recording, monkeypatch):
    """A limit already spent: the first window is decoded with beam 5, the rest greedily; no word is lost."""
    import pipeline.asr
    from pipeline.asr import load_backend, transcribe

    monkeypatch.setattr(pipeline.asr, "MIN_BUDGET_S", 0.0)  # no minute's grace: the limit is spent at once
    from pipeline.evaluation import word_error_rate
    from pipeline.types import Transcript
    from tests.conftest import SAMPLE_STM, read_stm_text

    backend = load_backend(settings.asr, model_cache_dir=settings.model_cache_dir, vad_settings=settings.vad)
    roomy = settings.asr.model_copy(update={"max_s_per_audio_min": 600.0})  # even on a busy machine (seen: 15 s/min spent)
    careful = transcribe(sample_recording.samples, 16000, settings=roomy, backend=backend, language="en")
    assert careful.limited_spans == ()
    hurried = settings.asr.model_copy(update={"max_s_per_audio_min": 1e-6})
    quick = transcribe(sample_recording.samples, 16000, settings=hurried, backend=backend, language="en")
    assert len(quick.limited_spans) == 1
    start, end = quick.limited_spans[0]
    assert 0 < start < end <= sample_recording.duration_s
    assert any(w.start >= start for w in quick.words) and any(w.end <= start for w in quick.words)
    reference = read_stm_text(SAMPLE_STM)
    assert word_error_rate(reference, quick.text) <= word_error_rate(reference, careful.text) + 0.05
    assert Transcript.from_dict(quick.to_dict()).limited_spans == quick.limited_spans


@pytest.mark.slow
def test_fallback_samples_and_the_decoder_count_reach_every_decoding_call(settings, sample_recording, monkeypatch):
    """best_of (1 by default) and the repeated-phrase block (when set) go to each part's decoding; the quick finish
    after the limit samples once (and blocks repeats too)."""
    import pipeline.asr
    from pipeline.asr import load_backend, transcribe

    monkeypatch.setattr(pipeline.asr, "MIN_BUDGET_S", 0.0)

    asr = settings.asr.model_copy(update={"max_s_per_audio_min": 1e-6, "no_repeat_ngram_size": 5})
    backend = load_backend(asr, model_cache_dir=settings.model_cache_dir, vad_settings=settings.vad)
    assert settings.asr.best_of == 1 and backend.best_of == 1
    calls = []
    real = backend._unused[0].transcribe

    def spy(audio, **kwargs):
        calls.append({k: kwargs.get(k) for k in ("beam_size", "best_of", "temperature", "no_repeat_ngram_size")})
        return real(audio, **kwargs)

    backend._unused[0].transcribe = spy
    transcribe(sample_recording.samples, 16000, settings=asr, backend=backend, language="en")
    assert settings.asr.no_repeat_ngram_size == 0 and backend.no_repeat_ngram_size == 5  # off unless set
    first = calls[0].pop("temperature")  # Whisper's six steps, which stop at the limit
    assert isinstance(first, TemperaturesUntil) and tuple.__iter__(first).__next__() == 0.0 and len(first) == 6
    assert calls[0] == {"beam_size": 5, "best_of": 1, "no_repeat_ngram_size": 5}
    assert calls[1] == {"beam_size": 1, "best_of": 1, "temperature": 0.0, "no_repeat_ngram_size": 5}


def test_a_short_recording_gets_at_least_a_minute_before_the_time_limit():
    """Trial finding: a 30-s file on a busy machine was cut at 0:12 (15 s per audio minute gave it 7.5 s)."""
    from pipeline.asr import time_budget_s
    from pipeline.settings import AsrSettings

    assert time_budget_s(30.0, AsrSettings()) == 60.0
    assert time_budget_s(3600.0, AsrSettings()) == 900.0
    assert time_budget_s(3600.0, AsrSettings(max_s_per_audio_min=0)) is None


def test_sampled_decoding_gives_the_same_words_for_the_same_audio_in_one_process(asr_backend, settings,
                                                                                  sample_recording, monkeypatch):
    """Temperature fallback samples; the seed is set for each recording, so what ran before does not matter."""
    from faster_whisper import WhisperModel

    from pipeline.asr import transcribe

    sampled = WhisperModel.transcribe
    # every window sampled at temperature 1 (as a window Whisper finds unlikely is, after the greedy pass fails)
    monkeypatch.setattr(WhisperModel, "transcribe", lambda *a, **k: sampled(*a, **{**k, "temperature": [1.0]}))
    clip = sample_recording.samples[: 12 * 16000]
    other = sample_recording.samples[12 * 16000: 24 * 16000]

    def words(x):
        return [(w.text, w.start) for w in transcribe(x, 16000, settings=settings.asr, backend=asr_backend,
                                                      language="en").words]

    first = words(clip)
    words(other)
    assert words(clip) == first


def test_asr_threads_past_the_cores_are_capped(settings, monkeypatch):
    """64 CTranslate2 threads per decoder on 2 cores took a 3-minute file from 27 to 114 s (fresh-user trial)."""
    from pipeline.asr import faster_whisper_backend as fwb
    from pipeline.asr import load_backend

    monkeypatch.setattr(fwb, "available_cores", lambda: 2)
    asr = settings.asr.model_copy(update={"cpu_threads": 64, "decoders": 0})
    backend = load_backend(asr, model_cache_dir=settings.model_cache_dir, vad_settings=settings.vad)
    assert (backend.decoders, backend.cpu_threads) == (2, 1)
    one = load_backend(asr.model_copy(update={"decoders": 1}), model_cache_dir=settings.model_cache_dir,
                       vad_settings=settings.vad)
    assert (one.decoders, one.cpu_threads) == (1, 2)


def test_fallback_temperatures_stop_at_the_deadline():
    import time

    steps = TemperaturesUntil(TEMPERATURES, time.monotonic() + 3600)
    assert tuple(iter(steps)) == TEMPERATURES and not steps.stopped
    late = TemperaturesUntil(TEMPERATURES, time.monotonic() - 1)
    assert tuple(iter(late)) == (0.0,) and late.stopped
    assert tuple(iter(late)) == (0.0,)  # every window after the deadline: its first step only


@pytest.mark.slow
def test_a_window_in_flight_at_the_deadline_is_not_decoded_again_at_every_temperature(settings, sample_recording):
    """Fresh-user trial of issue 19: the limit was checked only when a segment came back, and faster-whisper
    decodes a window at every temperature before it yields one, so one window overran a 60-s limit by 113 s.
    Here every decoding is made to look unlikely (so each window asks for the whole fallback) and the calls into
    CTranslate2 are counted: all six steps before the deadline, only the first (for each window) after it."""
    import time
    from types import SimpleNamespace

    from pipeline.asr import load_backend

    backend = load_backend(settings.asr, model_cache_dir=settings.model_cache_dir, vad_settings=settings.vad)
    model = backend._unused[0]
    real, calls = model.model, []

    class Unlikely:  # the CTranslate2 model, whose every result looks too unlikely to keep
        def __getattr__(self, name):
            return getattr(real, name)

        def generate(self, *args, **kwargs):
            calls.append(kwargs.get("sampling_temperature", 0.0))
            out = real.generate(*args, **kwargs)
            return [SimpleNamespace(sequences_ids=r.sequences_ids, scores=[-50.0], no_speech_prob=0.0) for r in out]

    model.model = Unlikely()
    try:
        audio = sample_recording.samples[: 16000 * 10]  # one window
        decoded = {}
        for name, deadline in (("before", time.monotonic() + 3600), ("after", time.monotonic() - 1)):
            calls.clear()
            segments, _ = model.transcribe(audio, language="en", beam_size=1, best_of=1, vad_filter=False,
                                           condition_on_previous_text=False,
                                           temperature=TemperaturesUntil(TEMPERATURES, deadline))
            list(segments)
            decoded[name] = list(calls)
        assert decoded["before"][: len(TEMPERATURES)] == list(TEMPERATURES)  # the window's whole fallback
        assert decoded["after"] and set(decoded["after"]) == {0.0}  # each window once, at temperature 0
    finally:
        model.model = real


def _sample_every_window_at_uneven_times(monkeypatch, *, seed):
    """Every window sampled at temperature 1, and each decoding's windows asked for at uneven times (as on a machine
    busy with other stages), so a free decoder may take any part's next window."""
    import time

    from faster_whisper import WhisperModel

    sampled = WhisperModel.transcribe
    pace = np.random.default_rng(seed)

    def busy(*a, **k):
        segments, info = sampled(*a, **{**k, "temperature": [1.0]})

        def paced():
            for seg in segments:
                time.sleep(float(pace.uniform(0.0, 0.4)))
                yield seg
        return paced(), info

    monkeypatch.setattr(WhisperModel, "transcribe", busy)


def test_two_decoders_give_the_same_words_each_time_even_when_every_window_samples(settings, sample_recording,
                                                                                    monkeypatch):
    """A recording decoded in two parts at once must not depend on which decoder took which window.

    Every window is sampled at temperature 1, so each decoding call draws from a random generator; the words must
    still be the same from run to run (a report analysed twice must flag the same stretches).
    """
    import pipeline.asr.faster_whisper_backend as fw
    from pipeline.asr import load_backend, transcribe

    _sample_every_window_at_uneven_times(monkeypatch, seed=0)
    monkeypatch.setattr(fw, "available_cores", lambda: 2)
    monkeypatch.setattr(fw, "MIN_PART_S", 20.0)  # two parts of the clip's speech
    asr = settings.asr.model_copy(update={"decoders": 2, "cpu_threads": 1})
    backend = load_backend(asr, model_cache_dir=settings.model_cache_dir, vad_settings=settings.vad)
    gap = np.zeros(16000, dtype=np.float32)
    clip = np.concatenate([sample_recording.samples, gap] * 4)  # two minutes: several windows in each part
    runs = []
    for _ in range(4):
        t = transcribe(clip, 16000, settings=asr, backend=backend, language="en")
        runs.append([(w.text, round(w.start, 2)) for w in t.words])
    assert fw.FasterWhisperBackend.decoding_counts["parts"] >= 8  # each run was decoded in two parts
    assert all(r == runs[0] for r in runs[1:])


def test_sessions_decoded_at_once_on_one_backend_get_the_words_each_gets_alone(settings, sample_recording,
                                                                               monkeypatch):
    """The nightly run analyses two sessions at once in threads that share the ASR backend (fresh-user trial, 5
    December): neither may decode on the other's models, whose random generators would then serve both."""
    import threading
    import time

    import pipeline.asr.faster_whisper_backend as fw
    from pipeline.asr import load_backend, transcribe

    _sample_every_window_at_uneven_times(monkeypatch, seed=1)
    monkeypatch.setattr(fw, "available_cores", lambda: 2)
    monkeypatch.setattr(fw, "MIN_PART_S", 20.0)
    asr = settings.asr.model_copy(update={"decoders": 2, "cpu_threads": 1})
    backend = load_backend(asr, model_cache_dir=settings.model_cache_dir, vad_settings=settings.vad)
    gap = np.zeros(16000, dtype=np.float32)
    clip = np.concatenate([sample_recording.samples, gap] * 4)

    def words():
        t = transcribe(clip, 16000, settings=asr, backend=backend, language="en")
        return [(w.text, round(w.start, 2)) for w in t.words]

    alone = words()
    for _ in range(2):
        got = [None, None]

        def run(i):
            time.sleep(0.3 * i)  # the second starts while the first decodes
            got[i] = words()
        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert got[0] == alone and got[1] == alone
