"""Train and evaluate the rupture classifier on annotated sessions, for transfer across session generators.

Window labels come from the annotations (:func:`models.dataset.window_labels`);
windows with less speech than ``ALLIANCE_MODEL__MIN_WINDOW_SPEECH_S`` are left
out of training and evaluation, as they are never flagged. Every session has a
*generator* (:func:`models.transfer.session_generator`: ``tts``, ``rooms``,
``real``). With two or more generators, cross-validation leaves one generator
out (train on the others, score the held-out one); with one, it is grouped by
client (no client in both a training and a test fold).

Two models are compared on the same splits: a regularised linear model (median
imputation, standardisation, multinomial logistic regression with balanced
class weights) and a small gradient-boosted tree model
(``HistGradientBoostingClassifier``); the simpler one is kept unless the other
transfers clearly better (:func:`models.transfer.choose_model`). Each fitted
model is one ``CalibratedClassifierCV`` (isotonic, or sigmoid below 200
positive windows of a rupture type) whose calibrators are fitted on
out-of-generator predictions, so a probability means the same on material the
model was not trained on (Niculescu-Mizil & Caruana 2005). For each rupture
type the flag threshold is the highest probability at which the recall of the
out-of-generator (else out-of-fold) predictions still reaches the target (0.8
by default: a clinician would rather review a few extra stretches than miss
most ruptures). Reported per rupture type (one against the rest): AUROC, AUPRC
(Saito & Rehmsmeier 2015), recall and precision at the threshold, Brier score
and a reliability table (calibration).

References
----------
Niculescu-Mizil & Caruana (2005), Predicting good probabilities with supervised learning, ICML.
Saito & Rehmsmeier (2015), The precision-recall plot is more informative than the ROC plot when evaluating binary
classifiers on imbalanced datasets, PLoS ONE 10(3).
Brier (1950), Verification of forecasts expressed in terms of probability, Monthly Weather Review 78.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from models.artifact import (CLASSES, ModelBundle, code_version, confirmed_windows, context_mean, load_model,
                             save_model, session_baseline)
from pipeline.errors import InputError
from pipeline.features import ABSOLUTE_MARKERS, FEATURE_NAMES, FEATURE_UNITS, MODEL_FEATURE_NAMES

TARGET_RECALL = 0.8
#: per rupture type, a flagged stretch must reach the probability at which the shipped model still finds this share
#: of the rupture windows (out of fold): hysteresis flagging, models.artifact.confirmed_windows. Confrontation from
#: sim-v5 (its false alarms on real speech 9 -> 0, recall across generators 0.70 -> 0.66); withdrawal from sim-v6,
#: where the tree model's probabilities peak inside withdrawal episodes and not on ordinary quiet talk (on sim-v6's
#: features: withdrawal false alarms in 121 minutes of assembled real speech 32 -> 5 with the tree model, 40 -> 33
#: with the linear one; docs/architecture.md)
CONFIRM_RECALL = {"withdrawal": 0.6, "confrontation": 0.6}
# windows averaged into each window's probability (models.artifact.context_mean): 5 windows of 30 s every 10 s
# (70 s of talk). On the sim-v2 build's cached features (held-out sessions of both generators, real rupture-free
# recordings), 3 against 1 raised held-out AUROC (withdrawal 0.871 -> 0.895, confrontation 0.993 -> 0.998) and
# about halved the flags per hour on real speech; with the session baseline, 5 against 3 lowered them again
# (20.9 -> 13.3 per hour) at the same held-out and cross-generator AUROC
CONTEXT_WINDOWS = 5
# each marker also as its departure from its session's median window (models.artifact.session_baseline)
SESSION_BASELINE = True
MODEL_KINDS = ("linear", "hgb")  # the simpler first: it is kept unless the other transfers clearly better
ISOTONIC_MIN_POSITIVES = 200  # below this many windows of a rupture type, sigmoid calibration (fewer parameters)
# below either, the card and the run say the figures are not to be trusted yet: with fewer clients one unusual
# client moves every figure, and recall at a threshold over fewer windows moves in steps of several points
TRUSTED_MIN_CLIENTS = 10
TRUSTED_MIN_POSITIVES = 50
# the linear model's inverse L2 strength. ``train`` chooses it from the grid by the mean AUROC on generators the
# folds did not train on (searched from the strongest, so a tie keeps the stronger regularisation). The default is
# the grid's choice on the sim-v3 build's cached features (cross-validation's mean AUROC over the held-out
# generators, withdrawal / confrontation: C 0.01 0.902 / 0.932, 0.03 0.910 / 0.934, 0.1 0.914 / 0.934, 0.3 0.909 /
# 0.930); it serves where no grid is searched (the cross-language figures, ``c_grid=()``)
LINEAR_C = 0.1
LINEAR_C_GRID = (0.01, 0.03, 0.1, 0.3)
ESTIMATORS = {
    "linear": "SimpleImputer(median) → StandardScaler → LogisticRegression(C={c:g}, class_weight=balanced)",
    "hgb": ("SimpleImputer(median) → HistGradientBoostingClassifier(max_depth=3, max_iter=200, learning_rate=0.1, "
            "l2_regularization=1.0, min_samples_leaf=20, class_weight=balanced)"),
}


def make_pipeline(c: float = LINEAR_C):
    """Median imputation → standardisation → multinomial logistic regression (balanced class weights).

    Parameters
    ----------
    c : float > 0
        Inverse strength of the L2 penalty (scikit-learn's ``C``).
    """
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                     ("scale", StandardScaler()),
                     ("classify", LogisticRegression(C=c, class_weight="balanced", max_iter=5000))])


def make_hgb_pipeline():
    """Median imputation → a small gradient-boosted tree model (balanced class weights, L2-regularised leaves).

    Depth 3 and 200 iterations of learning rate 0.1 keep it small; no early stopping, so a fit does not depend on
    a random validation split. The imputer gives both models the same input (and the flags' explanations a
    reference value per marker).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    return Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                     ("classify", HistGradientBoostingClassifier(
                         max_depth=3, max_iter=200, learning_rate=0.1, l2_regularization=1.0, min_samples_leaf=20,
                         class_weight="balanced", early_stopping=False, random_state=0))])


def make_estimator(kind: str, *, c: float | None = None):
    """An unfitted pipeline of one model kind.

    Parameters
    ----------
    kind : {"linear", "hgb"}
    c : float > 0, optional
        The linear model's ``C`` (default :data:`LINEAR_C`); the tree model ignores it.

    Raises
    ------
    ValueError
        Another kind.
    """
    if kind == "linear":
        return make_pipeline(LINEAR_C if c is None else c)
    if kind == "hgb":
        return make_hgb_pipeline()
    raise ValueError(f"model kind must be one of {', '.join(MODEL_KINDS)}. Got {kind!r} instead.")


def describe_estimator(kind: str, c: float | None = None) -> str:
    """The pipeline of :func:`make_estimator` in one line, for the model card.

    Parameters
    ----------
    kind : {"linear", "hgb"}
        The model kind (:data:`MODEL_KINDS`).
    c : float > 0, optional
        Inverse regularisation strength of the logistic regression; None
        means :data:`LINEAR_C`. Ignored for ``"hgb"``.

    Returns
    -------
    str
        For example ``"SimpleImputer(median) → StandardScaler →
        LogisticRegression(C=0.1, class_weight=balanced)"``.

    Raises
    ------
    KeyError
        ``kind`` is not a model kind.
    """
    return ESTIMATORS[kind].format(c=LINEAR_C if c is None else c)


def calibration_method(y: np.ndarray) -> str:
    """``"isotonic"`` with at least :data:`ISOTONIC_MIN_POSITIVES` windows of every rupture type, else ``"sigmoid"``.

    Isotonic regression is the better calibrator with enough data, sigmoid (Platt) scaling with little
    (Niculescu-Mizil & Caruana 2005).

    Parameters
    ----------
    y : np.ndarray of int, shape (n,)
        Class per window.

    Returns
    -------
    str
    """
    positives = [int((np.asarray(y) == k).sum()) for k in (1, 2)]
    return "isotonic" if min(positives) >= ISOTONIC_MIN_POSITIVES else "sigmoid"


def calibration_folds(y: np.ndarray, groups: np.ndarray,
                      generators: np.ndarray | None) -> tuple[np.ndarray | None, str]:
    """Where the calibrator's predictions come from: the fold per window whose model did not train on it.

    One fold per generator when two or more are present and each leave-one-out training part holds every class
    present; else grouped by client (5 folds, fewer when needed so that every training part holds every class).

    Parameters
    ----------
    y : np.ndarray of int, shape (n,)
    groups, generators : np.ndarray of str, shape (n,)
        Client and generator per window (``generators`` None: one generator).

    Returns
    -------
    (np.ndarray of int or None, str)
        Fold per window and ``"generator"`` or ``"client"``; ``(None, why)`` when no split keeps every class in
        every training part (then the model is not calibrated).
    """
    from sklearn.model_selection import GroupKFold

    classes = np.unique(y)

    def complete(fold: np.ndarray) -> bool:
        return all(np.unique(y[fold != f]).size == classes.size for f in np.unique(fold))

    if generators is not None and np.unique(generators).size >= 2:
        fold = np.searchsorted(np.unique(generators), generators)
        if complete(fold):
            return fold, "generator"
    clients = np.unique(groups)
    for k in range(min(5, clients.size), 1, -1):
        fold = np.zeros(y.size, dtype=int)
        for i, (_, te) in enumerate(GroupKFold(n_splits=k).split(np.zeros(y.size), groups=groups)):
            fold[te] = i
        if complete(fold):
            return fold, "client"
    return None, "too few clients to hold every class in each calibration fold"


