"""The second session generator (``rooms``): the training format, levels, overlaps, determinism, own phrasing."""

from __future__ import annotations

import json
import re
import wave

import numpy as np
import pytest
from typer.testing import CliRunner

from models.simulate import _PHRASES
from models.simulate_rooms import (
    EPISODE_RANGE_S,
    PLAY_RANGE_S,
    SAMPLE_RATE_HZ,
    _BANK,
    compose_session,
    session_plan,
    simulate_rooms,
    simulate_rooms_session,
)
from pipeline.annotations import read_rupture_csv
from pipeline.audio import decode
from pipeline.rttm import read_rttm
from pipeline.sidecar import Sidecar

SR = SAMPLE_RATE_HZ


def _first_seed(pred, *, language: str, minutes: float, start: int = 0) -> int:
    """The first seed from ``start`` whose plan (cheap, nothing rendered) satisfies ``pred``."""
    for seed in range(start, start + 500):
        if pred(session_plan(seed=seed, language=language, minutes=minutes)):
            return seed
    raise AssertionError("no seed in 500 gives such a plan")


def _batch_seed(language: str) -> int:
    """First seed of a 2-session batch (one client) where one session has a parent: simulate_rooms' seeding."""
    for s in range(0, 500):
        if any(session_plan(seed=s + i, client_seed=s, language=language, minutes=1.0).parent for i in range(2)):
            return s
    raise AssertionError("no batch with a parent")


