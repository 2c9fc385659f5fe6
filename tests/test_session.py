"""The session analysis without an orchestrator: pipeline.session.analyze with fake backends, and round trips."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Mapping

import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.features import FEATURE_NAMES
from pipeline.sidecar import Sidecar
from pipeline.rttm import read_rttm
from pipeline.session import STAGES, Backends, analyze
from pipeline.types import (ROLES, FeatureFrame, Recording, RuptureFlag, SessionAnalysis, SessionFeatures,
                            SessionReport, Transcript, Word)
from tests.conftest import ROOT, SAMPLE_RTTM, SAMPLE_STM, SAMPLE_WAV


def assert_same(a, b, where: str = "") -> None:
    """``a == b`` as a dataclass compares, with NaN equal to NaN and the types checked (a tuple is not a list)."""
    assert type(a) is type(b) or {type(a), type(b)} <= {int, float, np.float64, np.float32}, \
        f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            if f.compare:
                assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, Mapping):
        assert list(a) == list(b), f"{where}: keys {list(a)} vs {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), f"{where}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), f"{where}: NaN vs {b!r}"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


class ReferenceAsr:
    """Fake ASR: the sample's reference words (STM), spread evenly over each segment."""

    name = "reference"

    def __init__(self) -> None:
        self.calls = 0

    def transcribe(self, samples, *, language, progress=None) -> Transcript:
        self.calls += 1
        words = []
        for line in SAMPLE_STM.read_text().splitlines():
            _, _, _, a, b, text = line.split(maxsplit=5)
            a, b, toks = float(a), float(b), text.split()
            step = (b - a) / len(toks)
            words += [Word(a + i * step, a + (i + 1) * step, w, 0.9) for i, w in enumerate(toks)]
        return Transcript(tuple(words), language or "en", 1.0, samples.size / 16000)


class ReferenceEmbedder:
    """Fake speaker encoder: a window's embedding points at the reference speaker who talks most in it."""

    name = "reference"

    def __init__(self) -> None:
        self.calls = 0
        self.turns = read_rttm(SAMPLE_RTTM)["sample"]
        self.speakers = sorted({t.speaker for t in self.turns})

    def embed_windows(self, samples, sample_rate_hz, starts_s, window_s) -> np.ndarray:
        self.calls += 1
        out = np.full((len(starts_s), 8), 0.05, np.float32)
        for i, s in enumerate(starts_s):
            talk = {k: sum(max(0.0, min(t.end, s + window_s) - max(t.start, s)) for t in self.turns if t.speaker == k)
                    for k in self.speakers}
            out[i, self.speakers.index(max(talk, key=talk.get))] = 1.0
        return out


class ReferenceOverlap:
    """Fake overlapped-speech detector: probability 1 where two reference speakers of sample.rttm talk at once."""

    name = "reference-overlap"

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, samples, sample_rate_hz):
        from pipeline.overlap import OverlapFrames

        self.calls += 1
        turns = read_rttm(SAMPLE_RTTM)["sample"]
        t = 0.01 + 0.02 * np.arange(int(samples.size / sample_rate_hz / 0.02))
        talking = sum(((t >= x.start) & (t < x.end)).astype(int) for x in turns)
        return OverlapFrames(frame_step_s=0.02, first_frame_s=0.01, overlap_prob=(talking >= 2).astype(np.float32),
                             speech_prob=(talking >= 1).astype(np.float32), method=self.name)


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    """``analyze`` on sample.wav with fake backends, a data directory of its own and a hook that records."""
    from pipeline.settings import Settings

    data = tmp_path_factory.mktemp("untouched") / "data"
    calls: list[tuple[str, float]] = []
    backends = Backends(asr=ReferenceAsr(), embedder=ReferenceEmbedder(), overlap=ReferenceOverlap())
    meta = Sidecar(language="en", participants=({"role": "therapist", "name": "Diane"},
                                                        {"role": "client", "name": "Sheila", "age": 15}),
                           client_id="c-017", date="2026-11-28")
    analysis = analyze(SAMPLE_WAV, meta, Settings(data_dir=data), backends=backends,
                       hook=lambda stage, fraction: calls.append((stage, fraction)))
    return dict(analysis=analysis, calls=calls, data=data, backends=backends)


