"""A damaged or altered model folder is refused in one line that names it (fresh-user trial, issue 15)."""

from __future__ import annotations

import json
import shutil

import pytest

from models.artifact import ARTIFACTS_DIR, load_model
from pipeline.errors import ModelArtifactError

SHIPPED = ARTIFACTS_DIR / (ARTIFACTS_DIR / "DEFAULT").read_text().strip()


@pytest.fixture
def copy(tmp_path):
    out = tmp_path / "copied-model"
    shutil.copytree(SHIPPED, out)
    return out


def test_a_truncated_model_file_is_refused_in_one_line(copy):
    data = (copy / "model.skops").read_bytes()
    (copy / "model.skops").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelArtifactError, match="copied-model: model.skops cannot be read"):
        load_model(copy)


def test_a_card_that_is_not_json_is_refused_in_one_line(copy):
    (copy / "model_card.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelArtifactError, match="copied-model: model_card.json is not valid JSON"):
        load_model(copy)


@pytest.mark.parametrize("threshold", [{"value": 0.5, "per_class": {"withdrawal": -5, "confrontation": 0.4}},
                                       {"value": 1.5}, 0.4, {"value": "high"}])
def test_a_card_whose_thresholds_are_not_probabilities_is_refused(copy, threshold):
    card = json.loads((copy / "model_card.json").read_text())
    card["threshold"] = threshold
    (copy / "model_card.json").write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(ModelArtifactError, match="copied-model: model_card.json: threshold"):
        load_model(copy)


def test_the_shipped_model_still_loads():
    assert 0 < load_model(SHIPPED).class_threshold(1) < 1


@pytest.mark.parametrize("field, value, said", [
    ("context", {"windows": 0}, "context.windows must be a positive odd whole number"),
    ("context", {"windows": 10**9}, "context.windows must be a positive odd whole number"),
    ("context", {"windows": "five"}, "context.windows must be a positive odd whole number"),
    ("context", [5], "context.windows must be a positive odd whole number"),
    ("version", None, "version must be a model name"),
    ("version", 7, "version must be a model name"),
    ("feature_names", None, "feature_names must be a list of marker names"),
    ("feature_names", 5, "feature_names must be a list of marker names"),
    ("library_versions", "x", "library_versions must be an object"),  # named AttributeError (5 December trial)
])
def test_a_card_with_a_bad_field_is_refused_in_one_line_naming_it(copy, field, value, said):
    """These cards loaded, and `alliance analyze` then ran the whole analysis to fail with a traceback at the
    report (fresh-user trial)."""
    card = json.loads((copy / "model_card.json").read_text())
    if value is None:
        card.pop(field)
    else:
        card[field] = value
    (copy / "model_card.json").write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(ModelArtifactError, match=f"copied-model: model_card.json: {said}"):
        load_model(copy)


def test_a_repeated_marker_and_a_wrong_input_setting_are_named(copy):
    card = json.loads((copy / "model_card.json").read_text())
    first = card["feature_names"][0]
    (copy / "model_card.json").write_text(json.dumps({**card, "feature_names": [first] + card["feature_names"]}))
    with pytest.raises(ModelArtifactError, match=f"repeated \\['{first}'\\]"):
        load_model(copy)
    (copy / "model_card.json").write_text(json.dumps({**card, "inputs": {"session_baseline": False}}))
    with pytest.raises(ModelArtifactError, match="inputs.session_baseline"):
        load_model(copy)


@pytest.mark.parametrize("shipped", sorted(p.name for p in ARTIFACTS_DIR.iterdir() if p.is_dir()))
def test_a_card_whose_markers_were_reordered_or_swapped_is_refused(tmp_path, shipped):
    """Two marker names swapped in the card loaded silently, and the model then read each marker as the other
    (4 December trial): the card binds its marker list and inputs to the model file it was saved with."""
    copy = tmp_path / "copied-model"
    shutil.copytree(ARTIFACTS_DIR / shipped, copy)
    card = json.loads((copy / "model_card.json").read_text())
    names = card["feature_names"]
    names[0], names[1] = names[1], names[0]
    (copy / "model_card.json").write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(ModelArtifactError, match="copied-model: model_card.json: its markers or inputs do not "
                                                 "belong to model.skops"):
        load_model(copy)


def test_a_card_taken_from_another_model_is_refused(tmp_path):
    copy = tmp_path / "copied-model"
    shutil.copytree(ARTIFACTS_DIR / "sim-v3", copy)
    shutil.copy(ARTIFACTS_DIR / "sim-v4" / "model.skops", copy / "model.skops")
    with pytest.raises(ModelArtifactError, match="copied-model: "):
        load_model(copy)


def test_training_without_a_window_free_of_rupture_is_refused_in_one_line():
    """5 December trial: sessions annotated from start to end ran the whole cross-validation and then failed with
    an IndexError; a model without the class 'none' could not be loaded anyway."""
    import numpy as np

    from models.training import cross_validate
    from pipeline.errors import InputError

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5))
    y = np.array([1, 2] * 20)
    groups = np.repeat([f"c-{i}" for i in range(8)], 5)
    with pytest.raises(InputError, match="no window is without rupture"):
        cross_validate(X, y, groups)


