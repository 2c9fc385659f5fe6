"""Retraining on annotated sessions: thresholds, grouped cross-validation, and the researcher's two commands."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flows.cli import app
from models.training import choose_threshold, cross_validate, make_hgb_pipeline
from models.transfer import choose_model

runner = CliRunner()


def test_threshold_is_the_highest_that_reaches_the_target_recall():
    y = np.array([True, True, True, True, False])
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    assert choose_threshold(y, p, 0.75) == 0.7  # 3 of 4 positives flagged
    assert choose_threshold(y, p, 1.0) == 0.6
    assert choose_threshold(np.zeros(3, bool), np.ones(3), 0.8) == 0.5


def test_grouped_cross_validation_on_separable_windows():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 60)
    X = rng.standard_normal((180, 40)) + np.eye(40)[y * 3] * 3.0
    groups = np.array([f"c{i % 6}" for i in range(180)])
    cv = cross_validate(X, y, groups, target_recall=0.8)
    assert cv["n_splits"] == 5 and sum(f["test_windows"] for f in cv["folds"]) == 180
    for name in ("withdrawal", "confrontation"):
        m = cv["metrics"][name]
        assert m["auroc"] > 0.95 and m["recall"] >= 0.8 and m["n_positive"] == 60
        assert m["calibration"] and math.isfinite(m["brier"])


def test_cross_validation_needs_two_clients_and_both_rupture_types():
    from pipeline.errors import InputError

    X, y = np.zeros((6, 40)), np.array([0, 1, 2, 0, 1, 2])
    with pytest.raises(InputError, match="at least 2 clients"):
        cross_validate(X, y, np.array(["a"] * 6))
    with pytest.raises(InputError, match="no window is labelled confrontation"):
        cross_validate(X, np.array([0, 1, 0, 1, 0, 1]), np.array(list("aabbcc")))


@pytest.fixture(scope="module")
def small_sets(tmp_path_factory):
    from models.simulate import simulate

    # English: Whisper base decodes the simulator's English voices at about 7x real time here, its Dutch voices at
    # 2-4x (issue: speed on hard audio); the workflow under test is the same for both languages
    root = tmp_path_factory.mktemp("annotated")
    # about a minute each (ordinary talk of at least 8 s around two 12-14-s episodes): the workflow is under test
    short = dict(language="en", minutes=(0.3, 0.3), episode_s=(12.0, 14.0), min_ordinary_s=8.0)
    train = simulate(root / "train", sessions=4, seed=500, **short)
    held = simulate(root / "held", sessions=2, seed=700, **short)
    return root / "train", root / "held", train, held


@pytest.mark.slow
def test_researcher_goes_from_annotated_sessions_to_an_active_model(prefect_harness, small_sets, tmp_path):
    train_dir, held_dir, _, _ = small_sets
    result = runner.invoke(app, ["retrain", "--data", str(train_dir), "--holdout", str(held_dir),
                                 "--version", "clinic-v1"])
    assert result.exit_code == 0, result.output
    assert "Cross-validation grouped by client" in result.output and "alliance activate-model clinic-v1" in result.output
    from pipeline.settings import Settings

    folder = Settings().data_dir / "models" / "clinic-v1"
    card = json.loads((folder / "model_card.json").read_text())
    assert (folder / "MODEL_CARD.md").read_text().startswith(
        "Trained on 4 simulated sessions (generators tts) of 2 clients (en), not on real therapy audio.")
    assert set(card["threshold"]["per_class"]) == {"withdrawal", "confrontation"}
    assert card["metrics"]["cross_validation"]["grouped_by"] == "client"
    # the second command makes it the active model
    result = runner.invoke(app, ["activate-model", "clinic-v1"])
    try:
        _check_active(result, card, held_dir, train_dir, tmp_path)
    finally:
        (Settings().data_dir / "models" / "ACTIVE").unlink(missing_ok=True)


def _check_active(result, card, held_dir, train_dir, tmp_path):
    assert result.exit_code == 0 and "Active model" in result.output
    # evaluate (default: the active model) prints exactly what the card recorded for the held-out sessions
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["evaluate", "--data", str(held_dir), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "Model clinic-v1 on 2 sessions of 1 client:" in " ".join(result.output.split())
    assert json.loads(out.read_text())["types"] == card["metrics"]["heldout"]["types"]
    # never overwritten
    result = runner.invoke(app, ["retrain", "--data", str(train_dir), "--version", "clinic-v1"])
    assert result.exit_code == 1 and "already exists" in result.output
    # the analysis now flags with the active model (the 30 s call: any recording shows which model flagged it)
    from tests.conftest import SAMPLE_WAV

    result = runner.invoke(app, ["analyze", str(SAMPLE_WAV), "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s" / "session.json").read_text())["model_version"] == "clinic-v1"


@pytest.mark.slow
def test_bad_annotations_stop_retraining_before_any_analysis(prefect_harness, small_sets, tmp_path):
    import shutil

    _, _, train, _ = small_sets
    data = tmp_path / "bad"
    for p in train[:2]:
        shutil.copytree(p, data / p.name)
    bad = data / train[1].name / "ruptures.csv"
    bad.write_text("start_s,end_s,label\n10,20,withdrawal\n15,25,confrontation\n")
    # --strict: the first bad session stops the run (by default it is set aside and named, see below)
    result = runner.invoke(app, ["retrain", "--data", str(data), "--version", "bad-v1", "--strict"])
    assert result.exit_code == 1
    assert "ruptures.csv: line 3 overlaps line 2" in " ".join(result.output.split())
    (data / train[1].name / "metadata.json").unlink()
    result = runner.invoke(app, ["retrain", "--data", str(data), "--version", "bad-v1", "--strict"])
    assert result.exit_code == 1 and "missing metadata.json" in " ".join(result.output.split())


def test_a_fold_whose_training_clients_hold_one_label_is_a_clear_error():
    from pipeline.errors import InputError

    X = np.random.default_rng(0).standard_normal((6, 40))
    with pytest.raises(InputError, match="fold .*only 'none'"):
        cross_validate(X, np.array([0, 0, 0, 1, 2, 0]), np.array(list("aaabbb")))


def test_activating_an_unknown_model_lists_the_known_ones(tmp_path, monkeypatch):
    from models.artifact import activate_model
    from pipeline.errors import ModelArtifactError
    from pipeline.settings import Settings

    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path))
    with pytest.raises(ModelArtifactError, match="no model 'nope' .*available: none"):
        activate_model(Settings(), "nope")


# --- two generators, real rupture-free recordings, the transfer card and `evaluate` (analysis faked) ---------------

def _write_session(root, sid, client, generator, *, minutes=4.0, episodes=((40, 100, "withdrawal"),
                                                                            (140, 200, "confrontation"))):
    """A session folder in the training format with a silent 8 kHz recording (the analysis is faked)."""
    from pipeline.audio import save_wav

    folder = root / sid
    folder.mkdir(parents=True)
    samples = np.zeros(int(minutes * 60 * 8000), np.float32)
    samples[0] = (zlib.crc32(sid.encode()) % 997 + 1) / 1000  # each session its own recording: a copy is refused
    save_wav(folder / "recording.wav", samples, 8000)
    meta = {"session_id": sid, "client_id": client, "language": "nl",
            "participants": [{"role": "therapist"}, {"role": "client", "age": 10}]}
    if generator == "tts":
        meta["simulated"] = {"seed": 1}  # the first simulator's metadata: no generator key
    elif generator != "real":
        meta["simulated"] = {"generator": generator, "seed": 1}
    else:
        meta["consent"] = {"analysis": True, "research_use": True}
    (folder / "metadata.json").write_text(json.dumps(meta))
    (folder / "ruptures.csv").write_text("start_s,end_s,label\n" + "".join(f"{a},{b},{k}\n" for a, b, k in episodes))
    return folder


def _fake_session_features(session, settings, *, backends=None):
    """Per-window markers drawn from the synthetic class profiles of tests/test_models.py, by the annotated label;
    'rooms' sessions have every marker shifted by 0.4 SD. Unannotated recordings get values without noise: a file
    whose name holds 'tense' has a clear confrontation from 60 to 120 s, any other is calm (the class means)."""
    import zlib

    from models.dataset import window_labels
    from models.transfer import session_generator
    from pipeline.annotations import read_annotations
    from pipeline.audio import probe
    from pipeline.features import FEATURE_NAMES, FEATURE_UNITS
    from pipeline.types import FeatureFrame, SessionFeatures
    from tests.test_models import _PROFILE

    duration = probe(session.recording)
    starts = np.arange(0.0, duration - 30.0 + 1e-6, 10.0)
    frames = tuple(FeatureFrame(float(s), float(s) + 30.0, tuple([0.0] * len(FEATURE_NAMES)), 20.0) for s in starts)
    empty = SessionFeatures(FEATURE_NAMES, FEATURE_UNITS, frames)
    annotated = session.annotations.name == "ruptures.csv"
    if annotated:
        labels = window_labels(empty, read_annotations(session.annotations, duration_s=duration))
    else:
        labels = np.array([2 if "tense" in session.recording.name and 50 <= s <= 90 else 0 for s in starts])
    rng = np.random.default_rng(zlib.crc32(session.session_id.encode()))
    shift = 0.4 if annotated and session_generator(session.metadata) == "rooms" else 0.0
    rows = []
    for label in labels:
        row = []
        for name in FEATURE_NAMES:
            if name not in _PROFILE:
                row.append(float("nan"))
                continue
            mu, sd = _PROFILE[name][label]
            if annotated:
                row.append(float(rng.normal(mu + shift * sd, sd)))
            else:  # a clearly tense stretch: half again as far from ordinary talk as the class mean
                row.append(mu + 0.5 * (mu - _PROFILE[name][0][0]))
        rows.append(tuple(row))
    frames = tuple(FeatureFrame(f.start, f.end, r, f.speech_s) for f, r in zip(frames, rows))
    return SessionFeatures(FEATURE_NAMES, FEATURE_UNITS, frames), duration


def _small_hgb():
    return make_hgb_pipeline().set_params(classify__max_iter=15)


@pytest.fixture(scope="module")
def two_generators(tmp_path_factory):
    """Training sessions of two generators (4 clients each), held-out sessions of both and of a real clinic,
    two real rupture-free recordings, and a model trained on them, with the analysis faked."""
    from pipeline.audio import save_wav
    from pipeline.settings import Settings

    root = tmp_path_factory.mktemp("generators")
    for gen in ("tts", "rooms"):
        for c in range(4):
            _write_session(root / "train", f"{gen}-s{c}", f"{gen}-c{c}", gen)
    _write_session(root / "held-sim", "tts-h0", "tts-h", "tts")
    _write_session(root / "held-sim", "rooms-h0", "rooms-h", "rooms")
    _write_session(root / "held-real", "clinic-h0", "clinic-h", "real")
    quiet = root / "unannotated"
    (quiet / "call").mkdir(parents=True)
    save_wav(quiet / "calm.wav", np.zeros(4 * 60 * 8000, np.float32), 8000)
    save_wav(quiet / "call" / "tense.wav", np.zeros(3 * 60 * 8000, np.float32), 8000)
    (quiet / "notes.txt").write_text("not audio")
    choice = root / "choice"  # other rupture-free recordings, which take part in choosing the model kind
    choice.mkdir()
    save_wav(choice / "tense-too.wav", np.zeros(5 * 60 * 8000, np.float32), 8000)  # not a copy of a reported one
    (choice / "broken.wav").write_bytes(b"RIFF, but no audio")  # set aside, named in the card
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("models.dataset.session_features", _fake_session_features)
        mp.setattr("models.training.make_hgb_pipeline", _small_hgb)  # the comparison's wiring, in seconds
        from models.training import train

        folder = train([root / "train"], version="gen-v1", settings=Settings(data_dir=root), root=root / "models",
                       summary="Trained on simulated sessions of two generators (test fixture).",
                       unannotated_dirs=[quiet], choice_dirs=[choice],
                       extra_metrics=lambda kind, c: {"extra_seen": {"kind": kind, "c": c}},
                       progress=lambda m: (root / "progress.log").open("a").write(m + "\n"))
        yield root, folder, mp


def test_training_on_two_generators_leaves_one_generator_out_and_records_transfer(two_generators):
    root, folder, _ = two_generators
    card = json.loads((folder / "model_card.json").read_text())
    cv = card["metrics"]["cross_validation"]
    assert cv["grouped_by"] == "generator" and cv["n_splits"] == 2
    pairs = card["metrics"]["cross_generator"]["pairs"]
    assert sorted((p["train"], p["test"]) for p in pairs) == [("rooms", "tts"), ("tts", "rooms")]
    for p in pairs:
        for name in ("withdrawal", "confrontation"):
            m = p["types"][name]
            assert m["auroc"] > 0.8 and {"auprc", "recall", "precision", "brier", "threshold"} <= set(m)
            assert m["threshold"] == card["threshold"]["per_class"][name]  # at the shipped threshold
            assert m.get("confirm") == card["threshold"]["confirm"].get(name)  # and its confirmation level, if any
    assert card["threshold"]["confirm_recall"] == {"withdrawal": 0.6, "confrontation": 0.6}  # hysteresis for both
    for name, level in card["threshold"]["confirm"].items():
        assert card["threshold"]["per_class"][name] <= level < 1
    assert set(card["metrics"]["same_generator"]) == {"tts", "rooms"}
    choice = card["metrics"]["model_comparison"]
    assert choice["chosen"] in ("linear", "hgb") and set(choice["mean_cross_generator_auroc"]) == {"linear", "hgb"}
    # both kinds fitted as they would ship and scored on the recordings that choose (not those the card reports)
    by_kind = choice["false_alarms"]["by_kind"]
    assert set(by_kind) == {"linear", "hgb"} and choice["false_alarms"]["folders"] == ["<data dir>/choice"]
    assert all(v["minutes"] == 5.0 and v["flags_per_hour"] == pytest.approx(v["flags"] * 12) for v in by_kind.values())
    assert (choice["chosen"], choice["why"]) == choose_model(
        choice["mean_cross_generator_auroc"], false_alarms={k: v["flags_per_hour"] for k, v in by_kind.items()})
    # metrics measured by the caller with the kind that ships (models/ship.py: the cross-language figure)
    assert card["metrics"]["extra_seen"] == {"kind": choice["chosen"],
                                             "c": card["metrics"]["regularisation"]["chosen"]
                                             if choice["chosen"] == "linear" else None}
    reg = card["metrics"]["regularisation"]  # the linear model's C, searched on the same splits
    assert reg["grid"] == [0.01, 0.03, 0.1, 0.3] and set(reg["mean_auroc"]) == {"0.01", "0.03", "0.1", "0.3"}
    assert reg["mean_auroc"][f"{reg['chosen']:g}"] == choice["mean_cross_generator_auroc"]["linear"]
    assert f"C={reg['chosen']:g}," in choice["estimators"]["linear"]
    assert card["calibration"]["method"] == "sigmoid"  # fewer than 200 windows of a rupture type
    shift = {r["marker"]: r for r in card["metrics"]["marker_shift"]["markers"]}
    assert shift["client_speech_share"]["shift"]["tts vs rooms"]["smd"] < -0.2 and "used" in shift["silence_share"]
    fa = card["metrics"]["false_alarms"]
    assert [(f["file"], f["minutes"]) for f in fa["files"]] == [("call/tense.wav", 3.0), ("calm.wav", 4.0)]
    assert fa["files"][1]["flags"] == 0 and fa["files"][0]["flags"] >= 1
    assert fa["overall"]["flags_per_hour"] == pytest.approx(fa["overall"]["flags"] / (7 / 60), abs=0.01)


def test_recordings_that_choose_the_model_may_not_be_those_whose_false_alarms_the_card_reports(two_generators):
    from models.training import train
    from pipeline.errors import InputError
    from pipeline.settings import Settings

    root, _, _ = two_generators
    with pytest.raises(InputError, match="chooses the model is, holds or lies inside .*unannotated, which the model trains on or whose false alarms"):
        train([root / "train"], version="gen-both", settings=Settings(data_dir=root), root=root / "models",
              unannotated_dirs=[root / "unannotated"], choice_dirs=[root / "unannotated" / ".." / "unannotated"],
              progress=lambda m: None)
    assert not (root / "models" / "gen-both").exists()


@pytest.mark.parametrize("how", ["inside", "holds", "same content"])
def test_choice_recordings_that_are_the_reported_ones_under_another_path_are_refused(two_generators, how, tmp_path):
    """5 December trial: only equal paths were refused; a subfolder, a parent or a copy of the same recording went
    through, and the card said the choice used recordings its false-alarm table does not."""
    import shutil

    from models.training import train
    from pipeline.errors import InputError
    from pipeline.settings import Settings

    root, _, _ = two_generators
    reported = root / "unannotated"
    if how == "inside":
        choice = reported / "call"
    elif how == "holds":
        choice = root
    else:
        choice = tmp_path / "copies"
        choice.mkdir()
        shutil.copyfile(reported / "calm.wav", choice / "renamed.wav")
        shutil.copyfile(root / "choice" / "tense-too.wav", choice / "tense-too.wav")
    with pytest.raises(InputError, match="chooses the model|same recording as"):
        train([root / "train"], version=f"gen-{how.replace(' ', '-')}", settings=Settings(data_dir=root),
              root=root / "models", unannotated_dirs=[reported], choice_dirs=[choice], progress=lambda m: None)
    assert not (root / "models" / f"gen-{how.replace(' ', '-')}").exists()


def test_choice_recordings_may_not_be_training_sessions_repeat_each_other_or_be_unreadable(two_generators, tmp_path):
    """5 December trial: an annotated --data folder was taken as --choose-on (the choice made on the training
    sessions), a recording given twice counted twice, and a file that cannot be read gave a traceback."""
    import shutil

    from models.training import train
    from pipeline.errors import InputError
    from pipeline.settings import Settings

    root, _, _ = two_generators

    def run(choice, version):
        train([root / "train"], version=version, settings=Settings(data_dir=root), root=root / "models",
              unannotated_dirs=[root / "unannotated"], choice_dirs=choice, progress=lambda m: None)

    with pytest.raises(InputError, match="trains on or whose false alarms the card reports"):
        run([root / "train" / "tts-s0"], "gen-on-training")
    twice = tmp_path / "twice"
    twice.mkdir()
    shutil.copyfile(root / "choice" / "tense-too.wav", twice / "again.wav")
    with pytest.raises(InputError, match="again.wav: the same recording as .*tense-too.wav.*twice"):
        run([root / "choice", twice], "gen-twice")
    with pytest.raises(InputError, match="twice"):
        run([root / "choice", root / "choice"], "gen-same-folder-twice")
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    (unreadable / "m.wav").symlink_to("/proc/self/mem")  # is_file(), but reading it fails (EIO)
    with pytest.raises(InputError, match="m.wav: cannot be read"):
        run([unreadable], "gen-unreadable")
    assert not any((root / "models" / v).exists()
                   for v in ("gen-on-training", "gen-twice", "gen-same-folder-twice", "gen-unreadable"))


def test_choice_recordings_none_of_which_can_be_used_stop_training_in_one_line(two_generators, tmp_path):
    """5 December trial: a --choose-on folder of a corrupt file, a silent one or one whose consent refuses gave
    'nan flags per hour', the choice's second rule silently dropped, and a saved model (exit 0)."""
    from models.training import train
    from pipeline.errors import InputError
    from pipeline.settings import Settings

    root, _, _ = two_generators
    refused = tmp_path / "refused"
    refused.mkdir()
    (refused / "a.wav").write_bytes((root / "choice" / "tense-too.wav").read_bytes()[:44] + b"\x01" * 1000)
    (refused / "a.wav.json").write_text(json.dumps({"consent": {"analysis": False}}))
    with pytest.raises(InputError, match="refused.*no recording.*could be used.*a.wav"):
        train([root / "train"], version="gen-refused", settings=Settings(data_dir=root), root=root / "models",
              unannotated_dirs=[root / "unannotated"], choice_dirs=[refused], progress=lambda m: None)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "b.wav").write_bytes(b"RIFF not really a wave file")
    with pytest.raises(InputError, match="broken.*no recording.*could be used.*b.wav"):
        train([root / "train"], version="gen-broken", settings=Settings(data_dir=root), root=root / "models",
              unannotated_dirs=[root / "unannotated"], choice_dirs=[broken], progress=lambda m: None)
    assert not (root / "models" / "gen-refused").exists() and not (root / "models" / "gen-broken").exists()