def fit_calibrated(kind: str, X: np.ndarray, y: np.ndarray, groups: np.ndarray, generators: np.ndarray | None, *,
                   c: float | None = None):
    """Fit one model kind and its probability calibration on out-of-generator (else out-of-client) predictions.

    ``CalibratedClassifierCV(ensemble=False)`` with the folds of :func:`calibration_folds`: the calibrators (one
    per class, one against the rest, renormalised) are fitted on cross-validated decision values, and the model
    itself on all windows; the result is one scikit-learn object with ``predict_proba``, ``classes_`` and the
    fitted pipeline in ``calibrated_classifiers_[0].estimator``. Without a feasible split the plain pipeline is
    returned.

    Parameters
    ----------
    kind : {"linear", "hgb"}
    X : np.ndarray, shape (n, n_features)
    y : np.ndarray of int, shape (n,)
    groups, generators : np.ndarray of str, shape (n,)
        Client and generator per window (``generators`` None: one generator).
    c : float > 0, optional
        The linear model's ``C`` (:func:`make_estimator`).

    Returns
    -------
    CalibratedClassifierCV or Pipeline
        Fitted.

    References
    ----------
    Niculescu-Mizil & Caruana (2005); Platt (1999) for sigmoid scaling; Zadrozny & Elkan (2002) for isotonic
    calibration and its one-against-the-rest multiclass use.
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import PredefinedSplit

    fold, _ = calibration_folds(y, groups, generators)
    with one_thread():
        if fold is None:
            return make_estimator(kind, c=c).fit(X, y)
        return CalibratedClassifierCV(make_estimator(kind, c=c), method=calibration_method(y),
                                      cv=PredefinedSplit(fold), ensemble=False).fit(X, y)


def shipped_probabilities(model, X: np.ndarray, y: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Each window's probabilities from the shipped calibrators, given a model that did not train on its fold.

    With the calibration folds, these are the decision values the calibrators of a
    ``CalibratedClassifierCV(ensemble=False)`` were fitted on; with folds by client, they come from models trained
    like the shipped one on every generator, so their decision values have its scale. Thresholds chosen on each
    fold's own calibrated probabilities instead sat on another scale (each fold's calibrator had seen one
    generator only), and the shipped model's withdrawal probabilities rarely reached them (held-out withdrawal
    recall 0.19 in ``tests/test_training.py``, 0.00 on simulated sessions).

    Parameters
    ----------
    model : CalibratedClassifierCV
        Fitted by :func:`fit_calibrated` with the folds ``fold``; each fold's model is an unfitted clone of the
        pipeline inside it (same kind and parameters).
    X : np.ndarray, shape (n, n_features)
    y : np.ndarray of int, shape (n,)
    fold : np.ndarray of int, shape (n,)
        The calibration fold per window (:func:`calibration_folds`).

    Returns
    -------
    np.ndarray, shape (n, 3)
        Probability per class 0..2.
    """
    import copy

    from sklearn.base import clone

    calibrated = model.calibrated_classifiers_[0]
    out = np.zeros((y.size, len(CLASSES)))
    columns = np.asarray(model.classes_, dtype=int)
    for f in np.unique(fold):
        held = fold == f
        with one_thread():
            other = copy.copy(calibrated)
            other.estimator = clone(calibrated.estimator).fit(X[~held], y[~held])
            out[np.ix_(held, columns)] = other.predict_proba(X[held])
    return out


def shipped_thresholds(model, X: np.ndarray, y: np.ndarray, groups: np.ndarray,
                       generators: np.ndarray | None, *, target_recall: float,
                       fallback: dict[str, float], sessions: np.ndarray | None = None,
                       context: int = 1) -> tuple[dict[str, float], np.ndarray | None]:
    """Per rupture type, the highest probability of the shipped model that still finds ``target_recall``.

    Chosen on :func:`shipped_probabilities` over the calibration folds of :func:`calibration_folds`; a model that
    is not calibrated (no feasible split) keeps ``fallback`` (the cross-validation's thresholds).

    Parameters
    ----------
    model : CalibratedClassifierCV or Pipeline
        From :func:`fit_calibrated` on ``X``, ``y``, ``groups``, ``generators``.
    X, y, groups, generators
        As given to :func:`fit_calibrated`.
    target_recall : float in (0, 1]
    fallback : dict
        Thresholds per type for an uncalibrated model.
    sessions : np.ndarray of str, shape (n,), optional
        Session per window (windows of a session contiguous, in time order), for ``context``.
    context : int, odd >= 1
        Windows averaged into each probability (:func:`models.artifact.context_mean`), as the model will flag.

    Returns
    -------
    (dict, np.ndarray of shape (n, 3) or None)
        The thresholds, and the (averaged) probabilities they were chosen on (None with the fallback).
    """
    # folds by client, whatever the generators: each fold's model then trains on the same mix of generators as
    # the shipped model and its decision values have the shipped model's scale (a model trained on one generator
    # is more confident, and thresholds chosen on it sat above the shipped model's probabilities)
    fold, _ = calibration_folds(y, groups, None)
    if fold is None or not hasattr(model, "calibrated_classifiers_"):
        return dict(fallback), None
    shipped = _in_context(shipped_probabilities(model, X, y, fold), sessions, context)
    return {CLASSES[k]: choose_threshold(y == k, shipped[:, k], target_recall) for k in (1, 2)}, shipped