def test_a_recent_card_without_its_binding_digest_is_refused(copy):
    """Trial, 5 December: deleting model_binding_sha256 from a card switched the binding check off, so a card with
    its markers rotated loaded and the model read each marker as another. Only cards saved before the digest
    existed (5 December 2026) may lack it."""
    card = json.loads((copy / "model_card.json").read_text())
    del card["model_binding_sha256"]
    card["feature_names"] = card["feature_names"][1:] + card["feature_names"][:1]
    (copy / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ModelArtifactError, match="copied-model: model_card.json: has no model_binding_sha256"):
        load_model(copy)
    for created in (None, "not a date"):
        changed = {k: v for k, v in card.items() if k != "created_at"}
        if created is not None:
            changed["created_at"] = created
        (copy / "model_card.json").write_text(json.dumps(changed))
        with pytest.raises(ModelArtifactError, match="has no model_binding_sha256"):
            load_model(copy)
    older = dict(card, created_at="2026-12-03T17:00:55+00:00", version="clinic-old", feature_names=json.loads(
        (SHIPPED / "model_card.json").read_text())["feature_names"])
    (copy / "model_card.json").write_text(json.dumps(older))
    assert load_model(copy).threshold  # a card from before the digest loads as before


def test_a_model_that_takes_a_shipped_models_name_is_refused(tmp_path, copy):
    """Trial, 5 December: a retrained model whose card was edited to say "sim-v6" was activated, and its reports
    said "model sim-v6" while clinic-v1's thresholds were in force. A copy of the shipped model itself still loads."""
    assert load_model(copy).version == SHIPPED.name  # a true copy: the same model file and markers
    other = tmp_path / "evil"
    shutil.copytree(ARTIFACTS_DIR / "sim-v5", other)  # another model...
    card = json.loads((other / "model_card.json").read_text())
    card["version"] = SHIPPED.name  # ...that says it is the shipped one
    (other / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ModelArtifactError, match=f"evil: {'model_card.json'}: says it is the shipped model "
                                                 f"{SHIPPED.name}, but it is another model"):
        load_model(other)
    card["version"] = SHIPPED.name.upper()  # second trial: "SIM-V6" passed for sim-v6 in reports
    (other / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ModelArtifactError, match=f"says it is the shipped model {SHIPPED.name.upper()}"):
        load_model(other)


def test_a_missing_folder_or_a_model_file_that_is_a_device_is_said_as_such(tmp_path, copy):
    """Second trial, 5 December: a missing folder, and a model.skops linked to /dev/zero or a card that is a pipe,
    all said "not a classifier artifact (expected model.skops and model_card.json)" though both names were there."""
    import os

    with pytest.raises(ModelArtifactError, match="gone: the model folder does not exist"):
        load_model(tmp_path / "gone")
    (copy / "model.skops").unlink()
    os.symlink("/dev/zero", copy / "model.skops")
    with pytest.raises(ModelArtifactError, match="model.skops is not a regular file"):
        load_model(copy)
    os.unlink(copy / "model.skops")
    shutil.copy(SHIPPED / "model.skops", copy / "model.skops")
    (copy / "model_card.json").unlink()
    os.mkfifo(copy / "model_card.json")
    with pytest.raises(ModelArtifactError, match="model_card.json is not a regular file"):
        load_model(copy)
