"""Train and evaluate the rupture classifier on annotated sessions.

Window labels come from the annotations (:func:`models.dataset.window_labels`);
windows with less speech than ``ALLIANCE_MODEL__MIN_WINDOW_SPEECH_S`` are left
out of training and evaluation, as they are never flagged. One scikit-learn
``Pipeline`` (median imputation, standardisation, multinomial logistic
regression with balanced class weights) is evaluated with grouped
cross-validation by client (no client in both a training and a test fold).
For each rupture type the flag threshold is the highest probability at which
the out-of-fold recall still reaches the target (0.8 by default: a clinician
would rather review a few extra stretches than miss most ruptures). Reported
per rupture type (one against the rest): AUROC, AUPRC, recall and precision at
the threshold, Brier score and a reliability table (calibration).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from models.artifact import CLASSES, ModelBundle, code_version, load_model, save_model
from pipeline.errors import InputError
from pipeline.features import FEATURE_NAMES, FEATURE_UNITS

TARGET_RECALL = 0.8


def make_pipeline():
    """Median imputation → standardisation → multinomial logistic regression (balanced class weights)."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                     ("scale", StandardScaler()),
                     ("classify", LogisticRegression(C=0.3, class_weight="balanced", max_iter=5000))])


def load_dataset(data_dirs: Sequence[str | Path], settings, *, progress=print) -> dict:
    """Features and window labels of every session under ``data_dirs``.

    Returns
    -------
    dict
        ``X`` (n_windows, n_features) in ``FEATURE_NAMES`` order, ``y`` (class
        index), ``groups`` (client ids), ``sessions`` (session id per window),
        ``languages`` (per window) and ``n_sessions``.

    Raises
    ------
    InputError
        From :func:`models.dataset.discover_sessions` or the annotation
        readers, naming the file; a session whose features differ from this
        code's markers.
    """
    from models.dataset import discover_sessions, session_features, window_labels
    from pipeline.annotations import read_annotations

    sessions = []
    for d in data_dirs:
        sessions += discover_sessions(d)
    ids = [s.session_id for s in sessions]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise InputError(None, f"session ids appear in more than one dataset folder: {', '.join(dup)}")
    from pipeline.audio import probe

    for s in sessions:  # every annotation file is checked, against the declared length, before any analysis
        read_annotations(s.annotations, duration_s=probe(s.recording))
    X, y, groups, sids, langs = [], [], [], [], []
    min_speech = settings.model.min_window_speech_s
    for i, s in enumerate(sessions, start=1):
        feats, duration = session_features(s, settings)
        notes = read_annotations(s.annotations, duration_s=duration)
        if tuple(feats.feature_names) != FEATURE_NAMES:
            raise InputError(s.folder, "cached features come from another version of the markers; delete "
                                       "<data dir>/feature-cache and run again")
        labels = window_labels(feats, notes)
        keep = [j for j, fr in enumerate(feats.frames) if fr.speech_s >= min_speech]
        X += [feats.frames[j].values for j in keep]
        y += [int(labels[j]) for j in keep]
        groups += [s.client_id] * len(keep)
        sids += [s.session_id] * len(keep)
        langs += [s.language or "unknown"] * len(keep)
        progress(f"[{i}/{len(sessions)}] {s.session_id}: {len(keep)} windows")
    return dict(X=np.array(X, dtype=float).reshape(-1, len(FEATURE_NAMES)), y=np.array(y, dtype=int),
                groups=np.array(groups), sessions=np.array(sids), languages=np.array(langs),
                n_sessions=len(sessions))


def choose_threshold(y_true: np.ndarray, p: np.ndarray, target_recall: float) -> float:
    """Highest probability threshold whose recall on ``y_true`` is at least ``target_recall``.

    Parameters
    ----------
    y_true : np.ndarray of bool, shape (n,)
    p : np.ndarray, shape (n,)
        Predicted probabilities.
    target_recall : float in (0, 1]

    Returns
    -------
    float
        The threshold (a window is flagged when ``p >= threshold``); 0.5 when
        there are no positives.
    """
    from sklearn.metrics import precision_recall_curve

    if not np.any(y_true):
        return 0.5
    _, recall, thresholds = precision_recall_curve(y_true, p)  # recall[i] is the recall at p >= thresholds[i]
    return float(thresholds[recall[:-1] >= target_recall].max())