def _level_dbfs(folder) -> float:
    rec = decode(folder / "recording.wav")
    mask = np.zeros(rec.samples.size, dtype=bool)
    for t in read_rttm(folder / "reference.rttm")[folder.name]:
        mask[int(t.start * SR):int(t.end * SR)] = True
    return float(20 * np.log10(np.sqrt(np.mean(rec.samples[mask].astype(np.float64) ** 2))))


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Four short sessions, two Dutch and two English, as `alliance simulate --generator rooms` writes them."""
    root = tmp_path_factory.mktemp("rooms")
    paths = []
    for lang in ("nl", "en"):
        paths += simulate_rooms(root, sessions=2, language=lang, seed=_batch_seed(lang), minutes=(1.0, 1.5))
    return root, paths


# -- fast: the plan, the phrase banks, the arguments ------------------------------------------------------------
def _norm(sentence: str) -> str:
    s = re.sub(r"\{\w+\}", " ", sentence.lower())
    return " ".join(re.sub(r"[^\w' ]+", " ", s).split())


def test_phrase_banks_share_no_sentence_with_the_first_generator():
    theirs = {_norm(p) for lang in _PHRASES.values() for bank in lang.values() for p in bank}
    ours = {_norm(p) for lang in _BANK.values() for key, bank in lang.items() if key != "topics" for p in bank}
    assert len(ours) > 250
    assert not ours & theirs, sorted(ours & theirs)


def test_both_languages_have_the_same_banks_and_every_template_fills():
    assert set(_BANK["nl"]) == set(_BANK["en"])
    for lang in _BANK.values():
        for key, bank in lang.items():
            assert bank, key
            for p in bank:
                assert set(re.findall(r"\{(\w+)\}", p)) <= {"topic", "pron", "Pron"}, p


def test_plans_vary_episodes_play_and_parents_as_documented():
    plans = [session_plan(seed=s, language="nl", minutes=12.0) for s in range(300)]
    for kind in ("withdrawal", "confrontation"):
        counts = np.bincount([len(p.seconds(kind)) for p in plans], minlength=3)
        assert counts.size == 3 and counts.min() > 20  # 0, 1 and 2 episodes all occur
        lengths = [s for p in plans for s in p.seconds(kind)]
        assert EPISODE_RANGE_S[0] - 1e-6 <= min(lengths) and max(lengths) <= EPISODE_RANGE_S[1] + 1e-6
    play = [s for p in plans for s in p.seconds("play")]
    assert play and PLAY_RANGE_S[0] <= min(play) and max(play) <= PLAY_RANGE_S[1]
    assert 0.25 <= np.mean([p.parent for p in plans]) <= 0.45  # about a third of the sessions
    for p in plans[:50]:  # the blocks fill the session; ordinary talk opens it and separates the blocks
        assert abs(sum(s for _, s in p.blocks) - 720.0) < 1.0 or sum(s for k, s in p.blocks if k != "ordinary") < 720
        assert [k for k, _ in p.blocks][::2] == ["ordinary"] * ((len(p.blocks) + 1) // 2)
    short = session_plan(seed=3, language="en", minutes=1.0)
    assert sum(s for k, s in short.blocks if k in ("withdrawal", "confrontation")) <= 0.55 * 60 + 1e-6


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="language must be one of nl, en"):
        simulate_rooms_session(tmp_path / "x", seed=1, language="de", minutes=1)
    with pytest.raises(ValueError, match="minutes must be > 0"):
        simulate_rooms_session(tmp_path / "x", seed=1, language="nl", minutes=0)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        session_plan(seed=-1, language="nl", minutes=1)
    with pytest.raises(ValueError, match="sessions must be >= 1"):
        simulate_rooms(tmp_path, sessions=0, language="nl")
    with pytest.raises(ValueError, match="minutes must be a range"):
        simulate_rooms(tmp_path, sessions=1, language="nl", minutes=(3.0, 2.0))


def test_the_cli_refuses_an_unknown_generator_in_one_line(tmp_path):
    from flows.cli import app

    result = CliRunner().invoke(app, ["simulate", "--sessions", "1", "--language", "nl", "--out", str(tmp_path),
                                      "--generator", "piper"])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--generator must be tts or rooms" in lines[0] and "'piper'" in lines[0]
    assert not any(tmp_path.iterdir())


# -- slow: rendered sessions ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sessions_load_as_a_training_dataset(batch):
    from models.dataset import discover_sessions

    root, paths = batch
    found = discover_sessions(root)
    assert [s.folder for s in found] == sorted(paths)
    assert {s.client_id for s in found} == {json.loads((p / "metadata.json").read_text())["client_id"] for p in paths}
    assert all(s.client_id.startswith("rooms-") for s in found)
    for p in paths:
        with wave.open(str(p / "recording.wav")) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        meta = Sidecar.load(p / "metadata.json")
        raw = json.loads((p / "metadata.json").read_text())
        assert raw["simulated"]["generator"] == "rooms" and meta.language in ("nl", "en")
        assert set(raw) == {"session_id", "client_id", "language", "participants", "simulated"}
        rec = decode(p / "recording.wav")
        assert 55 < rec.duration_s < 110
        notes = read_rupture_csv(p / "ruptures.csv", duration_s=rec.duration_s)  # also: no overlaps, known labels
        assert all(0 <= a.start < a.end <= rec.duration_s and a.marker for a in notes)
        turns = read_rttm(p / "reference.rttm")[p.name]
        assert {t.speaker for t in turns} <= {"therapist", "client", "parent"}
        assert all(0 <= t.start < t.end <= rec.duration_s + 1e-3 for t in turns)


@pytest.mark.slow
def test_speech_level_lies_in_the_range_and_varies_across_seeds(batch):
    _, paths = batch
    levels = [_level_dbfs(p) for p in paths]
    assert all(-45.0 <= v <= -15.0 for v in levels), levels
    assert max(levels) - min(levels) > 5.0, levels
    for p, v in zip(paths, levels):  # what the metadata reports is what the file holds
        assert abs(json.loads((p / "metadata.json").read_text())["simulated"]["speech_level_dbfs"] - v) < 0.2


@pytest.mark.slow
def test_a_small_batch_has_a_parent_and_some_real_speech(batch):
    _, paths = batch
    metas = [json.loads((p / "metadata.json").read_text()) for p in paths]
    with_parent = [p for p, m in zip(paths, metas) if any(x["role"] == "parent" for x in m["participants"])]
    assert with_parent
    assert all("parent" in {t.speaker for t in read_rttm(p / "reference.rttm")[p.name]} for p in with_parent)
    assert max(m["simulated"]["real_speech_share"] for m in metas) > 0.0


@pytest.mark.slow
def test_real_voices_puts_every_utterance_in_a_real_voice():
    """``real_voices=True`` (for ``bench/interruptions_eval.py --real-voices``): every speaker gets recorded speech
    for every utterance, so the benchmark can tell what the synthetic voices cost from what the room costs."""
    seed = _first_seed(lambda p: p.seconds("confrontation"), language="nl", minutes=1.0, start=30)
    usual = compose_session(seed=seed, language="nl", minutes=1.0)
    real = compose_session(seed=seed, language="nl", minutes=1.0, real_voices=True)
    assert usual.info["real_speech_share"] < 0.9
    assert real.info["real_speech_share"] == 1.0
    assert all(v["real"] and v["real_share"] == 1.0 for v in real.info["voices"].values())
    assert len({v["real"] for v in real.info["voices"].values()}) == len(real.info["voices"])  # one voice each
    assert real.info["real_voices"] is True and usual.info["real_voices"] is False


@pytest.fixture(scope="module")
def confrontation_session():
    seed = _first_seed(lambda p: p.seconds("confrontation"), language="en", minutes=1.5, start=30)
    return seed, compose_session(seed=seed, language="en", minutes=1.5)


@pytest.mark.slow
def test_confrontation_has_interruptions_and_the_reference_is_what_was_rendered(confrontation_session):
    _, s = confrontation_session
    spans = [(a, b) for a, b, label, _ in s.episodes if label == "confrontation"]
    assert spans
    turns = sorted(s.turns)
    overlaps = [(a, b) for i, a in enumerate(turns) for b in turns[i + 1:]
                if b[0] < a[1] and b[2] != a[2] and any(lo <= b[0] <= hi for lo, hi in spans)]
    assert overlaps, "no overlapping turns inside the confrontation episode"
    assert s.info["interruptions"]["attempts"] >= 1
    # every role's dry speech lies inside its reference turns, and each turn holds speech at both edges
    for role, track in s.dry.items():
        inside = np.zeros(track.size, dtype=bool)
        for a, b, r in turns:
            if r == role:
                inside[int(round(a * SR)):int(round(b * SR))] = True
                seg = track[int(round(a * SR)):int(round(b * SR))]
                assert np.any(seg[:480] != 0) and np.any(seg[-480:] != 0), (role, a, b)
        assert not np.any(track[~inside]), role
    # both speakers are really talking over each other in the overlaps
    for a, b in overlaps:
        lo, hi = int(round(max(a[0], b[0]) * SR)), int(round(min(a[1], b[1]) * SR))
        if hi - lo >= 0.3 * SR:
            assert np.any(s.dry[a[2]][lo:hi] != 0) and np.any(s.dry[b[2]][lo:hi] != 0)


@pytest.mark.slow
def test_same_seed_gives_identical_files_and_another_seed_other_ones(confrontation_session, tmp_path):
    seed, composed = confrontation_session
    a = simulate_rooms_session(tmp_path / "a", seed=seed, language="en", minutes=1.5)
    b = simulate_rooms_session(tmp_path / "b", seed=seed, language="en", minutes=1.5)
    c = simulate_rooms_session(tmp_path / "c", seed=seed + 1, language="en", minutes=1.5)
    for name in ("recording.wav", "ruptures.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "reference.rttm").read_text().replace(" a 1 ", " b 1 ") == (b / "reference.rttm").read_text()
    meta_a, meta_b = (json.loads((p / "metadata.json").read_text()) for p in (a, b))
    assert {k: v for k, v in meta_a.items() if k != "session_id"} == {k: v for k, v in meta_b.items()
                                                                         if k != "session_id"}
    assert (a / "recording.wav").read_bytes() != (c / "recording.wav").read_bytes()
    assert (a / "reference.rttm").read_text().replace(" a 1 ", " c 1 ") != (c / "reference.rttm").read_text()
    # the written reference is the composed one
    written = [(t.start, t.end, t.speaker) for t in read_rttm(a / "reference.rttm")["a"]]
    assert np.allclose([(x, y) for x, y, _ in written], [(x, y) for x, y, _ in sorted(composed.turns)], atol=1.5e-3)
    assert [r for _, _, r in written] == [r for _, _, r in sorted(composed.turns)]
    with pytest.raises(FileExistsError, match="already holds a session"):
        simulate_rooms_session(a, seed=seed, language="en", minutes=1.5)


@pytest.mark.slow
def test_a_seed_that_asks_for_silent_play_gets_it():
    seed = _first_seed(lambda p: p.seconds("play"), language="nl", minutes=2.0)
    s = compose_session(seed=seed, language="nl", minutes=2.0)
    play = s.info["play_stretches_s"]
    assert play and all(b - a >= 20.0 for a, b in play)
    turns = sorted(s.turns)
    gaps = [(x[1], y[0]) for x, y in zip(turns, turns[1:])]
    longest = max(gaps, key=lambda g: g[1] - g[0])
    assert longest[1] - longest[0] >= 20.0
    assert all(not (t[0] < b and t[1] > a) for a, b in play for t in turns)  # nobody speaks while they play
    # what is heard then is quieter than the speech: toys, paper, the room's noise
    a, b = play[0]
    quiet = s.recording[int(a * SR):int(b * SR)].astype(np.float64)
    assert 20 * np.log10(np.sqrt(np.mean(quiet ** 2))) < s.info["speech_level_dbfs"] - 3.0


@pytest.mark.slow
def test_alliance_simulate_writes_rooms_sessions(tmp_path):
    from flows.cli import app

    result = CliRunner().invoke(app, ["simulate", "--sessions", "1", "--language", "en", "--out", str(tmp_path),
                                      "--seed", "61", "--min-minutes", "3", "--max-minutes", "3",
                                      "--generator", "rooms"])
    assert result.exit_code == 0, result.output
    (folder,) = tmp_path.iterdir()
    assert folder.name == "rooms-en-00061"
    assert json.loads((folder / "metadata.json").read_text())["simulated"]["generator"] == "rooms"
    assert 170 < decode(folder / "recording.wav").duration_s < 200
