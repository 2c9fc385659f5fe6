"""Classifier artifacts: the shipped default model, the loader's checks, flags and their reasons."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from models.artifact import (ARTIFACTS_DIR, CARD_FILE, CARD_MD_FILE, DEFAULT_FILE, default_artifact, load_model,
                             save_model)
from models.flagging import flag_windows
from models.training import make_pipeline
from pipeline.errors import ModelArtifactError
from pipeline.features import FEATURE_NAMES, FEATURE_UNITS
from pipeline.types import FeatureFrame, SessionFeatures

# Synthetic feature windows (no audio) drawn from hand-set class profiles that encode the 3RS descriptions of
# ruptures (Eubanks, Muran & Safran 2015): withdrawal = less, later, quieter and flatter client speech and more
# therapist questions; confrontation = overlaps, a client holding the floor, fast, loud and high answers.
# mean and sd per class (none, withdrawal, confrontation); the synthetic model reads these 14 markers only.
_PROFILE: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "client_speech_share": ((0.40, 0.13), (0.22, 0.11), (0.52, 0.13)),
    "silence_share": ((0.25, 0.11), (0.42, 0.14), (0.17, 0.09)),
    "longest_silence_s": ((3.0, 1.8), (6.0, 3.0), (2.2, 1.2)),
    "mean_gap_s": ((0.6, 0.35), (1.4, 0.8), (0.35, 0.25)),
    "client_response_latency_s": ((0.8, 0.5), (2.5, 1.2), (0.2, 0.4)),
    "overlap_rate_per_min": ((1.0, 0.9), (0.5, 0.5), (3.0, 1.6)),
    "client_turns_per_min": ((4.0, 1.5), (3.0, 1.5), (5.0, 1.5)),
    "client_mean_turn_s": ((4.0, 2.2), (1.8, 1.2), (4.5, 2.2)),
    "client_words_per_utterance": ((8.0, 4.5), (3.0, 2.0), (9.0, 4.5)),
    "therapist_question_rate_per_min": ((2.0, 1.2), (4.0, 1.8), (1.6, 1.1)),
    "client_minimal_response_share": ((0.25, 0.18), (0.55, 0.25), (0.18, 0.16)),
    "client_f0_z": ((0.0, 0.7), (-0.4, 0.6), (1.0, 0.7)),
    "client_f0_range_z": ((0.0, 0.7), (-0.8, 0.6), (0.7, 0.7)),
    "client_intensity_z": ((0.0, 0.7), (-0.8, 0.6), (1.1, 0.7)),
}
SYNTHETIC_FEATURES = tuple(_PROFILE)  # the synthetic model's column order
_BOUNDS = {"client_speech_share": (0, 1), "silence_share": (0, 1), "client_minimal_response_share": (0, 1)}


def synthetic_windows(n_per_class: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labelled windows, shape (3 * n_per_class, 14) in ``SYNTHETIC_FEATURES`` order, y 0 none, 1 withdrawal,
    2 confrontation; about 10 % of the latencies are NaN (no therapist → client change)."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for label in range(3):
        cols = []
        for name in SYNTHETIC_FEATURES:
            mu, sd = _PROFILE[name][label]
            lo, hi = _BOUNDS.get(name, (0.0 if not name.endswith("_z") else -np.inf, np.inf))
            cols.append(np.clip(rng.normal(mu, sd, n_per_class), lo, hi))
        x = np.column_stack(cols)
        x[rng.random(n_per_class) < 0.1, SYNTHETIC_FEATURES.index("client_response_latency_s")] = np.nan
        xs.append(x)
        ys.append(np.full(n_per_class, label))
    return np.vstack(xs), np.concatenate(ys)


@pytest.fixture(scope="module")
def shipped():
    return load_model()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A model trained on synthetic windows, saved and loaded like any artifact."""
    X, y = synthetic_windows(1500, seed=20261129)
    card = {"summary": "Trained on synthetic feature windows (test fixture).", "version": "synthetic-test",
            "feature_names": list(SYNTHETIC_FEATURES),
            "feature_units": [FEATURE_UNITS[FEATURE_NAMES.index(n)] for n in SYNTHETIC_FEATURES],
            "threshold": {"value": 0.5, "why": "neutral default"}}
    return load_model(save_model(make_pipeline().fit(X, y), card, root=tmp_path_factory.mktemp("artifacts")))


def test_shipped_model_loads_with_a_card_that_says_what_it_was_trained_on(shipped):
    assert shipped.version == (ARTIFACTS_DIR / DEFAULT_FILE).read_text().strip() == "sim-v6"
    assert set(shipped.feature_names) <= set(FEATURE_NAMES)
    first_line = (shipped.path / CARD_MD_FILE).read_text().splitlines()[0]
    assert first_line.startswith("Trained on simulated sessions")
    assert "not a diagnosis" not in first_line  # the intended use is stated in its own section
    assert "never diagnoses" in shipped.card["intended_use"]