def type_metrics(y: np.ndarray, proba: np.ndarray, thresholds: dict[str, float]) -> dict:
    """Per rupture type (one against the rest): AUROC, AUPRC, recall, precision, Brier score, reliability.

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Class index per window.
    proba : np.ndarray, shape (n, 3)
        Predicted class probabilities.
    thresholds : dict
        Flag threshold per rupture type.

    Returns
    -------
    dict
        ``{type: {"n_windows", "n_positive", "auroc", "auprc", "threshold", "recall", "precision",
        "brier", "calibration": [{"p_mean", "observed", "n"}, ...]}}``; AUROC and AUPRC are NaN
        (``null`` in JSON) without both classes.
    """
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    out = {}
    for k, name in enumerate(CLASSES):
        if k == 0:
            continue
        truth, p = y == k, proba[:, k]
        both = 0 < truth.sum() < truth.size
        flagged = p >= thresholds[name]
        tp = int((flagged & truth).sum())
        bins = _reliability(truth, p) if p.size else []
        out[name] = {
            "n_windows": int(truth.size), "n_positive": int(truth.sum()),
            "auroc": round(float(roc_auc_score(truth, p)), 4) if both else math.nan,
            "auprc": round(float(average_precision_score(truth, p)), 4) if both else math.nan,
            "threshold": round(float(thresholds[name]), 4),
            "recall": round(tp / truth.sum(), 4) if truth.any() else math.nan,
            "precision": round(tp / flagged.sum(), 4) if flagged.any() else math.nan,
            "brier": round(float(brier_score_loss(truth, p)), 4) if p.size else math.nan,
            "calibration": bins,
        }
    return out


def _reliability(truth: np.ndarray, p: np.ndarray, n_bins: int = 5) -> list[dict]:
    """Reliability table over ``n_bins`` quantile bins of ``p`` (empty bins left out), as
    ``calibration_curve(strategy="quantile")`` bins it: ``[{"p_mean", "observed", "n"}, ...]``."""
    from sklearn.calibration import calibration_curve

    observed, p_mean = calibration_curve(truth, p, n_bins=n_bins, strategy="quantile")
    edges = np.percentile(p, np.linspace(0, 100, n_bins + 1))  # calibration_curve's bins, for the counts
    n = np.bincount(np.searchsorted(edges[1:-1], p), minlength=n_bins)
    return [{"p_mean": round(float(m), 4), "observed": round(float(o), 4), "n": int(c)}
            for m, o, c in zip(p_mean, observed, n[n > 0])]