def test_the_card_names_folders_of_the_data_directory_without_the_builders_path(two_generators):
    root, folder, _ = two_generators
    for name in ("model_card.json", "MODEL_CARD.md"):
        text = (folder / name).read_text()
        assert str(root) not in text, name
    card = json.loads((folder / "model_card.json").read_text())
    assert {f["folder"] for f in card["metrics"]["false_alarms"]["files"]} == {"<data dir>/unannotated"}


def test_model_card_headline_is_the_cross_generator_table(two_generators):
    _, folder, _ = two_generators
    lines = (folder / "MODEL_CARD.md").read_text().splitlines()
    assert lines[0] == "Trained on simulated sessions of two generators (test fixture)."
    first_table = next(i for i, line in enumerate(lines) if line.startswith("|"))
    assert "trained on → scored on" in lines[first_table] and "AUROC" in lines[first_table]
    assert "Brier" in lines[first_table] and "recall" in lines[first_table]
    assert any("tts → rooms" in line for line in lines[first_table:first_table + 8])
    heading = {name: next(i for i, line in enumerate(lines) if line.startswith("## ") and name in line)
               for name in ("Same generator", "False alarms", "Marker shift", "Model choice", "Regularisation")}
    assert first_table < heading["Same generator"] < heading["Marker shift"]
    assert heading["Same generator"] < heading["False alarms"] < heading["Marker shift"] < heading["Model choice"]
    assert heading["Model choice"] < heading["Regularisation"]
    assert sum(line.endswith("| yes |") for line in lines[heading["Regularisation"]:][:12]) == 1
    assert any(line.startswith("| call/tense.wav | 3.0 |") for line in lines)
    choosing = lines[heading["Model choice"]:heading["Regularisation"]]  # the choice's own false alarms, per kind
    assert any("<data dir>/choice" in line for line in choosing)
    assert sum(line.startswith(("| linear | 5.0 |", "| hgb | 5.0 |")) for line in choosing) == 2
    assert any(line.startswith("Set aside: broken.wav: ") for line in choosing)


