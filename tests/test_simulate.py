"""The session simulator: files in the training format, and rupture episodes realised as the 3RS describes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.simulate import simulate, simulate_session
from pipeline.annotations import read_rupture_csv
from pipeline.audio import decode
from pipeline.prosody import f0_track, intensity_db
from pipeline.rttm import read_rttm
from pipeline.sidecar import Sidecar


def _child_client_seed():
    for seed in range(100):  # the client's age is drawn from its seed; take the first child
        if np.random.default_rng(seed).integers(7, 18) < 13:
            return seed
    raise AssertionError("no child client in 100 seeds")


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "s-nl"
    return simulate_session(out, seed=7, language="nl", minutes=2.5, client_seed=_child_client_seed(),
                            episode_s=(45.0, 50.0))


@pytest.mark.slow
def test_session_is_written_in_the_training_format(session):
    rec = decode(session / "recording.wav")
    meta = Sidecar.load(session / "metadata.json")
    notes = read_rupture_csv(session / "ruptures.csv", duration_s=rec.duration_s)
    assert meta.client_id and meta.language == "nl" and meta.client_age < 13
    assert sorted(a.label for a in notes) == ["confrontation", "withdrawal"]
    assert all(a.marker for a in notes)
    assert 120 < rec.duration_s < 400


def _segments(session):
    rec = decode(session / "recording.wav")
    turns = read_rttm(session / "reference.rttm")[session.name]
    notes = read_rupture_csv(session / "ruptures.csv")
    def where(t):
        mid = (t.start + t.end) / 2
        return next((a.label for a in notes if a.start <= mid <= a.end), "ordinary")
    return rec, turns, where


@pytest.mark.slow
def test_a_child_client_has_a_child_voice(session):
    rec, turns, _ = _segments(session)
    def median_f0(role):
        seg = np.concatenate([rec.samples[int(t.start * 16000):int(t.end * 16000)] for t in turns if t.speaker == role])
        return np.nanmedian(f0_track(seg, 16000, fmin_hz=65, fmax_hz=600, hop_s=0.02, resolution_st=0.25))
    assert median_f0("client") >= 250 and median_f0("client") > 1.3 * median_f0("therapist")


@pytest.mark.slow
def test_withdrawal_is_quiet_and_slow_and_confrontation_loud_and_overlapping(session):
    rec, turns, where = _segments(session)
    level = {k: [] for k in ("ordinary", "withdrawal", "confrontation")}
    latency = {k: [] for k in level}
    overlaps = {k: 0 for k in level}
    ordered = sorted(turns, key=lambda t: t.start)
    for prev, t in zip(ordered, ordered[1:]):
        if t.speaker != "client":
            continue
        level[where(t)].append(intensity_db(rec.samples[int(t.start * 16000):int(t.end * 16000)]))
        if prev.speaker == "therapist":
            latency[where(t)].append(t.start - prev.end)
            overlaps[where(t)] += t.start < prev.end
    assert np.median(level["confrontation"]) - np.median(level["withdrawal"]) >= 8.0  # dB
    assert np.mean(latency["withdrawal"]) > np.mean(latency["ordinary"]) + 0.3  # s; ordinary talk has slow answers too
    assert overlaps["confrontation"] >= 1 and overlaps["ordinary"] == 0


@pytest.mark.slow
def test_ordinary_talk_also_has_short_answers_and_pauses(tmp_path):
    """No single marker may separate the classes: ordinary stretches hold short client turns and long gaps too."""
    paths = simulate(tmp_path, sessions=2, language="en", seed=40, minutes=(3.0, 3.0), episode_s=(20.0, 25.0))
    assert [p.name for p in paths] == ["sim-en-00040", "sim-en-00041"]
    assert {json.loads((p / "metadata.json").read_text())["client_id"] for p in paths} == {"sim-en-40"}
    short, long_gaps = 0, 0
    for p in paths:
        rec, turns, where = _segments(p)
        ordered = sorted(turns, key=lambda t: t.start)
        for prev, t in zip(ordered, ordered[1:]):
            if t.speaker == "client" and where(t) == "ordinary":
                short += t.end - t.start < 1.0
                long_gaps += t.start - prev.end >= 1.0
    assert short >= 2 and long_gaps >= 1


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="language must be one of nl, en"):
        simulate_session(tmp_path / "x", seed=1, language="de", minutes=1)
    with pytest.raises(ValueError, match="sessions must be >= 1"):
        simulate(tmp_path, sessions=0, language="nl")