def test_the_default_model_is_pinned_by_name_not_by_date(tmp_path):
    for name, created_at in (("a-v1", "2030-01-01T00:00:00+00:00"), ("b-v1", "2020-01-01T00:00:00+00:00")):
        (tmp_path / name).mkdir()
        (tmp_path / name / CARD_FILE).write_text(json.dumps({"created_at": created_at}))
    with pytest.raises(ModelArtifactError, match="no default classifier named"):
        default_artifact(tmp_path)
    (tmp_path / DEFAULT_FILE).write_text("b-v1\n")
    assert default_artifact(tmp_path) == tmp_path / "b-v1"
    (tmp_path / DEFAULT_FILE).write_text("gone-v1\n")
    with pytest.raises(ModelArtifactError, match="'gone-v1'.*available: a-v1, b-v1"):
        default_artifact(tmp_path)


def _copy(bundle, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(bundle.path, dst)
    return dst


def test_loader_refuses_other_features(bundle, tmp_path):
    dst = _copy(bundle, tmp_path)
    card = json.loads((dst / CARD_FILE).read_text())
    card["feature_names"] = card["feature_names"][:-1] + ["old_marker"]
    (dst / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelArtifactError, match="features do not match.*old_marker"):
        load_model(dst)
    card["feature_names"] = []
    (dst / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelArtifactError, match="features do not match"):
        load_model(dst)


def test_loader_refuses_another_scikit_learn_version(bundle, tmp_path):
    dst = _copy(bundle, tmp_path)
    card = json.loads((dst / CARD_FILE).read_text())
    card["library_versions"]["scikit-learn"] = "0.24.2"
    (dst / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelArtifactError, match="saved with scikit-learn 0.24.2"):
        load_model(dst)


def test_loader_refuses_a_folder_without_a_model(tmp_path):
    with pytest.raises(ModelArtifactError, match="not a classifier artifact"):
        load_model(tmp_path)


def test_artifacts_are_never_overwritten(bundle, tmp_path):
    X, y = synthetic_windows(30, seed=3)
    card = {**bundle.card, "version": "v-test"}
    folder = save_model(make_pipeline().fit(X, y), card, root=tmp_path)
    assert load_model(folder).version == "v-test"
    with pytest.raises(ModelArtifactError, match="already exists"):
        save_model(make_pipeline().fit(X, y), card, root=tmp_path)


def _features(*rows):
    frames = tuple(FeatureFrame(i * 10.0, i * 10.0 + 30.0, tuple(r), 20.0) for i, r in enumerate(rows))
    return SessionFeatures(FEATURE_NAMES, FEATURE_UNITS, frames)


def _profile_row(label):
    """A full FEATURE_NAMES row: the class mean for the synthetic model's markers, NaN for the others."""
    return [_PROFILE[name][label][0] if name in _PROFILE else float("nan") for name in FEATURE_NAMES]


def test_withdrawal_like_window_is_flagged_with_reasons(bundle):
    ordinary, withdrawn = _profile_row(0), _profile_row(1)
    flags = flag_windows(_features(ordinary, ordinary, ordinary, withdrawn), bundle)
    assert [f.marker_type for f in flags] == ["withdrawal"]
    f = flags[0]
    assert (f.start, f.end) == (30.0, 60.0)
    assert f.probability >= bundle.threshold and f.model_version == "synthetic-test"
    assert 1 <= len(f.reasons) <= 3
    assert any(char.isdigit() for char in " ".join(f.reasons))


def test_confrontation_like_windows_merge_into_one_flag(bundle):
    ordinary, confront = _profile_row(0), _profile_row(2)
    flags = flag_windows(_features(confront, confront, ordinary, ordinary, ordinary), bundle)
    assert [(f.marker_type, f.start, f.end) for f in flags] == [("confrontation", 0.0, 40.0)]


def test_ordinary_session_has_no_flags(bundle):
    assert flag_windows(_features(_profile_row(0), _profile_row(0)), bundle) == ()
    assert flag_windows(_features(), bundle) == ()


def test_no_single_marker_separates_the_synthetic_classes_but_the_model_does(bundle):
    from sklearn.metrics import roc_auc_score

    X, y = synthetic_windows(400, seed=11)
    for k in (1, 2):
        mask = (y == 0) | (y == k)
        for j, name in enumerate(SYNTHETIC_FEATURES):
            col = np.nan_to_num(X[mask, j], nan=np.nanmedian(X[:, j]))
            auc = roc_auc_score(y[mask] == k, col)
            assert max(auc, 1 - auc) < 0.95, (k, name, auc)
        model_auc = roc_auc_score(y[mask] == k, bundle.estimator.predict_proba(X[mask])[:, k])
        assert model_auc > 0.97, (k, model_auc)


def test_windows_without_enough_speech_are_never_flagged(bundle):
    withdrawn = _profile_row(1)
    silent = SessionFeatures(FEATURE_NAMES, FEATURE_UNITS, (FeatureFrame(0.0, 30.0, tuple(withdrawn), 1.0),))
    assert flag_windows(silent, bundle) == ()
    assert len(flag_windows(silent, bundle, min_speech_s=0.5)) == 1


def test_every_marker_has_a_plain_language_reason_with_its_value_in_both_languages():
    from models.flagging import reason_sentence

    for name in FEATURE_NAMES:
        for language in ("nl", "en"):
            text = reason_sentence(name, 3.0, 1.0, language)
            assert "3" in text and "_" not in text, (name, language, text)  # the value, in words, no code names


def test_every_marker_of_the_shipped_model_has_a_reason_sentence():
    from models.artifact import load_model
    from models.flagging import reason_sentence

    shipped = load_model()
    assert shipped.feature_names
    for name in shipped.feature_names:
        assert name not in reason_sentence(name, 2.0, 1.0, "nl")


def test_a_reason_never_points_the_other_way(bundle):
    from models.flagging import DIRECTION, reason_facts, reason_sentence

    def explain_window(bundle, x, k, *, usual, language):
        facts, resembles = reason_facts(bundle, x, k, usual=usual)
        return tuple(reason_sentence(f.marker, f.value, f.usual, language) for f in facts), resembles

    k = 1  # withdrawal
    names = list(bundle.feature_names)
    x = np.array(_profile_row(1))[bundle.columns()]
    # the client's usual values: this same window, so no marker departs from them; only z-scores (already
    # relative to the client's session) can still be reasons, and only in withdrawal's direction (lower)
    reasons, _ = explain_window(bundle, x, k, usual=x.copy(), language="en")
    assert all("than elsewhere in this session" in r for r in reasons)
    assert not any(w in r for r in reasons for w in ("louder", "faster", "livelier", "more aroused"))
    # usual values that the window departs from in withdrawal's direction for every marker that has one
    usual = np.array([v - DIRECTION["withdrawal"].get(n, 0) * (abs(v) + 1.0) if np.isfinite(v) else v
                      for n, v in zip(names, x)])
    reasons, resembles = explain_window(bundle, x, k, usual=usual, language="nl")
    assert 1 <= len(reasons) <= 3 and set(resembles) <= {"avoidance", "minimal_response"}
    assert all("rest van de sessie" in r or "elders" in r for r in reasons)
    # and the mirror image: every such marker now points toward the client's ordinary talk
    usual = np.array([v + DIRECTION["withdrawal"].get(n, 0) * (abs(v) + 1.0) if np.isfinite(v) else v
                      for n, v in zip(names, x)])
    reasons, _ = explain_window(bundle, x, k, usual=usual, language="en")
    assert all("than elsewhere in this session" in r for r in reasons)  # only z-scores can remain


@pytest.mark.parametrize("kind", ["linear", pytest.param("hgb", marks=pytest.mark.slow)])
def test_a_calibrated_model_saves_loads_and_explains_its_flags(kind, tmp_path, monkeypatch):
    from models import training
    from models.training import fit_calibrated

    small = training.make_hgb_pipeline().set_params(classify__max_iter=40)  # the artifact's path, in seconds
    monkeypatch.setattr(training, "make_hgb_pipeline", lambda: small)

    X, y = synthetic_windows(300, seed=5)
    groups = np.array([f"c{i % 6}" for i in range(y.size)])
    card = {"summary": "Trained on synthetic feature windows (test fixture).", "version": f"calibrated-{kind}",
            "feature_names": list(SYNTHETIC_FEATURES),
            "feature_units": [FEATURE_UNITS[FEATURE_NAMES.index(n)] for n in SYNTHETIC_FEATURES],
            "threshold": {"value": 0.5, "per_class": {"withdrawal": 0.5, "confrontation": 0.5}, "why": "test"}}
    loaded = load_model(save_model(fit_calibrated(kind, X, y, groups, None), card, root=tmp_path))
    assert type(loaded.estimator).__name__ == "CalibratedClassifierCV"  # one scikit-learn object, skops-checked
    ordinary, withdrawn = _profile_row(0), _profile_row(1)
    flags = flag_windows(_features(ordinary, ordinary, ordinary, withdrawn), loaded)
    assert [f.marker_type for f in flags] == ["withdrawal"]
    assert 1 <= len(flags[0].reasons) <= 3 and any(c.isdigit() for c in " ".join(flags[0].reasons))
    assert flag_windows(_features(ordinary, ordinary), loaded) == ()