@pytest.mark.slow  # decodes, VADs and runs pYIN on real audio (fake models only for ASR and voices)
def test_every_stage_reports_its_start_and_its_end_in_order(fake_run):
    assert fake_run["calls"] == [(s, f) for s in STAGES for f in (0.0, 1.0)]


@pytest.mark.slow  # decodes, VADs and runs pYIN on real audio (fake models only for ASR and voices)
def test_the_analysis_writes_nothing(fake_run):
    assert not fake_run["data"].exists()  # no session folder, no report, not even the data directory


@pytest.mark.slow  # decodes, VADs and runs pYIN on real audio (fake models only for ASR and voices)
def test_the_analysis_holds_every_marker_and_no_audio(fake_run):
    a = fake_run["analysis"]
    assert isinstance(a, SessionAnalysis) and a.session_id == "sample"  # from the file name
    assert a.recording.samples.size == 0 and a.recording.channels is None
    assert a.recording.duration_s == pytest.approx(30.0, abs=1e-3)
    assert a.settings["asr"]["language"] == "en" and a.settings["diarization"]["num_speakers"] == 2  # metadata
    assert len(a.settings_hash) == 16
    assert a.diarization.method != "channel-per-speaker" and len(a.diarization.speakers) == 2
    assert all(w.speaker in a.diarization.speakers for w in a.transcript.words)
    assert set(a.roles.roles.values()) <= set(ROLES)
    assert a.features.feature_names == FEATURE_NAMES and list(a.session_markers) == list(FEATURE_NAMES)
    assert len(a.utterance_markers) == len(a.utterances) > 0
    assert (a.client_id, a.client_age, a.session_date) == ("c-017", 15.0, "2026-11-28")
    assert fake_run["backends"].asr.calls == 1 and fake_run["backends"].embedder.calls > 0


@pytest.mark.slow  # decodes, VADs and runs pYIN on real audio (fake models only for ASR and voices)
def test_overlap_in_a_one_microphone_recording_gets_both_speakers(fake_run):
    a = fake_run["analysis"]
    reference = read_rttm(SAMPLE_RTTM)["sample"]
    truth = [(x.start, min(x.end, y.end)) for x in reference for y in reference  # regions of 0.1 s and more
             if x.speaker != y.speaker and y.start <= x.start < y.end and min(x.end, y.end) - x.start >= 0.1]
    assert fake_run["backends"].overlap.calls == 1 and len(a.overlap_regions) == len(truth) > 0
    for r, (start, end) in zip(a.overlap_regions, sorted(truth)):
        assert r.start == pytest.approx(start, abs=0.03) and r.end == pytest.approx(end, abs=0.03)
    assert a.diarization.method.endswith("+overlap-second-speaker")
    # both speakers' turns now cover the overlap, so the turn-taking measures see it
    assert a.metrics.overlap_time_s >= 0.5 * sum(e - s for s, e in truth)
    assert sum(a.metrics.interruptions.values()) + sum(a.metrics.overlap_backchannels.values()) >= 1


@pytest.mark.slow  # decodes, VADs and runs pYIN on real audio (fake models only for ASR and voices)
def test_names_from_the_metadata_never_reach_the_analysis(fake_run):
    text = json.dumps(fake_run["analysis"].to_dict())
    assert "Sheila" not in text and "Diane" not in text
    assert "[client]" in text


def test_a_bad_session_id_fails_before_decoding(tmp_path):
    from pipeline.settings import Settings

    calls: list = []
    with pytest.raises(InputError, match=r"sample.wav: session_id must be 1–64 letters"):
        analyze(SAMPLE_WAV, None, Settings(data_dir=tmp_path), backends=Backends(ReferenceAsr(), ReferenceEmbedder()),
                session_id="../x", hook=lambda *a: calls.append(a))
    assert calls == []