def test_evaluate_prints_per_generator_per_folder_and_false_alarms(two_generators, tmp_path):
    root, folder, mp = two_generators
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["evaluate", "--model", str(folder), "--data", str(root / "held-sim"),
                                 "--data", str(root / "held-real"), "--by-generator",
                                 "--unannotated", str(root / "unannotated"), "--json", str(out)])
    assert result.exit_code == 0, result.output
    text = result.output
    for word in ("AUROC", "AUPRC", "recall", "precis", "Brier", "Calibration", "generator tts", "generator rooms",
                 "generator real", "held-sim", "held-real", "calm.wav", "call/tense.wav", "flags per hour"):
        assert word in text, word
    data = json.loads(out.read_text())
    for name in ("withdrawal", "confrontation"):  # the keys scripts read stay where they were
        assert {"auroc", "recall", "precision", "auprc", "brier", "calibration"} <= set(data["types"][name])
    assert set(data["by_generator"]) == {"tts", "rooms", "real"}
    assert data["by_generator"]["real"]["n_sessions"] == 1
    assert set(data["by_folder"]) == {str(root / "held-sim"), str(root / "held-real")}
    assert data["false_alarms"]["overall"]["minutes"] == 7.0
    # the same flags as the card's false-alarm table (same model, same recordings)
    card = json.loads((folder / "model_card.json").read_text())
    assert data["false_alarms"]["files"] == [{**f, "folder": str(root / "unannotated")}  # the card: "<data dir>/"
                                             for f in card["metrics"]["false_alarms"]["files"]]