def one_thread():
    """Context in which BLAS (the linear model's solver) and OpenMP (the tree model's split search) use one thread.

    These models are small; on the shared 2-core machine (load average 11) their thread pools fight the other
    work: the gradient-boosted model on 4800 windows × 6 markers took 77–87 s with OpenMP's default threads and
    3.4–4.6 s on one; the logistic regression on 4800 × 43, 1.9–8.2 s with two BLAS threads and 0.13–0.29 s on
    one.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _in_context(proba: np.ndarray, sessions: np.ndarray | None, context: int) -> np.ndarray:
    """:func:`models.artifact.context_mean` over ``sessions`` (all one session when None)."""
    return context_mean(proba, np.zeros(proba.shape[0], dtype=int) if sessions is None else sessions, context)


def load_dataset(data_dirs: Sequence[str | Path], settings, *, progress=print,
                 set_aside: list[dict] | None = None, consent_dirs: Sequence[str | Path] = (),
                 before_analysis=None) -> dict:
    """Features and window labels of every session under ``data_dirs``.

    Parameters
    ----------
    data_dirs : sequence of path
        Dataset folders (:func:`models.dataset.discover_sessions`).
    settings : Settings
    progress : callable
        Called with one line per session analysed, and per session set aside.
    set_aside : list, optional
        Where a session that cannot be used is recorded instead of stopping the run (the guide: bad input never
        stops the rest of a batch): a folder problem or a refused consent (:func:`models.dataset.discover_sessions`),
        a recording already in the dataset under another session, annotations that do not read, or a recording the
        analysis cannot take. One ``{"session", "folder", "why"}`` each, in the order met; each also goes to
        ``progress`` as ``set aside <session folder>: <why>``. Without it (``None``), the first problem raises.
    consent_dirs : sequence of path
        The run's other folders (``--holdout`` beside ``--data``, ``--unannotated``): a recording here whose bytes
        are also found under any of them, or under ``data_dirs`` (:func:`models.dataset.copies_elsewhere`), is set
        aside with every other holder, and a session of theirs whose consent refuses research use bars its session
        id here (:func:`models.dataset.refused_sessions`).
    before_analysis : callable, optional
        Called with the sessions left to analyse and their generators (session id → name) once every folder,
        consent, annotation and copy check is done and before any recording is analysed; it may raise
        (:func:`check_clients`).

    Returns
    -------
    dict
        ``X`` (n_windows, n_features) in ``FEATURE_NAMES`` order, ``y`` (class
        index), ``groups`` (client ids), ``generators`` (the session's
        generator, :func:`models.transfer.session_generator`), ``folders``
        (the dataset folder as given), ``sessions`` (session id per window),
        ``languages`` (per window), ``starts`` and ``ends`` (each window's times, s), ``n_sessions`` (sessions
        used) and ``skipped`` (the sessions set aside, as in ``set_aside``; empty without it).

    Raises
    ------
    InputError
        From :func:`models.dataset.discover_sessions` or the annotation
        readers, naming the file; a ``metadata.json`` whose ``simulated``
        record is malformed; a session whose features differ from this code's
        markers; with ``set_aside``, a dataset none of whose sessions could be used.
    """
    from models.dataset import (aside_entry, copies_elsewhere, discover_sessions, refused_sessions, run_recordings,
                                session_features, shown_path, window_labels)
    from models.transfer import session_generator
    from pipeline.annotations import read_annotations
    from pipeline.audio import probe
    from pipeline.errors import BackendUnavailableError, ConfigError, PipelineError
    from pipeline.ids import display_line

    skipped: list[dict] = []
    folder_of: dict[str, str] = {}

    def record(entry: dict) -> None:
        skipped.append(entry)
        progress(f"set aside {display_line(entry['session'])}: {entry['why']}")

    def aside(session, exc: Exception) -> None:
        """Record one session as set aside, or raise when every problem must stop the run."""
        if set_aside is None:
            raise exc
        record(aside_entry(session.folder, folder_of[str(session.folder)], exc))

    sessions, refused = [], []
    for d in consent_dirs:
        if str(d) not in map(str, data_dirs):
            refused += refused_sessions(d)
    for d in data_dirs:
        found_aside: list[dict] | None = None if set_aside is None else []
        sessions += (found := discover_sessions(d, set_aside=found_aside, refused=refused))
        folder_of.update({str(s.folder): str(d) for s in found})
        for entry in found_aside or []:
            record(entry)
    ids = [s.session_id for s in sessions]
    twice = sorted({i for i in ids if ids.count(i) > 1})  # in two dataset folders: which is which is not known
    if twice and set_aside is None:
        raise InputError(None, f"session ids appear in more than one dataset folder: {', '.join(twice)}")
    for s in sessions:
        if s.session_id in twice:
            aside(s, InputError(s.folder, f"session id {s.session_id} is also used in another dataset folder ("
                                          + ", ".join(folder_of[str(o.folder)] for o in sessions
                                                      if o.session_id == s.session_id and o is not s)
                                          + "); give each session its own id"))
    sessions = [s for s in sessions if s.session_id not in twice]
    refused_id = {r["session_id"]: r["name"] for r in refused if r["session_id"]}
    for s in sessions:  # the id of a session whose consent refuses research use: the same session, maybe (trial)
        if s.session_id in refused_id:
            aside(s, InputError(s.folder, f"session id {s.session_id} is also that of session folder "
                                          f"{refused_id[s.session_id]}, whose consent does not allow research use "
                                          "(or cannot be read)"))
    sessions = [s for s in sessions if s.session_id not in refused_id]
    generator, kept = {}, []
    for s in sessions:  # every annotation and metadata file is checked, against the declared length, before analysis
        try:
            read_annotations(s.annotations, duration_s=probe(s.recording, settings=settings.audio))
            generator[s.session_id] = session_generator(s.metadata)
        except (BackendUnavailableError, ConfigError):
            raise  # a setting or a model, not this session: the run stops once, not at every session
        except PipelineError as exc:
            aside(s, exc)
            continue
        kept.append(s)
    sessions = kept
    # a recording is used once: one under two sessions would sit in two folds (it scores what it trained on), and a
    # copy of one whose session may not be used (refused consent, unreadable metadata, hidden, nested, behind a link,
    # in another folder of the run) is that recording (three trials, 5 December): every holder is set aside
    elsewhere = run_recordings([*data_dirs, *consent_dirs])
    digests: dict = {}
    holder_of = {os.path.realpath(s.recording): s.session_id for s in sessions}
    first_holder: dict[str, str] = {}
    kept = []
    for s in sessions:
        copies = copies_elsewhere(s.recording, elsewhere, digests)
        if not copies:
            kept.append(s)
            continue
        names = [holder_of.get(os.path.realpath(p)) for p in copies]
        if set_aside is None and all(names):  # strict: raise at the second holder, naming the first, as before
            first = first_holder.setdefault(digests[os.path.realpath(s.recording)], s.session_id)
            if first == s.session_id:
                kept.append(s)
                continue
        shown = [f"session {n}" if n else shown_path(p, [*data_dirs, *consent_dirs]) for n, p in zip(names, copies)]
        aside(s, InputError(s.recording, f"session {s.session_id} has the same recording as {', '.join(shown[:3])}"
                                         f"{' ...' if len(shown) > 3 else ''} (identical content); a recording is "
                                         "used once, and not at all where one of its copies may not be used"))
    sessions = kept
    if before_analysis is not None and sessions:
        before_analysis(sessions, generator)
    X, y, groups, sids, langs, gens, folders, starts, ends = [], [], [], [], [], [], [], [], []
    min_speech = settings.model.min_window_speech_s
    used = 0
    for i, s in enumerate(sessions, start=1):
        try:
            feats, duration = session_features(s, settings)
            notes = read_annotations(s.annotations, duration_s=duration)
        except (BackendUnavailableError, ConfigError):
            raise  # a setting or a model (third trial: a bad word-list setting was blamed on every session)
        except PipelineError as exc:
            aside(s, exc)
            continue
        except Exception as exc:  # noqa: BLE001 - a bug met in one session must not stop the rest (with set_aside)
            if set_aside is None:
                raise
            logging.getLogger("alliance.training").debug("internal error analysing %s", s.folder.name, exc_info=exc)
            aside(s, exc)
            continue
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
        gens += [generator[s.session_id]] * len(keep)
        folders += [folder_of[str(s.folder)]] * len(keep)
        starts += [feats.frames[j].start for j in keep]
        ends += [feats.frames[j].end for j in keep]
        used += 1
        progress(f"[{i}/{len(sessions)}] {display_line(s.session_id)} ({generator[s.session_id]}): {len(keep)} "
                 "windows")
    if set_aside is not None:
        set_aside += skipped
        if not used:
            were = counted(len(skipped), "session was", "sessions were")
            raise InputError(None, f"no session of the dataset could be used ({were} set aside, each named above); "
                                   "nothing to train or evaluate on")
    return dict(X=np.array(X, dtype=float).reshape(-1, len(FEATURE_NAMES)), y=np.array(y, dtype=int),
                groups=np.array(groups, dtype=str), generators=np.array(gens, dtype=str),
                folders=np.array(folders, dtype=str), sessions=np.array(sids, dtype=str),
                languages=np.array(langs, dtype=str), starts=np.array(starts, dtype=float),
                ends=np.array(ends, dtype=float), n_sessions=used, skipped=skipped)


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


def confirmation_levels(y: np.ndarray, proba: np.ndarray, thresholds: dict[str, float],
                        confirm_recall: dict[str, float], target_recall: float) -> dict[str, float]:
    """Per rupture type named in ``confirm_recall``, the probability a flagged stretch must reach somewhere.

    The highest probability at which ``proba`` still finds the type's confirmation recall of its windows
    (:func:`choose_threshold`), on the same out-of-fold probabilities as the thresholds; hysteresis flagging
    (:func:`models.artifact.confirmed_windows`). A recall not below ``target_recall``, or a level not above the
    type's threshold, would change nothing and gives no level.

    Parameters
    ----------
    y : np.ndarray of int, shape (n,)
        Class index per window.
    proba : np.ndarray, shape (n, 3)
        Out-of-fold probabilities on the shipped model's scale (:func:`shipped_thresholds`).
    thresholds : dict
        Flag threshold per rupture type.
    confirm_recall : dict
        Recall in (0, 1] per rupture type that gets a level.
    target_recall : float
        The recall the thresholds were chosen for.

    Returns
    -------
    dict
        ``{type: level}`` for the types that get one.
    """
    levels = {}
    for k, name in enumerate(CLASSES):
        if name in confirm_recall and confirm_recall[name] < target_recall:
            level = choose_threshold(y == k, proba[:, k], confirm_recall[name])
            if level > thresholds[name]:
                levels[name] = level
    return levels


def type_metrics(y: np.ndarray, proba: np.ndarray, thresholds: dict[str, float], *,
                 confirm: dict[str, float] | None = None, sessions: np.ndarray | None = None,
                 starts: np.ndarray | None = None, ends: np.ndarray | None = None) -> dict:
    """Per rupture type (one against the rest): AUROC, AUPRC, recall, precision, Brier score, reliability.

    Recall and precision count the windows the model flags: at or above the threshold and, with ``confirm``, in a
    stretch that reaches the type's confirmation level (:func:`models.artifact.confirmed_windows`), as the report
    flags them.

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Class index per window.
    proba : np.ndarray, shape (n, 3)
        Predicted class probabilities.
    thresholds : dict
        Flag threshold per rupture type.
    confirm : dict, optional
        Confirmation level per rupture type (``threshold.confirm`` of a card); None: the threshold alone.
    sessions : np.ndarray, shape (n,), optional
        Session per window (windows of a session contiguous, in time order); None: one session.
    starts, ends : np.ndarray, shape (n,), optional
        Window times (s), so that stretches merge as the flags do; None: consecutive windows touch.

    Returns
    -------
    dict
        ``{type: {"n_windows", "n_positive", "auroc", "auprc", "threshold", "recall", "precision",
        "flagged", "brier", "calibration": [{"p_mean", "observed", "n"}, ...]}}``; ``flagged`` counts the
        windows at or above the threshold (on rupture-free windows, the false positives); AUROC and AUPRC are
        NaN (``null`` in JSON) without both classes.
    """
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    out = {}
    for k, name in enumerate(CLASSES):
        if k == 0:
            continue
        truth, p = y == k, proba[:, k]
        both = 0 < truth.sum() < truth.size
        level = (confirm or {}).get(name)
        flagged = confirmed_windows(p, thresholds[name], level,
                                    np.zeros(p.size, dtype=int) if sessions is None else sessions, starts, ends)
        tp = int((flagged & truth).sum())
        bins = _reliability(truth, p) if p.size else []
        out[name] = {
            "n_windows": int(truth.size), "n_positive": int(truth.sum()),
            "auroc": round(float(roc_auc_score(truth, p)), 4) if both else math.nan,
            "auprc": round(float(average_precision_score(truth, p)), 4) if both else math.nan,
            "threshold": round(float(thresholds[name]), 4),
            **({"confirm": round(float(level), 4)} if level is not None else {}),
            "recall": round(tp / truth.sum(), 4) if truth.any() else math.nan,
            "precision": round(tp / flagged.sum(), 4) if flagged.any() else math.nan,
            "flagged": int(flagged.sum()),
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


def cross_validate(X: np.ndarray, y: np.ndarray, groups: np.ndarray, generators: np.ndarray | None = None, *,
                   kind: str = "linear", target_recall: float = TARGET_RECALL, n_splits: int = 5,
                   sessions: np.ndarray | None = None, context: int = 1, c: float | None = None) -> dict:
    """Leave-one-generator-out (else grouped-by-client) cross-validation of one calibrated model kind.

    Each fold fits :func:`fit_calibrated` on its training windows only (model and calibrator), and scores the
    held-out generator (or clients). The thresholds are chosen on these out-of-generator probabilities, pooled
    over the folds, per rupture type at ``target_recall``.

    Parameters
    ----------
    X : np.ndarray, shape (n, n_features)
    y : np.ndarray of int, shape (n,)
        Class per window (0 none, 1 withdrawal, 2 confrontation).
    groups : np.ndarray of str, shape (n,)
        Client per window.
    generators : np.ndarray of str, shape (n,), optional
        Generator per window; None or one generator: grouped by client.
    kind : {"linear", "hgb"}
    target_recall : float in (0, 1]
    n_splits : int >= 2
        Folds when grouping by client (at most the number of clients).
    sessions : np.ndarray of str, shape (n,), optional
        Session per window (windows of a session contiguous, in time order), for ``context``.
    context : int, odd >= 1
        Windows averaged into each held-out probability (:func:`models.artifact.context_mean`; a session is
        always held out whole, so the mean never mixes folds).
    c : float > 0, optional
        The linear model's ``C`` (:func:`make_estimator`).

    Returns
    -------
    dict
        ``kind``; ``c`` (the linear model's ``C``, None for the tree model); ``grouped_by`` (``"generator"`` or
        ``"client"``); ``n_splits``; ``thresholds`` per type;
        ``metrics`` (:func:`type_metrics` of the pooled held-out probabilities); ``brier_uncalibrated`` per type
        (the same folds' pipelines before calibration); ``folds`` (per fold: test clients, windows, AUROC per type,
        and with generators ``train_generators`` and ``test_generator``); ``pairs`` (per held-out generator:
        ``train`` and ``test`` generator names, ``n_windows`` and :func:`type_metrics` at the pooled thresholds;
        empty when grouped by client); ``mean_auroc`` per type (mean over the held-out generators, else the
        pooled AUROC); ``proba`` (n, 3) the held-out probabilities.

    Raises
    ------
    InputError
        Fewer than 2 clients (one generator), a rupture type with no labelled window, no window without
        rupture, a training fold whose
        windows hold one class only, or a leave-one-generator-out training fold without a rupture type its
        held-out generator has.
    """
    from sklearn.metrics import brier_score_loss, roc_auc_score

    from models.transfer import _class_proba, base_pipeline, transfer_splits

    missing = [CLASSES[k] for k in (1, 2) if not (y == k).any()]
    if missing:
        raise InputError(None, f"no window is labelled {', '.join(missing)}; the annotations need both rupture types")
    if not (y == 0).any():  # a model must also learn what talk without rupture looks like (5 December trial)
        raise InputError(None, "no window is without rupture; the sessions need stretches of ordinary talk outside "
                               "the annotated episodes")
    one = generators is None or np.unique(generators).size < 2
    gens = np.full(y.size, "all") if generators is None else np.asarray(generators)
    splits, grouped_by = transfer_splits(gens, groups, n_splits=n_splits)
    for i, (tr, te) in enumerate(splits):
        if np.unique(y[tr]).size < 2:
            raise InputError(None, f"cross-validation fold {i + 1}: the training clients' windows hold only "
                                   f"'{CLASSES[int(y[tr][0])]}'; add sessions (of more clients) with annotated "
                                   "ruptures and ordinary talk")
        if grouped_by == "generator":
            trained, scored = "+".join(np.unique(gens[tr])), str(gens[te][0])
            for k in (1, 2):
                if not (y[tr] == k).any() and (y[te] == k).any():
                    raise InputError(None, f"leave-one-generator-out fold {i + 1} (trained on {trained}, scoring "
                                           f"{scored}): the training windows hold no '{CLASSES[k]}' window; add "
                                           f"{trained} sessions with {CLASSES[k]} episodes, or leave {scored} out")
    proba = np.zeros((y.size, len(CLASSES)))
    raw = np.zeros_like(proba)
    for tr, te in splits:
        model = fit_calibrated(kind, X[tr], y[tr], groups[tr], None if one else gens[tr], c=c)
        proba[te] = _class_proba(model, X[te])
        raw[te] = _class_proba(base_pipeline(model), X[te])
    proba, raw = _in_context(proba, sessions, context), _in_context(raw, sessions, context)
    thresholds = {CLASSES[k]: choose_threshold(y == k, proba[:, k], target_recall) for k in (1, 2)}
    folds, pairs = [], []
    for i, (tr, te) in enumerate(splits):
        fold = {"fold": i, "test_clients": int(np.unique(groups[te]).size), "test_windows": int(te.size)}
        if grouped_by == "generator":
            fold.update(train_generators=np.unique(gens[tr]).tolist(), test_generator=str(gens[te][0]))
        for k in (1, 2):
            t = y[te] == k
            fold[f"auroc_{CLASSES[k]}"] = (round(float(roc_auc_score(t, proba[te, k])), 4) if 0 < t.sum() < t.size
                                           else math.nan)
        folds.append(fold)
        if grouped_by == "generator":
            pairs.append({"train": "+".join(fold["train_generators"]), "test": fold["test_generator"],
                          "n_clients": int(np.unique(groups[te]).size), "n_windows": int(te.size),
                          "types": type_metrics(y[te], proba[te], thresholds)})
    metrics = type_metrics(y, proba, thresholds)
    if pairs:
        mean_auroc = {name: _nanmean([p["types"][name]["auroc"] for p in pairs]) for name in CLASSES[1:]}
    else:
        mean_auroc = {name: metrics[name]["auroc"] for name in CLASSES[1:]}
    linear_c = (LINEAR_C if c is None else c) if kind == "linear" else None
    return {"kind": kind, "c": linear_c, "grouped_by": grouped_by, "n_splits": len(splits), "thresholds": thresholds,
            "metrics": metrics,
            "brier_uncalibrated": {CLASSES[k]: round(float(brier_score_loss(y == k, raw[:, k])), 4) for k in (1, 2)},
            "folds": folds, "pairs": pairs, "mean_auroc": mean_auroc, "proba": proba}


def choose_regularisation(X: np.ndarray, y: np.ndarray, groups: np.ndarray, generators: np.ndarray | None = None,
                          *, grid: Sequence[float] = LINEAR_C_GRID, **cv_args) -> tuple[dict, dict]:
    """The linear model's L2 strength that transfers best: cross-validate each ``C`` of the grid on the same splits.

    Each ``C`` is scored by the mean, over the two rupture types, of :func:`cross_validate`'s ``mean_auroc``
    (mean AUROC over the held-out generators, else the pooled AUROC of the client folds). Stronger regularisation
    shrinks the markers whose relation to the labels one generator's voices, wording or rooms exaggerate; the
    grid is searched from the strongest, and a later ``C`` must score strictly higher to be taken. The chosen
    ``C`` is scored on the same folds it was chosen by, so its cross-validated figures are slightly optimistic
    (four candidates; Cawley & Talbot 2010).

    Parameters
    ----------
    X, y, groups, generators
        As for :func:`cross_validate`.
    grid : sequence of float > 0
        Candidate ``C`` values.
    **cv_args
        Passed on to :func:`cross_validate` (``target_recall``, ``sessions``, ``context``, ``n_splits``).

    Returns
    -------
    (dict, dict)
        The chosen ``C``'s cross-validation (:func:`cross_validate`, with ``c``), and the search:
        ``{"grid": [...], "mean_auroc": {str(C): {type: AUROC}}, "chosen": C, "chosen_by": why}``.

    Raises
    ------
    InputError
        As :func:`cross_validate`.
    ValueError
        An empty grid or a ``C`` that is not positive.

    References
    ----------
    Cawley & Talbot (2010), On over-fitting in model selection and subsequent selection bias in performance
    evaluation, JMLR 11.
    """
    grid = sorted(float(v) for v in grid)
    if not grid or grid[0] <= 0:
        raise ValueError(f"the C grid must hold positive values. Got {grid} instead.")
    best, best_score, scores = None, -math.inf, {}
    for c in grid:
        cv = cross_validate(X, y, groups, generators, kind="linear", c=c, **cv_args)
        scores[f"{c:g}"] = cv["mean_auroc"]
        score = _nanmean(list(cv["mean_auroc"].values()))
        if best is None or (math.isfinite(score) and score > best_score):
            best, best_score = cv, score
    by = "held-out generators" if best["grouped_by"] == "generator" else "held-out clients"
    return best, {"grid": grid, "mean_auroc": scores, "chosen": best["c"],
                  "chosen_by": f"highest mean AUROC of the two rupture types on {by}; ties keep the smaller C "
                               "(stronger regularisation)"}


def _nanmean(values) -> float:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return round(float(np.mean(v)), 4) if v else math.nan


def same_generator(X: np.ndarray, y: np.ndarray, groups: np.ndarray, generators: np.ndarray,
                   thresholds: dict[str, float], *, kind: str = "linear", n_splits: int = 5,
                   sessions: np.ndarray | None = None, context: int = 1, c: float | None = None,
                   confirm: dict[str, float] | None = None, starts: np.ndarray | None = None,
                   ends: np.ndarray | None = None) -> dict:
    """Within each generator, grouped-by-client cross-validation scored at the given (shipped) thresholds.

    The figures a model reaches on new clients of a generator it was trained on: set beside the cross-generator
    figures, the difference is what changing the generator costs.

    Parameters
    ----------
    X, y, groups, generators
        As for :func:`cross_validate`.
    thresholds : dict
        Flag threshold per rupture type (the shipped model's).
    kind : {"linear", "hgb"}
    n_splits : int >= 2
    sessions, context, c
        As for :func:`cross_validate`.
    confirm, starts, ends
        As for :func:`type_metrics`.

    Returns
    -------
    dict
        ``{generator: {"grouped_by": "client", "n_splits", "n_clients", "n_windows", "types"}}``, or
        ``{generator: {"skipped": why}}`` for a generator with fewer than 2 clients or without both rupture types.
    """
    from models.transfer import _class_proba, transfer_splits

    out = {}
    for gen in np.unique(generators).tolist():
        m = generators == gen
        Xg, yg, gg = X[m], y[m], groups[m]
        if np.unique(gg).size < 2 or not all((yg == k).any() for k in (1, 2)):
            out[gen] = {"skipped": "needs sessions of at least 2 clients and windows of both rupture types"}
            continue
        splits, _ = transfer_splits(np.full(yg.size, gen), gg, n_splits=n_splits)
        if any(np.unique(yg[tr]).size < 2 for tr, _ in splits):
            out[gen] = {"skipped": "a fold's training clients hold one class only"}
            continue
        proba = np.zeros((yg.size, len(CLASSES)))
        for tr, te in splits:
            proba[te] = _class_proba(fit_calibrated(kind, Xg[tr], yg[tr], gg[tr], None, c=c), Xg[te])
        proba = _in_context(proba, None if sessions is None else sessions[m], context)
        out[gen] = {"grouped_by": "client", "n_splits": len(splits), "n_clients": int(np.unique(gg).size),
                    "n_windows": int(yg.size),
                    "types": type_metrics(yg, proba, thresholds, confirm=confirm,
                                          sessions=None if sessions is None else sessions[m],
                                          starts=None if starts is None else starts[m],
                                          ends=None if ends is None else ends[m])}
    return out


def _data_hash(X: np.ndarray, y: np.ndarray, sessions: np.ndarray) -> str:
    h = hashlib.sha256(np.ascontiguousarray(np.nan_to_num(X, nan=-9e9)).tobytes())
    h.update(y.tobytes())
    h.update("\n".join(sessions.tolist()).encode())
    return h.hexdigest()


def evaluate_bundle(bundle: ModelBundle, data: dict, *, by_group: bool = False) -> dict:
    """Score a loaded model on a loaded dataset at the model's own thresholds.

    Parameters
    ----------
    bundle : ModelBundle
    data : dict
        From :func:`load_dataset`.
    by_group : bool
        Also score each generator and each dataset folder on its own.

    Returns
    -------
    dict
        ``n_sessions``, ``n_clients`` and ``types`` (:func:`type_metrics`); with ``by_group`` also
        ``by_generator`` and ``by_folder``: ``{name: {"n_sessions", "n_clients", "types"}}``.

    Raises
    ------
    InputError
        No window has enough speech.
    """
    if data["y"].size == 0:
        raise InputError(None, "no window with enough speech to evaluate")
    proba = bundle.probabilities(data["X"][:, bundle.columns()], data["sessions"])
    thresholds = {CLASSES[k]: bundle.class_threshold(k) for k in (1, 2)}
    confirm = {CLASSES[k]: bundle.class_confirm(k) for k in (1, 2) if bundle.class_confirm(k) is not None}

    def scored(m):
        return type_metrics(data["y"][m], proba[m], thresholds, confirm=confirm or None, sessions=data["sessions"][m],
                            starts=data["starts"][m] if "starts" in data else None,
                            ends=data["ends"][m] if "ends" in data else None)

    everything = np.ones(data["y"].size, dtype=bool)
    out = {"n_sessions": int(data["n_sessions"]), "n_clients": int(np.unique(data["groups"]).size),
           "types": scored(everything)}
    if data.get("skipped"):
        out["skipped"] = list(data["skipped"])
    if by_group:
        for key, column in (("by_generator", "generators"), ("by_folder", "folders")):
            out[key] = {}
            for name in np.unique(data[column]).tolist():
                m = data[column] == name
                out[key][name] = {"n_sessions": int(np.unique(data["sessions"][m]).size),
                                  "n_clients": int(np.unique(data["groups"][m]).size),
                                  "types": scored(m)}
    return out


def check_holdout_apart(data_dirs: Sequence[str | Path], holdout_dirs: Sequence[str | Path], *,
                        strict: bool = True) -> None:
    """Refuse held-out sessions that are also training sessions (their figures would be training figures).

    Parameters
    ----------
    data_dirs, holdout_dirs : sequence of path
        Dataset folders (:func:`models.dataset.discover_sessions`).
    strict : bool
        A folder problem in any session refuses the run; otherwise the sessions that would be set aside are left
        out of the comparison (they are neither trained on nor scored).

    Raises
    ------
    InputError
        A session id found in both (the message lists them), a held-out recording with the same content as a
        training recording, or a folder problem from ``discover_sessions``.
    """
    from models.dataset import discover_sessions
    from pipeline.audio import recording_sha256

    def found(d):
        return discover_sessions(d, set_aside=None if strict else [])

    train = [s for d in data_dirs for s in found(d)]
    held = [s for d in holdout_dirs for s in found(d)]
    both = sorted({s.session_id for s in train} & {s.session_id for s in held})
    if both:
        raise InputError(None, f"held-out sessions are also training sessions: {', '.join(both[:10])}"
                               f"{' ...' if len(both) > 10 else ''}; give --holdout other sessions")
    trained = {recording_sha256(s.recording): s.session_id for s in train}  # regular files (discover_sessions)
    for s in held:  # the same recording under another id: the held-out figures would score what was trained on
        twin = trained.get(recording_sha256(s.recording))
        if twin is not None:
            raise InputError(s.recording, f"held-out session {s.session_id} has the same recording as training "
                                          f"session {twin} (identical content); give --holdout other recordings")


def check_clients(sessions: Sequence, generators: dict[str, str]) -> None:
    """Refuse, before any analysis, sessions that cannot be cross-validated: one generator and one client.

    Given to :func:`load_dataset` as ``before_analysis`` by :func:`train`, so that a training run does not analyse
    every recording first (a trial's two simulated sessions of one client took 3 minutes to reach the same refusal
    from :func:`models.transfer.window_folds`).

    Parameters
    ----------
    sessions : sequence of LabelledSession
        The sessions left to analyse (those set aside are not among them).
    generators : dict
        Session id → generator (:func:`models.transfer.session_generator`).

    Raises
    ------
    InputError
        The sessions all come from one generator and belong to one client.
    """
    clients = sorted({s.client_id for s in sessions})
    if len({generators.get(s.session_id) for s in sessions}) < 2 and len(clients) == 1:
        raise InputError(None, f"grouped cross-validation needs sessions of at least 2 clients; the "
                               f"{counted(len(sessions), 'session', 'sessions')} to train on all belong to client "
                               f"{clients[0]} (client_id in metadata.json): add sessions of another client "
                               "(`alliance simulate` makes two sessions per client, so simulate at least 3)")


def counted(n: int, one: str, many: str) -> str:
    """``"1 client"``, ``"2 clients"``: a count with its noun in the singular or the plural.

    Parameters
    ----------
    n : int
        The count; only exactly 1 takes the singular (so ``"0 clients"``).
    one : str
        The noun in the singular.
    many : str
        The noun in the plural.

    Returns
    -------
    str
        The count, a space and the noun.
    """
    return f"{n} {one if n == 1 else many}"


def default_summary(n_sessions: int, n_clients: int, languages: Sequence[str], generators: Sequence[str], *,
                    n_real: int | None = None) -> dict[str, str]:
    """The card's first line when the caller gives none, in English and Dutch: simulated or real, how many.

    Parameters
    ----------
    n_sessions, n_clients : int
    languages : sequence of str
        Language codes of the sessions.
    generators : sequence of str
        Generators present (:func:`models.transfer.session_generator`; ``"real"`` for annotated real sessions).
    n_real : int, optional
        Real sessions among ``n_sessions`` (default: all when ``generators`` is only ``real``, else none).

    Returns
    -------
    dict
        ``summary`` (English, the card's first line), ``summary_en`` (the same) and ``summary_nl`` (for the report's
        caveat in Dutch, :func:`pipeline.report.model_caveat`).
    """
    from models.transfer import REAL

    sims = sorted(g for g in set(generators) if g != REAL)
    n_real = (n_sessions if not sims else 0) if n_real is None else n_real
    langs = ", ".join(sorted(set(languages)))
    ses, sessies = ("session", "sessie") if n_sessions == 1 else ("sessions", "sessies")
    clients_en, clients_nl = counted(n_clients, "client", "clients"), counted(n_clients, "cliënt", "cliënten")
    if n_real == 0:
        en = (f"Trained on {n_sessions} simulated {ses} (generators {', '.join(sims)}) of {clients_en} "
              f"({langs}), not on real therapy audio.")
        nl = (f"getraind op {n_sessions} gesimuleerde {sessies} (generatoren {', '.join(sims)}) van {clients_nl} "
              f"({langs}), niet op echte therapie-opnames")
    elif n_real == n_sessions:
        en = f"Trained on {n_sessions} annotated real {ses} of {clients_en} ({langs})."
        nl = f"getraind op {n_sessions} geannoteerde echte {sessies} van {clients_nl} ({langs})"
    else:
        en = (f"Trained on {n_sessions} annotated {ses} ({n_real} real, {n_sessions - n_real} simulated) of "
              f"{clients_en} ({langs}).")
        nl = (f"getraind op {n_sessions} geannoteerde {sessies} ({n_real} echte, {n_sessions - n_real} gesimuleerde) "
              f"van {clients_nl} ({langs})")
    return {"summary": en, "summary_en": en, "summary_nl": nl}


def train(data_dirs: Sequence[str | Path], *, version: str, settings, root: str | Path,
          target_recall: float = TARGET_RECALL, holdout_dirs: Sequence[str | Path] = (),
          unannotated_dirs: Sequence[str | Path] = (), choice_dirs: Sequence[str | Path] = (),
          summary: str | None = None, description: str = "",
          extra_metrics: dict | None = None, kinds: Sequence[str] = MODEL_KINDS, context: int = CONTEXT_WINDOWS,
          baseline: bool = SESSION_BASELINE, c_grid: Sequence[float] = LINEAR_C_GRID,
          confirm_recall: dict[str, float] | None = CONFIRM_RECALL, strict: bool = False,
          progress=print) -> Path:
    """Cross-validate across generators, choose and calibrate a model, fit it on all windows, save an artifact.

    Parameters
    ----------
    data_dirs : sequence of path
        Dataset folders (see :mod:`models.dataset`); their sessions' generators decide the cross-validation.
    version : str
        Name of the new artifact folder (never overwritten).
    settings : Settings
    root : path
        Where the artifact folder is created.
    target_recall : float in (0, 1]
        Recall the per-type thresholds are chosen for.
    holdout_dirs : sequence of path
        Sessions never used in training, scored by the final model; their
        metrics go in the card (``metrics.heldout``, with per-generator and
        per-folder figures), exactly as ``alliance evaluate`` prints them.
    unannotated_dirs : sequence of path
        Folders of real recordings without ruptures; the final model's flags
        per hour on them go in the card (``metrics.false_alarms``), as
        ``alliance evaluate --unannotated`` prints them.
    choice_dirs : sequence of path
        Folders of other real recordings without ruptures (never those of ``unannotated_dirs``): every model kind is
        fitted, thresholded and confirmed as it would ship, and its flags per hour on them take part in the choice
        of the model (:func:`models.transfer.choose_model`, rule 2); the card records them.
    summary : str, optional
        First line of the model card.
    description : str
        What the training data is, for the card.
    extra_metrics : dict or callable, optional
        More metrics for the card (for example a cross-language evaluation); a callable is called with the chosen
        model kind and its ``C`` (None for the tree model) and returns them, so they are measured with the model
        that ships.
    kinds : sequence of {"linear", "hgb"}
        Model kinds compared; the first is the simpler one, kept unless another transfers clearly better.
    context : int, odd >= 1
        Windows of a session averaged into each window's probability (:func:`models.artifact.context_mean`),
        in the cross-validation, the thresholds, every figure of the card and the model's flags.
    baseline : bool
        The model reads each marker beside its departure from the session's median window
        (:func:`models.artifact.session_baseline`), everywhere it is applied.
    c_grid : sequence of float > 0
        The linear model's ``C`` values searched (:func:`choose_regularisation`); empty: :data:`LINEAR_C`.
    confirm_recall : dict, optional
        Per rupture type, a recall in (0, 1]: a flagged stretch of that type must reach, somewhere, the
        probability at which the shipped model still finds this share of the rupture windows (chosen on the same
        out-of-fold probabilities as the thresholds; card ``threshold.confirm``). Types left out, or None, and a
        recall not below ``target_recall`` (its level would be the threshold): every stretch at the threshold is
        flagged.
    strict : bool
        The first session that cannot be used (training or held out) stops the run. By default such a session is
        set aside (:func:`load_dataset`), named in ``progress`` and in the card (``skipped_sessions``, and
        ``metrics.heldout.skipped``), and the rest is used.

    Returns
    -------
    Path
        The artifact folder.

    Raises
    ------
    InputError
        A dataset or unannotated folder is malformed (the message names it), or the windows do not allow
        cross-validation (see :func:`cross_validate`).
    ValueError
        ``target_recall`` outside (0, 1], ``confirm_recall`` naming an unknown type or a recall outside (0, 1], or
        an unknown model kind.
    """
    import sklearn

    from models.false_alarms import check_choice_apart, false_alarms, find_recordings, usable_recordings
    from models.real_clips import ASSEMBLED
    from models.transfer import MODEL_CHOICE_MARGIN, choose_model, marker_shift, marker_use

    if not 0 < target_recall <= 1:
        raise ValueError(f"target_recall must be in (0, 1]. Got {target_recall} instead.")
    confirm_recall = dict(confirm_recall or {})
    if any(k not in CLASSES[1:] or not 0 < v <= 1 for k, v in confirm_recall.items()):
        raise ValueError(f"confirm_recall must map rupture types to a recall in (0, 1]. Got {confirm_recall} "
                         "instead.")
    for kind in kinds:
        make_estimator(kind)
    for d in [*unannotated_dirs, *choice_dirs]:  # a wrong folder stops the run before any analysis
        find_recordings(d)
    if choice_dirs:
        check_choice_apart([*data_dirs, *holdout_dirs, *unannotated_dirs], choice_dirs)
        usable, set_aside = usable_recordings(choice_dirs, settings)
        if not usable:  # before any analysis: a folder of refused or broken files cannot take part in the choice
            raise InputError(Path(choice_dirs[0]), "no recording in the folders that choose the model could be used ("
                             + "; ".join(set_aside) + ")")
    if holdout_dirs:
        check_holdout_apart(data_dirs, holdout_dirs, strict=strict)
    every = [*data_dirs, *holdout_dirs, *unannotated_dirs]  # a refusal in one bars its copies in another (trials)
    data = load_dataset(data_dirs, settings, progress=progress, set_aside=None if strict else [], consent_dirs=every,
                        before_analysis=check_clients)
    X_all, y, groups, gens, sids = data["X"], data["y"], data["groups"], data["generators"], data["sessions"]
    starts, ends = data["starts"], data["ends"]
    # the classifier reads the markers that do not follow the recording's level or the voice (ABSOLUTE_MARKERS)
    raw = X_all[:, [FEATURE_NAMES.index(n) for n in MODEL_FEATURE_NAMES]]
    X = model_inputs(raw, sids, baseline)  # what the estimator reads, here as in every flag
    cvs, regularisation = {}, None
    for kind in kinds:
        progress(f"cross-validating the {kind} model")
        if kind == "linear" and c_grid:
            cvs[kind], regularisation = choose_regularisation(X, y, groups, gens, grid=c_grid,
                                                              target_recall=target_recall, sessions=sids,
                                                              context=context)
        else:
            cvs[kind] = cross_validate(X, y, groups, gens, kind=kind, target_recall=target_recall, sessions=sids,
                                       context=context)
    cal_fold, cal_how = calibration_folds(y, groups, gens)

    def as_shipped(kind: str) -> dict:
        """One kind fitted on all windows, with its thresholds and confirmation levels on its own scale."""
        k_c = cvs[kind]["c"]
        progress(f"fitting the {kind} model{f' (C {k_c:g})' if k_c is not None else ''} on all {y.size} windows")
        k_model = fit_calibrated(kind, X, y, groups, gens, c=k_c)
        # thresholds on the shipped model's own scale (see shipped_thresholds)
        k_thr, k_shipped = shipped_thresholds(k_model, X, y, groups, gens, target_recall=target_recall,
                                              sessions=sids, context=context, fallback=cvs[kind]["thresholds"])
        k_confirm = (confirmation_levels(y, k_shipped, k_thr, confirm_recall, target_recall)
                     if k_shipped is not None else {})
        return dict(model=k_model, thresholds=k_thr, shipped=k_shipped, confirm=k_confirm)

    fitted, choice_alarms, choice_skipped = {}, {}, []
    if choice_dirs and len(cvs) < 2:
        progress("one model kind only: the recordings given to choose the model are not used")
    if choice_dirs and len(cvs) > 1:
        for kind in cvs:  # each kind as it would ship, on real rupture-free recordings the card does not report
            fitted[kind] = as_shipped(kind)
            probe = working_bundle(fitted[kind]["model"], fitted[kind]["thresholds"], fitted[kind]["confirm"],
                                   kind=kind, version=f"{version} ({kind}, choosing)", context=context,
                                   baseline=baseline)
            result = false_alarms(probe, choice_dirs, settings,
                                  progress=progress if not choice_alarms else (lambda *_: None))
            if not result["overall"]["minutes"]:  # every recording set aside (silent, unreadable): no figure
                raise InputError(Path(choice_dirs[0]), "no recording in the folders that choose the model could be "
                                 "used (" + "; ".join(f"{r['file']}: {r['why']}" for r in result["skipped"]) + ")")
            choice_alarms[kind], choice_skipped = result["overall"], result["skipped"]
            progress(f"{kind}: {result['overall']['flags_per_hour']:.1f} flags per hour on the recordings that "
                     "choose the model")
    chosen, why = choose_model({k: cv["mean_auroc"] for k, cv in cvs.items()}, simpler=kinds[0],
                               false_alarms={k: v["flags_per_hour"] for k, v in choice_alarms.items()} or None)
    cv = cvs[chosen]
    c = cv["c"]
    progress(f"chose the {chosen} model{f' (C {c:g})' if c is not None else ''}")
    final = fitted.get(chosen) or as_shipped(chosen)
    model, thresholds, shipped, confirm = final["model"], final["thresholds"], final["shipped"], final["confirm"]
    confirm_recall = {k: v for k, v in confirm_recall.items() if k in confirm}
    spans = dict(confirm=confirm or None, sessions=sids, starts=starts, ends=ends)
    if shipped is not None and cv["grouped_by"] == cal_how:
        # the cross-validation's figures at these thresholds, on the shipped model's scale: the cross-validation's
        # folds (one per generator, else by client), each window's decision value from a model that did not train
        # on its generator (else client), through the shipped calibrators
        oof = (shipped if cal_how == "client" else
               _in_context(shipped_probabilities(model, X, y, cal_fold), sids, context))
        cv = {**cv, "metrics": type_metrics(y, oof, thresholds, **spans)}
        for pair in cv["pairs"]:
            held = gens == pair["test"]
            pair["types"] = type_metrics(y[held], oof[held], thresholds, confirm=confirm or None, sessions=sids[held],
                                         starts=starts[held], ends=ends[held])
        if cv["pairs"]:  # the mean of the table as the card shows it (the model choice keeps each fold's own)
            cv["mean_auroc"] = {name: _nanmean([p["types"][name]["auroc"] for p in cv["pairs"]])
                                for name in CLASSES[1:]}
    generators = sorted(set(gens.tolist()))
    counts = {CLASSES[k]: int((y == k).sum()) for k in range(len(CLASSES))}
    small = small_data_note(int(np.unique(groups).size), counts)
    if small:
        progress(small)
    langs = sorted(set(data["languages"].tolist()))
    across = cv["grouped_by"] == "generator"
    held_out_by = "leave-one-generator-out" if across else "grouped cross-validation by client"
    calibration = ({"method": calibration_method(y), "folds": int(np.unique(cal_fold).size), "grouped_by": cal_how,
                    "fit_on": ("decision values of models that did not train on the generator"
                               if cal_how == "generator" else
                               "decision values of models that did not train on the client"),
                    "how": "CalibratedClassifierCV(ensemble=False): one calibrator per class, one against the rest"}
                   if cal_fold is not None else {"method": "none", "why": cal_how})
    use = marker_use(model, X, y, names=MODEL_FEATURE_NAMES)
    for name in ABSOLUTE_MARKERS:
        use[name] = {"importance": 0.0, "coefficient": None, "used": False}
    shift_rows = marker_shift(X_all, y, gens, names=FEATURE_NAMES)
    for row in shift_rows:
        row.update(unit=FEATURE_UNITS[FEATURE_NAMES.index(row["marker"])], **use[row["marker"]])
    card = {
        **({"summary": summary} if summary else
           default_summary(data["n_sessions"], int(np.unique(groups).size), langs, generators,
                           n_real=int(np.unique(sids[gens == "real"]).size))),
        "version": version,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "training_data": (f"{description} {counted(data['n_sessions'], 'session', 'sessions')}, "
                          f"{counted(int(np.unique(groups).size), 'client', 'clients')}, "
                          f"generators {', '.join(generators)}, languages {', '.join(langs)}; {y.size} windows of "
                          f"{settings.features.window_s:g} s (hop {settings.features.hop_s:g} s) with at least "
                          f"{settings.model.min_window_speech_s:g} s of speech: {counts}. Window labels: the rupture "
                          f"type annotated over at least 10 s of the window. sha256 of features, labels and "
                          f"session ids: {_data_hash(raw, y, data['sessions'])}. Analysis settings "
                          f"hash {settings.settings_hash()}.").strip(),
        "generators": generators,
        **({"skipped_sessions": data["skipped"]} if data["skipped"] else {}),
        "feature_names": list(MODEL_FEATURE_NAMES),
        "feature_units": [FEATURE_UNITS[FEATURE_NAMES.index(n)] for n in MODEL_FEATURE_NAMES],
        "markers_not_used": {"markers": list(ABSOLUTE_MARKERS),
                             "why": "they follow the recording's level, the microphone distance or the voice (a "
                                    "child's F0, a voice engine's rate) more than the alliance; the classifier reads "
                                    "the same quantities against the client's own session baseline (*_z markers)"},
        "classes": list(CLASSES),
        "estimator": (f"{describe_estimator(chosen, c)}, calibrated ({calibration['method']})"
                      if cal_fold is not None else describe_estimator(chosen, c)),
        "model_kind": chosen,
        "calibration": calibration,
        "analysis": {"vad_method": settings.vad.method, "speaker_encoder": settings.diarization.embedder},
        "inputs": {"session_baseline": bool(baseline),
                   "why": ("the model reads each marker beside its departure from the median of the session's "
                           "windows, so what a session has throughout (a quiet child, a therapist who explains at "
                           "length, a far microphone) reads as that session's ordinary and a stretch that moves away "
                           "from it stands out" if baseline else "each marker as measured")},
        "context": {"windows": context,
                    "why": (f"each window's probability is the mean over {context} consecutive windows of its "
                            f"session ({settings.features.window_s:g}-s windows every {settings.features.hop_s:g} "
                            "s), in every figure here and in the flags: a rupture is an episode that lasts, a "
                            "marker that departs in one window alone is often an accident of the recording")},
        "threshold": {
            "value": round(min(thresholds.values()), 4),
            "per_class": {k: round(v, 4) for k, v in thresholds.items()},
            "target_recall": target_recall,
            "why": (f"per rupture type, the highest probability at which the shipped model's calibrators, given "
                    "each window's decision value from a model that did not train on the window's client (trained "
                    f"like the shipped model on every generator, so on its scale), still find {target_recall:.0%} "
                    "of the annotated windows: a flag asks a clinician to look, so missing a rupture costs more "
                    "than reviewing an extra stretch"),
            **({"confirm": {k: round(v, 4) for k, v in confirm.items()}, "confirm_recall": confirm_recall,
                "confirm_why": ("for the rupture types named, the probability at which the same out-of-fold "
                                "probabilities still find "
                                + ", ".join(f"{v:.0%} of the annotated {k} windows" for k, v in confirm_recall.items())
                                + "; windows at the threshold that "
                                "touch form a stretch, and a stretch is flagged only where it reaches this level "
                                "(hysteresis): a rupture episode has a core the model is sure of and keeps its whole "
                                "extent, while a stretch of ordinary talk that only brushes the threshold is not "
                                "flagged")} if confirm else {}),
        },
        "metrics": {
            "cross_validation": {"grouped_by": cv["grouped_by"], "n_splits": cv["n_splits"], "types": cv["metrics"],
                                 "brier_uncalibrated": cv["brier_uncalibrated"], "folds": cv["folds"]},
            "model_comparison": {
                "measured_on": held_out_by, "mean_cross_generator_auroc": {k: c["mean_auroc"] for k, c in cvs.items()},
                "pooled": {k: {n: {m: c["metrics"][n][m] for m in ("auroc", "auprc", "recall", "precision", "brier")}
                               for n in CLASSES[1:]} for k, c in cvs.items()},
                "estimators": {k: describe_estimator(k, cvs[k]["c"]) for k in cvs}, "chosen": chosen, "why": why,
                "margin": MODEL_CHOICE_MARGIN,
                **({"false_alarms": {"folders": [str(d) for d in choice_dirs], "by_kind": choice_alarms,
                                     "skipped": choice_skipped,
                                     "how": "each kind fitted on all windows, with its own thresholds and "
                                            "confirmation levels, on real rupture-free recordings that the false-"
                                            "alarm figures of this card do not use"}} if choice_alarms else {})},
            **({"regularisation": regularisation} if regularisation else {}),
            "marker_shift": {"windows": "no rupture", "pairs": list(shift_rows[0]["shift"]) if shift_rows else [],
                             "smd": "standardised mean difference (second minus first generator, pooled SD)",
                             "ks": "two-sample Kolmogorov-Smirnov statistic",
                             "used": "permutation importance (fall in mean AUROC of the two rupture types when the "
                                     "marker is shuffled, training windows) of at least 0.002",
                             "markers": shift_rows},
        },
        "intended_use": "Flags stretches of a session for a clinician to review. It never diagnoses and never "
                        "replaces the therapist's judgement.",
        "limitations": (small + " " if small else "") + ("Probabilities are calibrated on predictions for "
                        + ("generators the model had not trained on" if across else "clients it had not trained on")
                        + "; sessions unlike every training generator (real rooms, real children) can still differ. "
                        "The rooms generator builds part of its speech from the same real recordings the false-alarm "
                        "figures use, so those figures are not fully independent of training. "
                        + ("A model shown real speech only without ruptures (generator assembled) may take what "
                           "tells real voices from synthetic ones for the absence of a rupture (the rooms generator's "
                           "ruptures, part real speech, work against it). " if ASSEMBLED in generators else "")
                        + "Lexical markers "
                        f"depend on the transcript's quality. scikit-learn {sklearn.__version__} is required to "
                        "load it."),
    }
    if across:
        card["metrics"] = {"cross_generator": {"pairs": cv["pairs"], "mean_auroc": cv["mean_auroc"]},
                           **card["metrics"]}
        card["metrics"]["same_generator"] = same_generator(X, y, groups, gens, thresholds, kind=chosen,
                                                            sessions=sids, context=context, c=c,
                                                            confirm=confirm or None, starts=starts, ends=ends)
    if callable(extra_metrics):
        extra_metrics = extra_metrics(chosen, c)
    if extra_metrics:
        card["metrics"].update(extra_metrics)
    bundle = ModelBundle(estimator=model, card=card, path=Path("."))
    if holdout_dirs:
        held = load_dataset(holdout_dirs, settings, progress=progress, set_aside=None if strict else [],
                            consent_dirs=every)
        card["metrics"]["heldout"] = evaluate_bundle(bundle, held, by_group=True)
    if unannotated_dirs:
        card["metrics"]["false_alarms"] = false_alarms(bundle, unannotated_dirs, settings, progress=progress,
                                                       other_dirs=[*data_dirs, *holdout_dirs])
    return save_model(model, _paths_in_data_dir(card, settings.data_dir), root=Path(root))


def _paths_in_data_dir(value, data_dir):
    """``value`` (a card: dicts, lists, strings) with each folder under ``data_dir`` written ``<data dir>/...``.

    A card travels with the model (shipped in the repository, shared between clinics); the builder's own path says
    nothing to its reader and names a person's machine.
    """
    import os

    prefixes = sorted({os.fspath(data_dir).rstrip("/"), os.path.realpath(data_dir)}, key=len, reverse=True)

    def fix(x):
        if isinstance(x, str):
            for p in prefixes:
                if x == p or x.startswith(p + "/"):
                    return "<data dir>" + x[len(p):]
            return x
        if isinstance(x, dict):
            return {fix(k): fix(v) for k, v in x.items()}
        if isinstance(x, list):
            return [fix(v) for v in x]
        return x

    return fix(value)


def model_inputs(X: np.ndarray, sessions: np.ndarray, baseline: bool) -> np.ndarray:
    """The estimator's input: ``X``, or ``X`` beside each marker's departure from its session's median window.

    Parameters
    ----------
    X : np.ndarray, shape (n_windows, n_markers)
    sessions : np.ndarray, shape (n_windows,)
        Session of each window.
    baseline : bool
        Add the departures (:func:`models.artifact.session_baseline`).

    Returns
    -------
    np.ndarray, shape (n_windows, n_markers) or (n_windows, 2 * n_markers)
    """
    return session_baseline(X, sessions) if baseline else X


def working_bundle(model, thresholds: dict[str, float], confirm: dict[str, float] | None, *, kind: str, version: str,
                   context: int = CONTEXT_WINDOWS, baseline: bool = SESSION_BASELINE) -> ModelBundle:
    """A fitted model with the card fields that flagging reads, to score it before (or without) saving it.

    Parameters
    ----------
    model : fitted estimator
        As :func:`fit_calibrated` returns it.
    thresholds : dict
        Flag threshold per rupture type.
    confirm : dict or None
        Confirmation level per rupture type (:func:`confirmation_levels`).
    kind : {"linear", "hgb"}
    version : str
        A name for messages (never saved).
    context : int
        Windows of the moving mean (:func:`models.artifact.context_mean`).
    baseline : bool
        The model reads the session baseline (:func:`models.artifact.session_baseline`).

    Returns
    -------
    ModelBundle
    """
    card = {"version": version, "model_kind": kind, "feature_names": list(MODEL_FEATURE_NAMES),
            "classes": list(CLASSES), "inputs": {"session_baseline": bool(baseline)}, "context": {"windows": context},
            "threshold": {"value": min(thresholds.values()), "per_class": dict(thresholds),
                          **({"confirm": dict(confirm)} if confirm else {})}}
    return ModelBundle(estimator=model, card=card, path=Path("."))


def small_data_note(n_clients: int, counts: dict[str, int]) -> str | None:
    """A warning when a model is trained on too few clients or rupture windows for its figures to mean much.

    Parameters
    ----------
    n_clients : int
        Clients in the training data.
    counts : dict
        Windows per class name (``none`` and the rupture types).

    Returns
    -------
    str or None
        One sentence, or None from :data:`TRUSTED_MIN_CLIENTS` clients and :data:`TRUSTED_MIN_POSITIVES`
        windows of each rupture type on.
    """
    few = {name: n for name, n in counts.items() if name != CLASSES[0] and n < TRUSTED_MIN_POSITIVES}
    if n_clients >= TRUSTED_MIN_CLIENTS and not few:
        return None
    windows = ", ".join(f"{n} {name}" for name, n in counts.items() if name != CLASSES[0])
    return (f"Trained on {counted(n_clients, 'client', 'clients')} ({windows} windows): too few for its figures "
            f"to be trusted yet; they start to mean something from {TRUSTED_MIN_CLIENTS} clients and {TRUSTED_MIN_POSITIVES} windows "
            "of each rupture type.")


def evaluate(model_dir: str | Path | None, data_dirs: Sequence[str | Path], settings, *,
             unannotated_dirs: Sequence[str | Path] = (), by_group: bool = False, strict: bool = False,
             progress=print) -> dict:
    """Load a saved model and score it on annotated sessions and on real rupture-free recordings.

    Parameters
    ----------
    model_dir : path or None
        Model folder; None for the shipped default.
    data_dirs : sequence of path
        Annotated dataset folders (may be empty when ``unannotated_dirs`` is not).
    settings : Settings
    unannotated_dirs : sequence of path
        Folders of recordings without ruptures (see :func:`models.false_alarms.false_alarms`).
    by_group : bool
        Add per-generator and per-folder figures (see :func:`evaluate_bundle`).
    strict : bool
        The first annotated session that cannot be used stops the evaluation; by default it is set aside
        (:func:`load_dataset`), named in ``progress`` and in ``skipped``, and the others are scored.

    Returns
    -------
    dict
        ``model``; with ``data_dirs`` the keys of :func:`evaluate_bundle` (``skipped``: the sessions set aside,
        when any); with ``unannotated_dirs`` ``false_alarms``.

    Raises
    ------
    InputError
        Neither kind of folder given, or one is malformed (the message names it).
    ModelArtifactError
        The model does not load with this code.
    """
    from models.false_alarms import false_alarms, find_recordings

    if not data_dirs and not unannotated_dirs:
        raise InputError(None, "nothing to evaluate: give annotated dataset folders or unannotated recordings")
    bundle = load_model(model_dir)
    for d in unannotated_dirs:
        find_recordings(d)
    out: dict = {"model": bundle.version}
    if data_dirs:
        data = load_dataset(data_dirs, settings, progress=progress, set_aside=None if strict else [],
                            consent_dirs=unannotated_dirs)
        out.update(evaluate_bundle(bundle, data, by_group=by_group))
    if unannotated_dirs:
        # at the model's own thresholds, as the annotated sessions above (a threshold set for the clinic's flags
        # would score the two parts of one run differently)
        out["false_alarms"] = false_alarms(bundle, unannotated_dirs, settings, progress=progress,
                                           other_dirs=data_dirs)
    return out


def _fmt(v) -> str:
    return "  —  " if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def format_metrics(result: dict) -> str:
    """A plain-text table of :func:`type_metrics` output (``result["types"]``), then each type's calibration.

    One row per rupture type: windows, positive windows, AUROC, AUPRC, the
    threshold, recall and precision at it, and the Brier score, each to 3
    decimals (a dash for None or NaN). Then one line per type with its
    calibration bins (mean predicted probability → observed share).

    Parameters
    ----------
    result : dict
        With ``types``: rupture type to its metrics, as :func:`type_metrics`
        gives them; ``calibration`` may be missing.

    Returns
    -------
    str
        Lines joined by newlines, without a final newline.

    Raises
    ------
    KeyError
        A type lacks one of the metrics named above.
    """
    lines = [f"{'type':<14} {'windows':>7} {'positive':>8} {'AUROC':>6} {'AUPRC':>6} {'thresh':>6} {'recall':>6} "
             f"{'precis':>6} {'Brier':>6}"]
    for name, m in result["types"].items():
        lines.append(f"{name:<14} {m['n_windows']:>7} {m['n_positive']:>8} {_fmt(m['auroc']):>6} "
                     f"{_fmt(m['auprc']):>6} {_fmt(m['threshold']):>6} {_fmt(m['recall']):>6} "
                     f"{_fmt(m['precision']):>6} {_fmt(m['brier']):>6}")
    levels = {name: m["confirm"] for name, m in result["types"].items()
              if m.get("confirm") is not None and m["confirm"] > m["threshold"]}
    if levels:
        lines.append("Recall and precision count the windows the flags cover: at the threshold and, "
                     + " and ".join(f"for {k}, in a stretch that reaches its confirmation level {v:.3f}"
                                    for k, v in levels.items()) + ".")
    lines.append("Calibration (mean predicted probability → observed share of windows, per quantile bin):")
    for name, m in result["types"].items():
        bins = "  ".join(f"{b['p_mean']:.2f}→{b['observed']:.2f} (n={b['n']})" for b in m.get("calibration", []))
        lines.append(f"  {name:<14} {bins or '—'}")
    return "\n".join(lines)


def format_pairs(pairs: list[dict]) -> str:
    """A plain-text table of :func:`cross_validate`'s ``pairs``: one row per rupture type and generator pair.

    Columns as in :func:`format_metrics`, without the threshold; rows are
    grouped by rupture type, then in the order of ``pairs``.

    Parameters
    ----------
    pairs : list of dict
        Each with ``train`` and ``test`` (generator names) and ``types``
        (metrics per rupture type).

    Returns
    -------
    str
        Lines joined by newlines; only the header when ``pairs`` is empty.

    Raises
    ------
    KeyError
        A pair lacks a rupture type or a metric.
    """
    lines = [f"{'type':<14} {'trained on → scored on':<26} {'windows':>7} {'positive':>8} {'AUROC':>6} "
             f"{'AUPRC':>6} {'recall':>6} {'precis':>6} {'Brier':>6}"]
    for name in CLASSES[1:]:
        for p in pairs:
            m = p["types"][name]
            lines.append(f"{name:<14} {p['train'] + ' → ' + p['test']:<26} {m['n_windows']:>7} {m['n_positive']:>8} "
                         f"{_fmt(m['auroc']):>6} {_fmt(m['auprc']):>6} {_fmt(m['recall']):>6} "
                         f"{_fmt(m['precision']):>6} {_fmt(m['brier']):>6}")
    return "\n".join(lines)


def format_breakdown(result: dict) -> str:
    """:func:`format_metrics` for each generator and each dataset folder of an ``evaluate_bundle(by_group=True)``.

    Each part starts with a line naming the generator or folder and its
    numbers of sessions and clients.

    Parameters
    ----------
    result : dict
        :func:`evaluate_bundle` output; ``by_generator`` and ``by_folder``
        are used when present.

    Returns
    -------
    str
        Lines joined by newlines; empty when there is no breakdown.
    """
    out = []
    for key, what in (("by_generator", "generator"), ("by_folder", "data folder")):
        for name, part in result.get(key, {}).items():
            out.append(f"{what} {name} ({counted(part['n_sessions'], 'session', 'sessions')} of "
                       f"{counted(part['n_clients'], 'client', 'clients')}):")
            out.append(format_metrics(part))
    return "\n".join(out)


def format_card_figures(card: dict) -> str:
    """A model card's figures as plain text: cross-generator pairs (or the grouped-by-client cross-validation), the
    pooled held-out figures, the model choice, held-out sessions (per generator and folder) and false alarms.

    This is what ``python -m models.ship`` prints after training. Parts the
    card does not hold (model comparison, held-out sessions, false alarms)
    are left out.

    Parameters
    ----------
    card : dict
        A model card (``model_card.json``) with ``metrics`` holding at least
        ``cross_validation`` (and ``cross_generator`` when it was grouped by
        generator).

    Returns
    -------
    str
        Lines joined by newlines, without a final newline.

    Raises
    ------
    KeyError
        The card lacks a figure named above.
    """
    from models.false_alarms import format_false_alarms
    from pipeline.ids import display_line

    m = card["metrics"]
    cv = m["cross_validation"]
    out = []
    if cv["grouped_by"] == "generator":
        out += [f"Cross-validation leaving one generator out ({cv['n_splits']} folds), at the chosen thresholds:",
                format_pairs(m["cross_generator"]["pairs"]), "All held-out generators together:",
                format_metrics(cv)]
    else:
        out += [f"Cross-validation grouped by client ({cv['n_splits']} folds):", format_metrics(cv)]
    choice = m.get("model_comparison")
    if choice:
        means = "; ".join(f"{kind} " + ", ".join(f"{t} {_fmt(v).strip()}" for t, v in s.items())
                          for kind, s in choice["mean_cross_generator_auroc"].items())
        alarms = choice.get("false_alarms")
        on_real = ("" if not alarms else " Flags per hour on the real rupture-free recordings that help choose (each "
                   "kind as it would ship): " + "; ".join(f"{kind} {v['flags_per_hour']:.1f} ({v['flags']} in "
                                                           f"{v['minutes']:g} min)"
                                                           for kind, v in alarms["by_kind"].items()) + ".")
        out.append(f"Mean AUROC ({choice['measured_on']}, each fold with its own model and calibration, so not the "
                   f"table's scale): {means}.{on_real} Chosen: {choice['why']}.")
    for title, aside in (("Set aside, not trained on", card.get("skipped_sessions")),
                         ("Held-out sessions set aside, not scored", m.get("heldout", {}).get("skipped"))):
        if aside:
            out += [f"{title} ({counted(len(aside), 'session', 'sessions')}):",
                    *(f"  {display_line(entry['session'])}: {entry['why']}" for entry in aside)]
    if "heldout" in m:
        out += ["Held-out sessions:", format_metrics(m["heldout"])]
        if m["heldout"].get("by_generator"):
            out.append(format_breakdown(m["heldout"]))
    if "false_alarms" in m:
        out += ["False alarms on real rupture-free recordings:", format_false_alarms(m["false_alarms"])]
    return "\n".join(out)


def to_json(result: dict) -> str:
    """JSON with NaN written as null.

    Converted with :func:`pipeline.types.to_jsonable` (infinities also
    become null; numpy values become plain numbers) and indented by one
    space.

    Parameters
    ----------
    result : dict
        Metrics or any value :func:`pipeline.types.to_jsonable` handles.

    Returns
    -------
    str
        The JSON text.

    Raises
    ------
    TypeError
        A value JSON cannot hold remains (a set, a Path).
    """
    from pipeline.types import to_jsonable

    return json.dumps(to_jsonable(result), indent=1)