@pytest.mark.slow  # decodes, VADs and runs pYIN on real audio (fake models only for ASR and voices)
def test_a_stereo_file_with_a_speaker_per_channel_needs_no_voice_clustering(tmp_path):
    from pipeline.settings import Settings

    embedder, overlap = ReferenceEmbedder(), ReferenceOverlap()
    a = analyze(ROOT / "tests/data/fw/stereo_diarization.wav", None, Settings(data_dir=tmp_path),
                backends=Backends(ReferenceAsr(), embedder, overlap), language="en")
    assert a.diarization.method == "channel-per-speaker" and "one speaker per channel" in a.diarization.detail
    assert embedder.calls == 0
    assert overlap.calls == 0 and a.overlap_regions == ()  # the channels' turns overlap already


@pytest.mark.slow  # decodes, VADs and runs pYIN on real audio (fake models only for ASR and voices)
def test_an_analysis_round_trips_through_json(fake_run):
    a = fake_run["analysis"]
    assert any(math.isnan(v) for fr in a.features.frames for v in fr.values)  # NaN is part of what must survive
    back = SessionAnalysis.from_dict(json.loads(json.dumps(a.to_dict())))
    assert_same(back, a)
    assert back.to_dict() == a.to_dict()


@pytest.mark.slow  # decodes, VADs and runs pYIN on real audio (fake models only for ASR and voices)
def test_a_report_round_trips_through_json(fake_run):
    a = fake_run["analysis"]
    flag = RuptureFlag(12.0, 42.0, 0.71, "withdrawal", ("long silences after the therapist's questions",), "sim-v1")
    report = SessionReport.from_analysis(a, flags=(flag,), model_version="sim-v1", flag_threshold=0.5,
                                         created_at="2026-12-01T10:00:00+00:00", software_version="0.1.0",
                                         client_history={"client_speech_share": {"min": 0.2, "max": 0.4, "n": 3}})
    assert_same(SessionReport.from_dict(json.loads(json.dumps(report.to_dict()))), report)
    # what the analysis found is all in the report
    assert_same(SessionAnalysis.from_dict(report.to_dict()), a)


def test_a_flag_round_trips_with_the_facts_behind_its_reasons():
    """Issue 18: the facts (marker, the stretch's value, the client's usual value) survive ``session.json``."""
    from pipeline.types import ReasonFact

    facts = (ReasonFact("client_refusals_per_min", 3.0, 0.0), ReasonFact("client_intensity_z", -1.2, float("nan")))
    flag = RuptureFlag(21.0, 28.0, 0.55, "confrontation", ("de cliënt weigerde 3 keer per minuut",), "sim-v1",
                       ("rejects_intervention",), reason_facts=facts)
    d = json.loads(json.dumps(flag.to_dict()))
    assert d["reason_facts"] == [{"marker": "client_refusals_per_min", "value": 3.0, "usual": 0.0},
                                 {"marker": "client_intensity_z", "value": -1.2, "usual": None}]
    back = RuptureFlag.from_dict(d)
    assert_same(back, flag)
    assert isinstance(back.reason_facts[1], ReasonFact) and math.isnan(back.reason_facts[1].usual)
    # a flag of a session analysed before the facts were kept: its sentences, no facts
    del d["reason_facts"]
    old = RuptureFlag.from_dict(d)
    assert old.reason_facts == () and old.reasons == ("de cliënt weigerde 3 keer per minuut",)


def test_features_round_trip_with_undefined_values():
    frames = (FeatureFrame(0.0, 60.0, (0.5, float("nan")), 41.5), FeatureFrame(30.0, 90.0, (1.0, 2.0)))
    features = SessionFeatures(("a_ratio", "b_s"), ("ratio", "s"), frames)
    d = json.loads(json.dumps(features.to_dict()))
    assert d["frames"][0]["values"] == [0.5, None]
    back = SessionFeatures.from_dict(d)
    assert_same(back, features)
    assert np.array_equal(back.matrix(), features.matrix(), equal_nan=True)