def cross_validate(X: np.ndarray, y: np.ndarray, groups: np.ndarray, *, target_recall: float = TARGET_RECALL,
                   n_splits: int = 5) -> dict:
    """Grouped cross-validation by client: out-of-fold probabilities, thresholds and metrics.

    Returns
    -------
    dict
        ``thresholds`` per type (chosen on the out-of-fold probabilities),
        ``metrics`` (:func:`type_metrics` of the out-of-fold probabilities),
        ``folds`` (per fold: test clients' count, windows and AUROC per type)
        and ``n_splits``.

    Raises
    ------
    InputError
        Fewer than 2 clients, or a rupture type with no labelled window.
    """
    import warnings

    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, cross_val_predict

    clients = np.unique(groups)
    if clients.size < 2:
        raise InputError(None, "grouped cross-validation needs sessions of at least 2 clients")
    missing = [CLASSES[k] for k in (1, 2) if not (y == k).any()]
    if missing:
        raise InputError(None, f"no window is labelled {', '.join(missing)}; the annotations need both rupture types")
    n_splits = int(min(n_splits, clients.size))
    splits = list(GroupKFold(n_splits=n_splits).split(X, y, groups))
    for i, (tr, _) in enumerate(splits):
        if np.unique(y[tr]).size < 2:
            raise InputError(None, f"cross-validation fold {i + 1}: the training clients' windows hold only "
                                   f"'{CLASSES[int(y[tr][0])]}'; add sessions (of more clients) with annotated "
                                   "ruptures and ordinary talk")
    proba = np.zeros((y.size, len(CLASSES)))
    with warnings.catch_warnings():  # a class missing from a training fold gets probability 0 there
        warnings.filterwarnings("ignore", "Number of classes in training fold", RuntimeWarning)
        proba[:, np.unique(y)] = cross_val_predict(make_pipeline(), X, y, cv=splits, method="predict_proba")
    folds = []
    for i, (_, te) in enumerate(splits):
        fold = {"fold": i, "test_clients": int(np.unique(groups[te]).size), "test_windows": int(te.size)}
        for k in (1, 2):
            t = y[te] == k
            fold[f"auroc_{CLASSES[k]}"] = (round(float(roc_auc_score(t, proba[te, k])), 4) if 0 < t.sum() < t.size
                                           else math.nan)
        folds.append(fold)
    thresholds = {CLASSES[k]: choose_threshold(y == k, proba[:, k], target_recall) for k in (1, 2)}
    return {"n_splits": n_splits, "thresholds": thresholds, "metrics": type_metrics(y, proba, thresholds),
            "folds": folds}


def _data_hash(X: np.ndarray, y: np.ndarray, sessions: np.ndarray) -> str:
    h = hashlib.sha256(np.ascontiguousarray(np.nan_to_num(X, nan=-9e9)).tobytes())
    h.update(y.tobytes())
    h.update("\n".join(sessions.tolist()).encode())
    return h.hexdigest()


def evaluate_bundle(bundle: ModelBundle, data: dict) -> dict:
    """Score a loaded model on a loaded dataset at the model's own thresholds.

    Returns
    -------
    dict
        :func:`type_metrics` plus ``n_sessions`` and ``n_clients``.
    """
    if data["y"].size == 0:
        raise InputError(None, "no window with enough speech to evaluate")
    X = data["X"][:, bundle.columns()]
    proba = np.zeros((X.shape[0], len(CLASSES)))
    proba[:, bundle.estimator.classes_] = bundle.estimator.predict_proba(X)
    thresholds = {CLASSES[k]: bundle.class_threshold(k) for k in (1, 2)}
    return {"n_sessions": int(data["n_sessions"]), "n_clients": int(np.unique(data["groups"]).size),
            "types": type_metrics(data["y"], proba, thresholds)}


