"""Classifier artifacts: the shipped bootstrap model, the loader's checks, flags and their reasons."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from models.artifact import CARD_FILE, CARD_MD_FILE, load_model, newest_artifact, save_model
from models.bootstrap import _PROFILE, BOOTSTRAP_FEATURES, make_pipeline, synthetic_windows
from models.flagging import flag_windows
from pipeline.errors import ModelArtifactError
from pipeline.features import FEATURE_NAMES, FEATURE_UNITS
from pipeline.types import FeatureFrame, SessionFeatures


@pytest.fixture(scope="module")
def bundle():
    from models.artifact import ARTIFACTS_DIR

    return load_model(ARTIFACTS_DIR / "bootstrap-v1")


def test_shipped_model_loads_with_a_card_that_says_what_it_was_trained_on(bundle):
    assert bundle.version == "bootstrap-v1"
    assert bundle.feature_names == BOOTSTRAP_FEATURES and set(BOOTSTRAP_FEATURES) <= set(FEATURE_NAMES)
    first_line = (bundle.path / CARD_MD_FILE).read_text().splitlines()[0]
    assert first_line.startswith("Trained on synthetic feature windows")
    assert "not a diagnosis" not in first_line  # the intended use is stated in its own section
    assert "never diagnoses" in bundle.card["intended_use"]


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
    with pytest.raises(ModelArtifactError, match="no classifier artifact found"):
        newest_artifact(tmp_path)


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
    """A full FEATURE_NAMES row: the class mean for the bootstrap's markers, NaN for the others."""
    return [_PROFILE[name][label][0] if name in _PROFILE else float("nan") for name in FEATURE_NAMES]


def test_withdrawal_like_window_is_flagged_with_reasons(bundle):
    ordinary, withdrawn = _profile_row(0), _profile_row(1)
    flags = flag_windows(_features(ordinary, ordinary, ordinary, withdrawn), bundle)
    assert [f.marker_type for f in flags] == ["withdrawal"]
    f = flags[0]
    assert (f.start, f.end) == (30.0, 60.0)
    assert f.probability >= bundle.threshold and f.model_version == "bootstrap-v1"
    assert 1 <= len(f.reasons) <= 3
    assert any(char.isdigit() for char in " ".join(f.reasons))


def test_confrontation_like_windows_merge_into_one_flag(bundle):
    ordinary, confront = _profile_row(0), _profile_row(2)
    flags = flag_windows(_features(confront, confront, ordinary, ordinary, ordinary), bundle)
    assert [(f.marker_type, f.start, f.end) for f in flags] == [("confrontation", 0.0, 40.0)]


def test_ordinary_session_has_no_flags(bundle):
    assert flag_windows(_features(_profile_row(0), _profile_row(0)), bundle) == ()
    assert flag_windows(_features(), bundle) == ()


def test_no_single_marker_separates_the_bootstrap_classes_but_the_model_does(bundle):
    from sklearn.metrics import roc_auc_score

    X, y = synthetic_windows(400, seed=11)
    for k in (1, 2):
        mask = (y == 0) | (y == k)
        for j, name in enumerate(BOOTSTRAP_FEATURES):
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


def test_every_marker_has_a_plain_language_reason_with_its_value():
    from models.flagging import _REASON

    assert set(_REASON) == set(FEATURE_NAMES)
    for name, sentence in _REASON.items():
        text = sentence(3.0)
        assert "3" in text and "_" not in text, (name, text)  # the value, in words, no marker names
