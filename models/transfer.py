"""Transfer across session generators: which generator made a session, the splits, marker shift, model choice.

A model trained on sessions of one simulator learns that simulator (issue 15).
Each labelled session therefore carries its *generator*: ``rooms`` for
:mod:`models.simulate_rooms`, ``tts`` for :mod:`models.simulate` (whose
metadata has ``"simulated": {"seed": ...}`` and no generator key), ``real`` for
annotated clinic sessions (no ``simulated`` key). Cross-validation leaves one
generator out when there are two or more, so every figure and every threshold
comes from predictions for a generator the model did not train on; the marker
shift table says which markers differ between generators, and the model
choice keeps the simpler model unless the other transfers clearly better.
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.errors import InputError

FIRST_GENERATOR = "tts"  # sessions of models/simulate.py, written before generators were named
REAL = "real"  # annotated sessions of real clients
MODEL_CHOICE_MARGIN = 0.02  # mean cross-generator AUROC the more complex model must gain, for both rupture types
_GENERATOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")


def session_generator(metadata_path: str | Path) -> str:
    """Which generator made a session: ``simulated.generator``, else ``tts`` for a simulated session, else ``real``.

    Parameters
    ----------
    metadata_path : str or Path
        The session's ``metadata.json``.

    Returns
    -------
    str
        ``"rooms"``, ``"tts"``, ``"real"`` or another name a generator wrote (1–32 letters, digits, ``.``, ``_``,
        ``-``).

    Raises
    ------
    InputError
        The file cannot be read as a JSON object (:class:`pipeline.errors.MetadataError`), ``simulated`` is not an
        object, or ``simulated.generator`` is not a valid name; the message names the file and the field.
    """
    from pipeline.sidecar import read_sidecar

    raw = read_sidecar(metadata_path)
    if "simulated" not in raw:
        return REAL
    sim = raw["simulated"]
    if not isinstance(sim, dict):
        raise InputError(metadata_path, f"'simulated' must be an object (the simulator's record). Got "
                                        f"{type(sim).__name__} instead.")
    if "generator" not in sim:
        return FIRST_GENERATOR
    gen = sim["generator"]
    if not isinstance(gen, str) or not _GENERATOR_NAME.fullmatch(gen):
        raise InputError(metadata_path, f"simulated.generator must be a name of 1-32 letters, digits, '.', '_' or "
                                        f"'-' (for example 'rooms'). Got {gen!r:.40} instead.")
    return gen


def window_folds(generators: np.ndarray, groups: np.ndarray, *, n_splits: int = 5) -> tuple[np.ndarray, str]:
    """Fold index per window: one fold per generator when there are two or more, else grouped by client.

    Parameters
    ----------
    generators : np.ndarray of str, shape (n,)
        Generator of each window (:func:`session_generator`).
    groups : np.ndarray of str, shape (n,)
        Client of each window.
    n_splits : int >= 2
        Folds when grouping by client (at most the number of clients).

    Returns
    -------
    (np.ndarray of int, shape (n,), str)
        The fold whose test part holds each window (generators in sorted order, so fold ``i`` scores the ``i``-th
        generator), and ``"generator"`` or ``"client"``.

    Raises
    ------
    InputError
        One generator and fewer than 2 clients.
    """
    from sklearn.model_selection import GroupKFold

    gens = np.asarray(generators)
    names = np.unique(gens)
    if names.size >= 2:
        return np.searchsorted(names, gens), "generator"
    clients = np.unique(groups)
    if clients.size < 2:
        raise InputError(None, "grouped cross-validation needs sessions of at least 2 clients")
    fold = np.zeros(gens.size, dtype=int)
    k = int(min(n_splits, clients.size))
    for i, (_, te) in enumerate(GroupKFold(n_splits=k).split(np.zeros(gens.size), groups=groups)):
        fold[te] = i
    return fold, "client"


def transfer_splits(generators: np.ndarray, groups: np.ndarray, *,
                    n_splits: int = 5) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """Leave-one-generator-out splits when two or more generators are present, else grouped by client.

    No split trains on the generator (or, grouped by client, the client) it scores. Sessions of one client
    always come from one generator, so leaving a generator out also keeps clients apart.

    Parameters
    ----------
    generators, groups : np.ndarray of str, shape (n,)
        Generator and client of each window.
    n_splits : int >= 2
        Folds when grouping by client.

    Returns
    -------
    (list of (train, test) index arrays, str)
        The splits in fold order, and ``"generator"`` or ``"client"``.

    Raises
    ------
    InputError
        One generator and fewer than 2 clients.
    """
    fold, grouped_by = window_folds(generators, groups, n_splits=n_splits)
    idx = np.arange(fold.size)
    return [(idx[fold != f], idx[fold == f]) for f in np.unique(fold)], grouped_by


def choose_model(mean_auroc: dict[str, dict[str, float]], *, simpler: str = "linear",
                 margin: float = MODEL_CHOICE_MARGIN,
                 false_alarms: dict[str, float] | None = None) -> tuple[str, str]:
    """Keep the simpler model unless another transfers clearly better: to other generators, or to real speech.

    Two ways to transfer clearly better, tried in this order:

    1. to sessions of a generator the model did not train on: a mean AUROC at least ``margin`` higher than the
       simpler model's for *every* rupture type;
    2. to real speech, when flags per hour on real rupture-free recordings are given for both (recordings that the
       card's own false-alarm figures do not use): at most half the simpler model's flags per hour (which must be
       above zero), while no rupture type's mean AUROC is more than ``margin`` below the simpler model's. A flag on
       such a recording is always a false alarm, and a clinician who reviews many stops reviewing (issue 15), so
       halving them counts as clearly better where the ranking on simulated sessions is no clearly worse.

    Parameters
    ----------
    mean_auroc : dict
        ``{model kind: {rupture type: mean AUROC over the held-out generators}}`` (or over client folds with one
        generator), measured on the same splits.
    simpler : str
        The kind kept by default (the regularised linear model).
    margin : float >= 0
        AUROC the other model must gain over the simpler one for *each* rupture type (rule 1), and the most it may
        lose for any type (rule 2).
    false_alarms : dict, optional
        ``{model kind: flags per hour}`` on real rupture-free recordings, each kind fitted, thresholded and
        confirmed as it would ship. Missing, NaN or a simpler model without flags: rule 1 alone.

    Returns
    -------
    (str, str)
        The chosen kind and why, in one sentence.
    """
    base = mean_auroc[simpler]
    best, best_gain = simpler, -math.inf
    for kind, scores in mean_auroc.items():
        if kind == simpler:
            continue
        gains = [scores.get(t, math.nan) - base.get(t, math.nan) for t in base]
        if gains and all(math.isfinite(g) and g >= margin for g in gains) and min(gains) > best_gain:
            best, best_gain = kind, min(gains)
    if best != simpler:
        return best, (f"{best}: mean AUROC at least {best_gain:.3f} higher than {simpler} for every rupture type "
                      f"(margin {margin:.2f})")
    fa = false_alarms or {}
    base_fa = fa.get(simpler, math.nan)
    best_fa = math.inf
    if math.isfinite(base_fa) and base_fa > 0:
        for kind, scores in mean_auroc.items():
            rate = fa.get(kind, math.nan)
            if kind == simpler or not math.isfinite(rate) or rate > base_fa / 2 or rate >= best_fa:
                continue
            gains = [scores.get(t, math.nan) - base.get(t, math.nan) for t in base]
            if gains and all(math.isfinite(g) and g >= -margin for g in gains):
                best, best_fa = kind, rate
    if best != simpler:
        return best, (f"{best}: {best_fa:.1f} flags per hour on real rupture-free speech against {base_fa:.1f} for "
                      f"{simpler} (at most half), with no rupture type's mean AUROC more than {margin:.2f} lower")
    return simpler, (f"{simpler}: no other model raised the mean AUROC by at least {margin:.2f} for every rupture "
                     "type" + (" or halved the false alarms on real rupture-free speech without losing more than "
                               f"{margin:.2f} AUROC on a rupture type" if fa else "")
                     + ", so the simpler model is kept")


def marker_shift(X: np.ndarray, y: np.ndarray, generators: np.ndarray, *,
                 names: Sequence[str]) -> list[dict]:
    """How much each marker differs between generators on windows without rupture.

    Windows of no rupture are compared, so the figure measures the recording and the voices, not how often
    each generator places ruptures.

    Parameters
    ----------
    X : np.ndarray, shape (n, n_markers)
        Marker values (NaN where undefined; NaN values are left out).
    y : np.ndarray of int, shape (n,)
        Class per window (0 = no rupture).
    generators : np.ndarray of str, shape (n,)
    names : sequence of str, length n_markers

    Returns
    -------
    list of dict
        Per marker, in ``names`` order: ``{"marker", "shift": {"B vs A": {"smd", "ks", "n": {A: int, B: int}}}}``
        for each pair of generators A < B (sorted): ``smd`` the standardised mean difference (mean of B minus mean
        of A over the pooled SD, Cohen's d), ``ks`` the two-sample Kolmogorov–Smirnov statistic (largest gap
        between the two empirical distribution functions, in [0, 1]); NaN with fewer than 2 values on a side.
        ``shift`` is empty with one generator.

    References
    ----------
    Cohen (1988), *Statistical power analysis for the behavioral sciences*, for d; Massey (1951) for the
    Kolmogorov–Smirnov test.
    """
    from scipy.stats import ks_2samp

    gens = np.asarray(generators)
    none = np.asarray(y) == 0
    pairs = list(itertools.combinations(sorted(np.unique(gens).tolist()), 2))
    rows = []
    for j, name in enumerate(names):
        shift = {}
        for a, b in pairs:
            va = X[none & (gens == a), j]
            vb = X[none & (gens == b), j]
            va, vb = va[np.isfinite(va)], vb[np.isfinite(vb)]
            smd = ks = math.nan
            if va.size >= 2 and vb.size >= 2:
                pooled = math.sqrt(((va.size - 1) * va.var(ddof=1) + (vb.size - 1) * vb.var(ddof=1))
                                   / (va.size + vb.size - 2))
                smd = float((vb.mean() - va.mean()) / pooled) if pooled > 0 else (0.0 if vb.mean() == va.mean()
                                                                                  else math.copysign(math.inf,
                                                                                                     vb.mean() - va.mean()))
                ks = float(ks_2samp(va, vb).statistic)
            shift[f"{b} vs {a}"] = {"smd": _round(smd), "ks": _round(ks), "n": {a: int(va.size), b: int(vb.size)}}
        rows.append({"marker": name, "shift": shift})
    return rows


def marker_use(estimator, X: np.ndarray, y: np.ndarray, *, names: Sequence[str], n_repeats: int = 3,
               min_importance: float = 0.002, seed: int = 0) -> dict[str, dict]:
    """Whether and how much the fitted model reads each marker.

    Importance is permutation importance (Breiman 2001): how much the mean one-against-the-rest AUROC of the two
    rupture types falls when the marker's values are shuffled across windows, averaged over ``n_repeats``
    shuffles; it applies to the linear and the tree model alike. For the linear model the standardised
    coefficient is given too (largest over the rupture types of the class's coefficient minus the mean
    coefficient over classes; L2 regularisation leaves every coefficient non-zero, so its size is what counts).

    Parameters
    ----------
    estimator : fitted classifier
        With ``predict_proba``; a ``CalibratedClassifierCV`` or the ``Pipeline`` itself.
    X : np.ndarray, shape (n, n_markers) or (n, 2 * n_markers)
        The windows the model was fitted on, in its column order; with the session baseline
        (:func:`models.artifact.session_baseline`) column ``j + n_markers`` is marker ``j``'s departure from its
        session's usual value, shuffled together with column ``j`` (one marker, one importance).
    y : np.ndarray of int, shape (n,)
    names : sequence of str
        Marker names in column order (``n_markers`` of them).
    n_repeats : int >= 1
    min_importance : float >= 0
        A marker counts as used when its importance (AUROC) is at least this.
    seed : int

    Returns
    -------
    dict
        ``{marker: {"importance": float, "coefficient": float or None, "used": bool}}``.

    References
    ----------
    Breiman (2001), Random forests, Machine Learning 45, 5-32 (permutation importance).
    """
    types = [k for k in (1, 2) if 0 < (y == k).sum() < y.size]

    def score(M: np.ndarray) -> float:
        p = _class_proba(estimator, M)
        return float(np.mean([_auroc(y == k, p[:, k]) for k in types]))

    n = len(names)
    if n == 0 or X.shape[1] % n:
        raise ValueError(f"X must have one or two columns per marker. Got {X.shape[1]} columns for {n} markers "
                         "instead.")
    rng = np.random.default_rng(seed)
    base = score(X)
    coef = _standardised_coefficients(estimator)
    out = {}
    for j, name in enumerate(names):
        cols = list(range(j, X.shape[1], n))
        size = None if coef is None else _round(float(np.max(coef[cols])))
        column = X[:, j]
        if np.all(np.isnan(column)) or np.nanmin(column) == np.nanmax(column):  # nothing to shuffle
            out[name] = {"importance": 0.0, "coefficient": size, "used": False}
            continue
        drops = []
        for _ in range(n_repeats):
            M = X.copy()
            M[:, cols] = M[rng.permutation(M.shape[0])][:, cols]
            drops.append(base - score(M))
        imp = float(np.mean(drops))
        out[name] = {"importance": _round(imp), "coefficient": size, "used": bool(imp >= min_importance)}
    return out


def base_pipeline(estimator):
    """The fitted ``Pipeline`` inside a ``CalibratedClassifierCV`` fitted with ``ensemble=False`` (the one fitted on
    all windows), or ``estimator`` itself when it is not calibrated.

    Used to read the model's own steps (for example the logistic
    regression's coefficients). With ``ensemble=True`` there is one fitted
    pipeline per fold and the first one is returned.

    Parameters
    ----------
    estimator : sklearn estimator
        A fitted ``CalibratedClassifierCV``, or a fitted ``Pipeline``.

    Returns
    -------
    sklearn estimator
        The fitted pipeline; nothing is copied.
    """
    cal = getattr(estimator, "calibrated_classifiers_", None)
    return cal[0].estimator if cal else estimator


def _standardised_coefficients(estimator) -> np.ndarray | None:
    """Per marker, the largest (over rupture types) coefficient contrast of a linear pipeline; None otherwise."""
    pipe = base_pipeline(estimator)
    clf = getattr(pipe, "named_steps", {}).get("classify")
    if clf is None or not hasattr(clf, "coef_"):
        return None
    coef = clf.coef_
    contrast = coef - coef.mean(axis=0)
    rows = [list(clf.classes_).index(k) for k in (1, 2) if k in clf.classes_]
    return np.abs(contrast[rows]).max(axis=0)


def _auroc(truth: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve by the Mann–Whitney rank sum (ties get mean ranks), as ``roc_auc_score``."""
    from scipy.stats import rankdata

    n_pos = int(truth.sum())
    n_neg = truth.size - n_pos
    ranks = rankdata(score)
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _class_proba(estimator, X: np.ndarray, n_classes: int = 3) -> np.ndarray:
    """``predict_proba`` with one column per class 0..n_classes-1 (0 for classes the model never saw)."""
    from threadpoolctl import threadpool_limits

    out = np.zeros((X.shape[0], n_classes))
    with threadpool_limits(limits=1):  # see models.training.one_thread
        out[:, np.asarray(estimator.classes_, dtype=int)] = estimator.predict_proba(X)
    return out


def _round(v: float, digits: int = 4) -> float:
    return round(v, digits) if math.isfinite(v) else v