def test_a_recording_read_back_has_no_samples():
    rec = Recording("/x/s1.wav", np.ones(16000, np.float32), 16000, 1.0, 44100, 2, "wav", 1.0, None,
                    np.ones((2, 16000), np.float32))
    back = Recording.from_dict(rec.to_dict())
    assert back == rec and back.samples.size == 0 and back.channels is None
    assert rec.without_audio() == rec and rec.without_audio().samples.size == 0


class NoBackend:
    """A backend that must not be used: the features are in the cache."""

    name = "none"

    def transcribe(self, *args, **kwargs):
        raise AssertionError("analysed again although the features were cached")

    embed_windows = transcribe


@pytest.mark.slow  # decodes, VADs and runs pYIN on real audio (fake models only for ASR and voices)
def test_training_features_come_straight_from_the_analysis_and_are_cached_privately(fake_run, tmp_path):
    import os
    import stat

    from models.dataset import LabelledSession, session_features
    from pipeline.settings import Settings

    meta = tmp_path / "metadata.json"
    meta.write_text(json.dumps({"session_id": "s-1", "client_id": "c-017", "language": "en", "date": "2026-11-28",
                                "participants": [{"role": "therapist", "name": "Diane"},
                                                 {"role": "client", "name": "Sheila", "age": 15}]}))
    session = LabelledSession(tmp_path, SAMPLE_WAV, meta, tmp_path / "ruptures.csv", "s-1", "c-017", "en")
    settings = Settings(data_dir=tmp_path / "data")
    features, duration = session_features(session, settings, backends=fake_run["backends"])
    assert_same(features, fake_run["analysis"].features)
    assert duration == fake_run["analysis"].recording.duration_s
    cached = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert [p.name for p in cached] == ["features.json"]  # no report, no transcript
    assert stat.S_IMODE(os.stat(cached[0]).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(cached[0].parent).st_mode) == 0o700
    again, _ = session_features(session, settings, backends=Backends(NoBackend(), NoBackend()))
    assert_same(again, features)
    # 5 December trial: the classifier's settings (another model, a threshold set by hand) do not change the
    # features, but were part of the cache key, so `evaluate` with them analysed every session again
    other = settings.model_copy(update={"model": settings.model.model_copy(update={"flag_threshold": 0.07,
                                                                                   "active_model": tmp_path})})
    again, _ = session_features(session, other, backends=Backends(NoBackend(), NoBackend()))
    assert_same(again, features)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's heap")
def test_memory_freed_inside_a_stage_goes_back_to_the_system():
    """A stage that frees many blocks lying between small live ones (model working memory, per-window arrays)
    leaves them in glibc's heap, counted in the process's memory until the end of the run; after each stage it
    is handed back, so a long session's peak is not the sum of every stage's leftovers."""
    import psutil

    from pipeline.session import stage

    me = psutil.Process()
    before = me.memory_info().rss
    pins = []
    with stage(None, "decode"):
        blocks = []
        for _ in range(3000):  # 190 MB in 64 KB blocks, each followed by a small block that stays alive
            blocks.append(bytearray(64 * 1024))
            pins.append(bytearray(1000))
        del blocks
    assert (me.memory_info().rss - before) / 2**20 < 60


def test_settings_that_only_change_speed_do_not_change_the_settings_hash():
    """Pitch processes and overlap threads give the same figures (tests/test_prosody.py, bench), so they must not
    throw away the feature cache or make two identical analyses look different; the embedding hop does change."""
    from pipeline.settings import DiarizationSettings, FeatureSettings, OverlapSettings, Settings

    base = Settings()
    faster = Settings(features=FeatureSettings(prosody_processes=1), overlap=OverlapSettings(cpu_threads=1))
    assert faster.settings_hash() == base.settings_hash()
    assert Settings(diarization=DiarizationSettings(hop_s=0.5)).settings_hash() != base.settings_hash()