def test_held_out_sessions_of_both_generators_are_found_at_the_shipped_thresholds(two_generators, tmp_path):
    """The card's thresholds are on the shipped model's own probability scale.

    Chosen on each cross-validation fold's own calibrated probabilities (each fold's calibrator saw one generator
    only), they sat where the shipped model's withdrawal probabilities never came: held-out withdrawal recall 0.00.
    """
    root, folder, _ = two_generators
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["evaluate", "--model", str(folder), "--data", str(root / "held-sim"),
                                 "--json", str(out)])
    assert result.exit_code == 0, result.output
    types = json.loads(out.read_text())["types"]
    for name in ("withdrawal", "confrontation"):
        assert types[name]["auroc"] > 0.9, (name, types[name])
        assert types[name]["recall"] >= 0.6, (name, types[name])
    card = json.loads((folder / "model_card.json").read_text())
    for pair in card["metrics"]["cross_generator"]["pairs"]:  # the headline table is on the same scale
        for name in ("withdrawal", "confrontation"):
            assert pair["types"][name]["recall"] >= 0.6, (pair["train"], pair["test"], name, pair["types"][name])


def test_evaluate_with_only_unannotated_recordings_and_errors_name_the_folder(two_generators, tmp_path):
    root, folder, _ = two_generators
    result = runner.invoke(app, ["evaluate", "--model", str(folder), "--unannotated", str(root / "unannotated")])
    assert result.exit_code == 0, result.output
    assert "tense.wav" in result.output and "AUROC" not in result.output
    result = runner.invoke(app, ["evaluate", "--model", str(folder)])
    assert result.exit_code == 2 and "--data or --unannotated" in result.output
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["evaluate", "--model", str(folder), "--unannotated", str(tmp_path / "empty")])
    assert result.exit_code == 1 and "empty: no audio file" in " ".join(result.output.split())
    # every recording set aside: nothing was evaluated, so not a success (fresh-user trial, 5 December)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "zero.wav").write_bytes(b"")
    (tmp_path / "broken" / "text.wav").write_text("not audio")
    result = runner.invoke(app, ["evaluate", "--model", str(folder), "--unannotated", str(tmp_path / "broken")])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "zero.wav: set aside" in text
    assert "--unannotated: no recording could be analysed" in text
    # a file given as a folder says so (trial)
    result = runner.invoke(app, ["evaluate", "--model", str(folder), "--data", str(tmp_path / "broken" / "text.wav")])
    assert result.exit_code == 1 and "text.wav: a file, not a dataset folder" in " ".join(result.output.split())
    result = runner.invoke(app, ["evaluate", "--model", str(folder), "--unannotated",
                                 str(tmp_path / "broken" / "text.wav")])
    assert result.exit_code == 1 and "text.wav: a file, not a folder" in " ".join(result.output.split())