def train(data_dirs: Sequence[str | Path], *, version: str, settings, root: str | Path,
          target_recall: float = TARGET_RECALL, holdout_dirs: Sequence[str | Path] = (),
          summary: str | None = None, description: str = "", extra_metrics: dict | None = None,
          progress=print) -> Path:
    """Cross-validate, fit on all windows, optionally score held-out sessions, and save an artifact.

    Parameters
    ----------
    data_dirs : sequence of path
        Dataset folders (see :mod:`models.dataset`).
    version : str
        Name of the new artifact folder (never overwritten).
    settings : Settings
    root : path
        Where the artifact folder is created.
    target_recall : float in (0, 1]
        Recall the per-type thresholds are chosen for.
    holdout_dirs : sequence of path
        Sessions never used in training, scored by the final model; their
        metrics go in the card (``metrics.heldout``), exactly as
        ``alliance evaluate`` prints them.
    summary : str, optional
        First line of the model card.
    description : str
        What the training data is, for the card.
    extra_metrics : dict, optional
        More metrics for the card (for example a cross-language evaluation).

    Returns
    -------
    Path
        The artifact folder.
    """
    import sklearn

    if not 0 < target_recall <= 1:
        raise ValueError(f"target_recall must be in (0, 1]. Got {target_recall} instead.")
    data = load_dataset(data_dirs, settings, progress=progress)
    cv = cross_validate(data["X"], data["y"], data["groups"], target_recall=target_recall)
    model = make_pipeline().fit(data["X"], data["y"])
    counts = {CLASSES[k]: int((data["y"] == k).sum()) for k in range(len(CLASSES))}
    langs = sorted(set(data["languages"].tolist()))
    card = {
        "summary": summary or (f"Trained on {data['n_sessions']} annotated sessions of "
                               f"{np.unique(data['groups']).size} clients ({', '.join(langs)})."),
        "version": version,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "training_data": (f"{description} {data['n_sessions']} sessions, {np.unique(data['groups']).size} clients, "
                          f"languages {', '.join(langs)}; {data['y'].size} windows of "
                          f"{settings.features.window_s:g} s (hop {settings.features.hop_s:g} s) with at least "
                          f"{settings.model.min_window_speech_s:g} s of speech: {counts}. Window labels: the rupture "
                          f"type annotated over at least 10 s of the window. sha256 of features, labels and "
                          f"session ids: {_data_hash(data['X'], data['y'], data['sessions'])}. Analysis settings "
                          f"hash {settings.settings_hash()}.").strip(),
        "feature_names": list(FEATURE_NAMES),
        "feature_units": list(FEATURE_UNITS),
        "classes": list(CLASSES),
        "estimator": "SimpleImputer(median) → StandardScaler → LogisticRegression(C=0.3, class_weight=balanced)",
        "threshold": {
            "value": round(min(cv["thresholds"].values()), 4),
            "per_class": {k: round(v, 4) for k, v in cv["thresholds"].items()},
            "target_recall": target_recall,
            "why": (f"per rupture type, the highest probability at which grouped cross-validation (by client) "
                    f"still finds {target_recall:.0%} of the annotated windows: a flag asks a clinician to look, "
                    "so missing a rupture costs more than reviewing an extra stretch"),
        },
        "metrics": {"cross_validation": {"grouped_by": "client", "n_splits": cv["n_splits"],
                                         "types": cv["metrics"], "folds": cv["folds"]}},
        "intended_use": "Flags stretches of a session for a clinician to review. It never diagnoses and never "
                        "replaces the therapist's judgement.",
        "limitations": ("Probabilities are calibrated only to the sessions it was trained on. Markers from mono "
                        "recordings count no overlaps; lexical markers depend on the transcript's quality. "
                        f"scikit-learn {sklearn.__version__} is required to load it."),
    }
    if extra_metrics:
        card["metrics"].update(extra_metrics)
    if holdout_dirs:
        held = load_dataset(holdout_dirs, settings, progress=progress)
        tmp_bundle = ModelBundle(estimator=model, card=card, path=Path("."))
        card["metrics"]["heldout"] = evaluate_bundle(tmp_bundle, held)
    return save_model(model, card, root=Path(root))


def evaluate(model_dir: str | Path | None, data_dirs: Sequence[str | Path], settings, *, progress=print) -> dict:
    """Load a saved model and score it on annotated sessions (see :func:`evaluate_bundle`)."""
    bundle = load_model(model_dir)
    return {"model": bundle.version, **evaluate_bundle(bundle, load_dataset(data_dirs, settings, progress=progress))}


def format_metrics(result: dict) -> str:
    """A plain-text table of :func:`evaluate_bundle` output."""
    lines = [f"{'type':<14} {'windows':>7} {'positive':>8} {'AUROC':>6} {'AUPRC':>6} {'thresh':>6} {'recall':>6} "
             f"{'precis':>6} {'Brier':>6}"]
    for name, m in result["types"].items():
        f = (lambda v: "  —  " if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}")
        lines.append(f"{name:<14} {m['n_windows']:>7} {m['n_positive']:>8} {f(m['auroc']):>6} {f(m['auprc']):>6} "
                     f"{f(m['threshold']):>6} {f(m['recall']):>6} {f(m['precision']):>6} {f(m['brier']):>6}")
    return "\n".join(lines)


def to_json(result: dict) -> str:
    """JSON with NaN written as null."""
    from pipeline.types import to_jsonable

    return json.dumps(to_jsonable(result), indent=1)