@pytest.mark.slow
def test_retrain_prints_the_cross_generator_table_and_the_false_alarms(prefect_harness, two_generators):
    root, _, _ = two_generators  # the fixture's fakes stay in place for the module
    result = runner.invoke(app, ["retrain", "--data", str(root / "train"), "--holdout", str(root / "held-sim"),
                                 "--unannotated", str(root / "unannotated"), "--version", "gen-cli-v1"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "Cross-validation leaving one generator out (2 folds)" in text
    assert "tts → rooms" in text and "rooms → tts" in text and "Chosen: linear" in text
    assert "generator rooms (1 session of 1 client)" in text and "call/tense.wav" in text
    result = runner.invoke(app, ["retrain", "--data", str(root / "train"), "--unannotated", str(root / "nope"),
                                 "--version", "gen-cli-v2"])
    assert result.exit_code == 1 and "nope: folder of unannotated recordings not found" in " ".join(result.output.split())
    result = runner.invoke(app, ["retrain", "--data", str(root / "train"), "--unannotated", str(root / "unannotated"),
                                 "--choose-on", str(root / "choice"), "--version", "gen-cli-v3"])
    assert result.exit_code == 0, result.output
    assert "Flags per hour on the real rupture-free recordings that help choose" in " ".join(result.output.split())
    made = Path(next(line for line in result.output.splitlines() if line.startswith("Model: "))[7:].strip())
    card = json.loads((made / "model_card.json").read_text())
    assert set(card["metrics"]["model_comparison"]["false_alarms"]["by_kind"]) == {"linear", "hgb"}
    result = runner.invoke(app, ["retrain", "--data", str(root / "train"), "--unannotated", str(root / "unannotated"),
                                 "--choose-on", str(root / "unannotated"), "--version", "gen-cli-v4"])
    assert result.exit_code == 2 and "--choose-on:" in result.output and "chooses the model is, holds or lies inside" \
        in " ".join(result.output.split())
    for bad, why in ((root / "nope", "not found"), (root / "choice" / "tense-too.wav", "a file, not a folder")):
        result = runner.invoke(app, ["retrain", "--data", str(root / "train"), "--choose-on", str(bad),
                                     "--version", "gen-cli-v5"])
        assert result.exit_code == 1 and f"--choose-on {bad}: {why}" in " ".join(result.output.split())


def test_a_model_trained_on_few_clients_says_its_figures_are_not_to_be_trusted_yet(two_generators):
    """8 clients and under 50 windows of a rupture type: the card and the run both say so, first of its limits."""
    root, folder, _ = two_generators
    card = json.loads((folder / "model_card.json").read_text())
    note = card["limitations"].split(". ")[0]
    assert note.startswith("Trained on 8 clients") and "too few" in note
    assert note in (root / "progress.log").read_text()
    known = (folder / "MODEL_CARD.md").read_text().split("## Known limits", 1)[1]
    assert known.strip().startswith("Trained on 8 clients")


def test_a_target_recall_below_the_confirmation_recall_trains_without_a_confirmation_level(two_generators):
    """5 December trial: `alliance retrain --target-recall 0.5` (the option allows 0.05-1) failed with a ValueError
    and two tracebacks, because the confrontation confirmation level asks for 60 % recall. A confirmation level at
    or above the target recall would sit at the threshold and change nothing, so the card then has none."""
    from pipeline.settings import Settings

    from models.training import train

    root, _, _ = two_generators
    folder = train([root / "train"], version="gen-low", settings=Settings(data_dir=root), root=root / "models",
                   target_recall=0.5, c_grid=(), kinds=("linear",), progress=lambda m: None)
    card = json.loads((folder / "model_card.json").read_text())
    assert card["threshold"]["target_recall"] == 0.5 and "confirm" not in card["threshold"]
    with pytest.raises(ValueError, match="confirm_recall"):
        train([root / "train"], version="gen-bad", settings=Settings(data_dir=root), root=root / "models",
              confirm_recall={"anger": 0.5}, progress=lambda m: None)


def test_evaluate_scores_the_false_alarms_at_the_models_own_thresholds_like_the_annotated_sessions(two_generators):
    """5 December trial: with ALLIANCE_MODEL__FLAG_THRESHOLD=0.07 one `alliance evaluate` run scored the annotated
    sessions at the model's thresholds but the recordings without ruptures at 0.07, and said so in two tables side
    by side. Both parts now read the model's own thresholds (the setting is for the clinic's flags)."""
    from pipeline.settings import Settings

    from models.training import evaluate

    root, folder, _ = two_generators
    card = json.loads((folder / "model_card.json").read_text())
    settings = Settings(data_dir=root, model={"flag_threshold": 0.07})
    result = evaluate(folder, [root / "held-sim"], settings, unannotated_dirs=[root / "unannotated"],
                      progress=lambda m: None)
    assert result["false_alarms"]["thresholds"] == card["threshold"]["per_class"]
    assert result["types"]["withdrawal"]["threshold"] == card["threshold"]["per_class"]["withdrawal"]


def test_the_card_says_how_the_training_sessions_were_analysed(two_generators):
    """What found the speech and what told the voices apart: the report compares them with the session's own."""
    _, folder, _ = two_generators
    card = json.loads((folder / "model_card.json").read_text())
    assert card["analysis"] == {"vad_method": "silero", "speaker_encoder": "resemblyzer"}
    assert "speech found by Silero" in (folder / "MODEL_CARD.md").read_text()


def _with_bad_sessions(src, dst):
    """A copy of the dataset ``src`` with a session whose recording is not audio and one without research consent."""
    import shutil

    shutil.copytree(src, dst)
    broken = _write_session(dst, "broken-s", "broken-c", "tts")
    (broken / "recording.wav").write_bytes(b"RIFF, but no audio")
    refused = _write_session(dst, "refused-s", "refused-c", "real")
    meta = json.loads((refused / "metadata.json").read_text())
    (refused / "metadata.json").write_text(json.dumps({**meta, "consent": {"analysis": True, "research_use": False}}))
    return dst


def test_evaluate_sets_a_bad_session_aside_in_one_line_and_scores_the_rest(two_generators, tmp_path):
    """The guide: bad input never stops the rest of a batch. `evaluate` stopped at the first bad session of a
    dataset (stop 42's note); it now names each one it sets aside and scores the others; --strict stops as before."""
    root, folder, mp = two_generators
    held = _with_bad_sessions(root / "held-sim", tmp_path / "held")
    seen = []
    mp.setattr("models.dataset.session_features",
               lambda s, settings, **k: seen.append(s.session_id) or _fake_session_features(s, settings, **k))
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["evaluate", "--model", str(folder), "--data", str(held), "--json", str(out)])
    mp.setattr("models.dataset.session_features", _fake_session_features)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("set aside broken-s:") and "recording.wav" in line for line in lines), lines
    assert any(line.startswith("set aside refused-s:") and "research use" in line for line in lines), lines
    assert "refused-s" not in seen and "broken-s" not in seen  # neither was analysed
    assert "AUROC" in result.output and "2 sessions set aside (named above)" in " ".join(result.output.split())
    data = json.loads(out.read_text())
    assert data["n_sessions"] == 2 and {s["session"] for s in data["skipped"]} == {"broken-s", "refused-s"}
    result = runner.invoke(app, ["evaluate", "--model", str(folder), "--data", str(held), "--strict"])
    assert result.exit_code == 1 and "AUROC" not in result.output
    assert "broken-s" in result.output or "refused-s" in result.output


def test_training_sets_a_bad_session_aside_and_the_card_names_it(two_generators, tmp_path):
    from models.training import format_card_figures, train
    from pipeline.settings import Settings

    root, _, _ = two_generators
    data = _with_bad_sessions(root / "train", tmp_path / "train")
    folder = train([data], version="aside-v1", settings=Settings(data_dir=root), root=tmp_path / "models",
                   kinds=("linear",), c_grid=(), progress=lambda m: None)
    card = json.loads((folder / "model_card.json").read_text())
    assert {s["session"] for s in card["skipped_sessions"]} == {"broken-s", "refused-s"}
    assert "8 sessions" in card["training_data"]
    text = format_card_figures(card)
    assert "Set aside, not trained on (2 sessions):" in text and "broken-s" in text
    md = (folder / "MODEL_CARD.md").read_text()
    assert "Set aside, not trained on: " in md and "broken-s: recording.wav" in md and "refused-s: " in md
    from models.artifact import load_model

    assert load_model(folder).version == "aside-v1"  # the card with its new key loads
    with pytest.raises(Exception, match="broken-s|refused-s"):
        train([data], version="aside-v2", settings=Settings(data_dir=root), root=tmp_path / "models",
              kinds=("linear",), c_grid=(), progress=lambda m: None, strict=True)
