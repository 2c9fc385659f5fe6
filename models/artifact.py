"""Save and load classifier artifacts (skops) with their model cards.

An artifact is a folder ``models/artifacts/<version>/`` holding
``model.skops``, ``model_card.json`` and ``MODEL_CARD.md``. Folders are never
overwritten. The loader refuses an artifact whose feature names or
scikit-learn version do not match this code, and a card whose marker list,
inputs or context do not belong to its model file (``model_binding_sha256``).
The shipped default classifier is the folder named in
``models/artifacts/DEFAULT``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ModelArtifactError, not_a_file
from pipeline.features import FEATURE_NAMES
from pipeline.types import RUPTURE_LABELS

# how the card names what found the speech and told the voices apart ("analysis")
_METHOD_NAMES = {"silero": "Silero", "segmentation": "the segmentation model", "resemblyzer": "resemblyzer",
                 "campplus": "CAM++"}

ARTIFACTS_DIR = Path(__file__).parent / "artifacts"
MODEL_FILE = "model.skops"
CARD_FILE = "model_card.json"
CARD_MD_FILE = "MODEL_CARD.md"
CLASSES = ("none", *RUPTURE_LABELS)
MODEL_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"  # a model version: a folder name, never a path
BINDING_FIELD = "model_binding_sha256"
BINDING_SINCE = "2026-12-05"  # cards saved from this day on hold the binding digest


def _shipped_binding(folder: Path) -> str | None:
    """The binding digest in a shipped model's card, None when it cannot be read."""
    try:
        return json.loads((folder / CARD_FILE).read_text(encoding="utf-8")).get(BINDING_FIELD)
    except (OSError, ValueError, AttributeError):
        return None


def _saved_before_binding(created_at) -> bool:
    """Whether a card's ``created_at`` (ISO 8601) is from before cards held the binding digest; False when it is
    missing or not a date (such a card cannot show it may lack the digest)."""
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(str(created_at)).date() < dt.date.fromisoformat(BINDING_SINCE)
    except ValueError:
        return False


@dataclass(frozen=True)
class ModelBundle:
    """A loaded classifier with its card.

    ``estimator`` is one fitted scikit-learn object with ``predict_proba`` whose ``classes_`` are 0, 1, 2 for
    ``CLASSES`` (none, withdrawal, confrontation): a ``Pipeline`` (``sim-v1``), or a ``CalibratedClassifierCV``
    around one (models trained for transfer, :func:`models.training.fit_calibrated`); ``threshold`` is the
    probability from which a window is flagged.
    """

    estimator: Any
    card: dict
    path: Path

    @property
    def version(self) -> str:
        return str(self.card["version"])

    @property
    def threshold(self) -> float:
        return float(self.card["threshold"]["value"])

    def class_threshold(self, class_index: int) -> float:
        """Flag threshold of one rupture class: the card's per-class value, else its single value."""
        per = self.card["threshold"].get("per_class", {})
        return float(per.get(CLASSES[class_index], self.threshold))

    def class_confirm(self, class_index: int) -> float | None:
        """Probability a flagged stretch of one rupture class must reach somewhere (card ``threshold.confirm``).

        None for cards without it (models before ``sim-v5``): every stretch at the threshold is flagged.
        """
        confirm = self.card["threshold"].get("confirm") or {}
        value = confirm.get(CLASSES[class_index])
        return None if value is None else float(value)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The markers the model reads, in its column order (a subset of ``FEATURE_NAMES``)."""
        return tuple(self.card["feature_names"])

    def columns(self) -> list[int]:
        """Positions of the model's features in ``FEATURE_NAMES``."""
        return [FEATURE_NAMES.index(n) for n in self.feature_names]

    @property
    def session_baseline(self) -> bool:
        """Whether the model reads each marker beside its departure from the session's usual value
        (:func:`session_baseline`); False for cards without it (``sim-v1``, ``sim-v2``)."""
        return bool(self.card.get("inputs", {}).get("session_baseline", False))

    def model_input(self, X, sessions=None):
        """The estimator's input for windows of one or more sessions: ``X`` itself, or with the session baseline.

        Parameters
        ----------
        X : np.ndarray, shape (n_windows, n_model_features)
            The model's features (``columns()`` of ``FEATURE_NAMES``).
        sessions : np.ndarray, shape (n_windows,), optional
            Session of each window; None: all windows belong to one session.

        Returns
        -------
        np.ndarray, shape (n_windows, n_model_features) or (n_windows, 2 * n_model_features)
        """
        if not self.session_baseline:
            return X
        import numpy as np

        return session_baseline(X, np.zeros(len(X), dtype=int) if sessions is None else sessions)

    @property
    def context_windows(self) -> int:
        """Windows averaged into each window's probability (:func:`context_mean`); 1 for cards without it."""
        return int(self.card.get("context", {}).get("windows", 1))

    def probabilities(self, X, sessions=None):
        """Probability per class of each window, averaged over the model's context in its session.

        Parameters
        ----------
        X : np.ndarray, shape (n_windows, n_model_features)
            The model's features (``columns()`` of ``FEATURE_NAMES``), windows of a session in time order.
        sessions : np.ndarray of str, shape (n_windows,), optional
            Session of each window; None: all windows belong to one session.

        Returns
        -------
        np.ndarray, shape (n_windows, 3)
            Probabilities of none, withdrawal, confrontation.
        """
        import numpy as np

        from models.transfer import _class_proba

        if sessions is None:
            sessions = np.zeros(np.shape(X)[0], dtype=int)
        proba = _class_proba(self.estimator, self.model_input(X, sessions))
        return context_mean(proba, sessions, self.context_windows)


def session_baseline(X, sessions):
    """Each window's markers beside their departure from the usual value of its own session.

    The usual value is the median of the marker over the session's windows (NaN windows left out), and the
    departure is the window's value minus it. A quiet child, a therapist who explains at length or a far
    microphone then reads as that session's ordinary, while a stretch that moves away from it stands out: a 3RS
    rupture is a change in the relationship within a session (Eubanks, Muran & Safran 2015), and normalising
    each recording by its own statistics is the usual defence against what differs between recordings (as
    cepstral mean normalisation in speech recognition, Furui 1981). A session of one window has departures of
    zero: nothing to compare with.

    Parameters
    ----------
    X : np.ndarray, shape (n_windows, n_markers)
        Markers (NaN allowed).
    sessions : np.ndarray, shape (n_windows,)
        Session of each window (any order).

    Returns
    -------
    np.ndarray, shape (n_windows, 2 * n_markers)
        ``X``, then the departures in the same column order (NaN where the window's value or the session's
        median is unknown).

    References
    ----------
    Eubanks, Muran & Safran (2015), Rupture Resolution Rating System (3RS): Manual.
    Furui (1981), Cepstral analysis technique for automatic speaker verification, IEEE Trans. ASSP 29(2).
    """
    import warnings

    import numpy as np

    X = np.asarray(X, dtype=float)
    sessions = np.asarray(sessions)
    if sessions.shape[0] != X.shape[0]:
        raise ValueError(f"one session per window is needed. Got {sessions.shape[0]} sessions for {X.shape[0]} "
                         "windows instead.")
    departure = np.full_like(X, np.nan)
    for session in np.unique(sessions):
        rows = sessions == session
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a marker never measured in the session: NaN
            usual = np.nanmedian(X[rows], axis=0)
        departure[rows] = X[rows] - usual
    return np.hstack([X, departure])


def confirmed_windows(p, threshold: float, confirm: float | None, sessions, starts=None, ends=None):
    """Windows flagged with a double threshold: at or above ``threshold``, in a stretch that reaches ``confirm``.

    Windows of one session at or above the threshold form one stretch while they touch in time (a window
    starting after the end of the stretch's last window starts another), as :func:`models.flagging.flag_windows`
    merges them into one flag; without times, consecutive rows of a session touch. A stretch is flagged only when
    its highest probability reaches ``confirm``: hysteresis thresholding, as in event detection (Canny 1986; sound
    event detection and voice activity detection use the same two thresholds), so that a rupture episode, which
    has a core the model is sure of, keeps its whole extent, while a stretch that only brushes the threshold (an
    odd minute of ordinary talk) is left out. ``confirm`` None or at most ``threshold``: the threshold alone.

    Parameters
    ----------
    p : np.ndarray, shape (n_windows,)
        Probability of one rupture type per window, windows of each session in time order.
    threshold : float in (0, 1)
        Flag threshold.
    confirm : float in (0, 1) or None
        Probability a stretch must reach somewhere to be flagged.
    sessions : np.ndarray, shape (n_windows,)
        Session of each window (windows of a session contiguous).
    starts, ends : np.ndarray, shape (n_windows,), optional
        Window start and end times (s).

    Returns
    -------
    np.ndarray of bool, shape (n_windows,)
        Whether each window is flagged.

    References
    ----------
    Canny (1986), A computational approach to edge detection, IEEE Trans. PAMI 8(6) (hysteresis thresholding).
    """
    import numpy as np

    p = np.asarray(p, dtype=float)
    above = p >= threshold
    if confirm is None or confirm <= threshold or p.size == 0:
        return above
    sessions = np.asarray(sessions)
    out = np.zeros(p.size, dtype=bool)
    stretch: list[int] = []

    def close() -> None:
        if stretch and p[stretch].max() >= confirm:
            out[stretch] = True
        stretch.clear()

    for i in range(p.size):
        if not above[i]:
            if starts is None:
                close()
            continue
        if stretch:
            last = stretch[-1]
            apart = (sessions[i] != sessions[last]
                     or (starts[i] > ends[last] if starts is not None else i != last + 1))
            if apart:
                close()
        stretch.append(i)
    close()
    return out


def context_mean(proba, sessions, windows: int):
    """Each window's probabilities averaged with its neighbours of the same session (a centred moving mean).

    A 3RS rupture is an episode that lasts (withdrawal and confrontation episodes of 30 s to minutes; Eubanks,
    Muran & Safran 2015), while a marker that departs in one 30-s window alone is often an accident of the
    recording (a clip boundary, a change of microphone level, one long pause). With analysis windows of 30 s
    every 10 s, ``windows=3`` lets a window's probability stand for 50 s of talk. At a session's first and last
    window the edge window is repeated (``scipy.ndimage.uniform_filter1d``, ``mode="nearest"``).

    Parameters
    ----------
    proba : np.ndarray, shape (n_windows, n_classes)
        Probabilities, windows of each session contiguous and in time order.
    sessions : np.ndarray, shape (n_windows,)
        Session of each window.
    windows : int >= 1
        Width of the moving mean in windows (odd; 1 leaves ``proba`` as it is).

    Returns
    -------
    np.ndarray, shape (n_windows, n_classes)
        The averaged probabilities (rows still sum to 1).

    Raises
    ------
    ValueError
        ``windows`` is not a positive odd integer.
    """
    import numpy as np
    from scipy.ndimage import uniform_filter1d

    if windows < 1 or windows % 2 == 0:
        raise ValueError(f"context windows must be a positive odd number. Got {windows} instead.")
    proba = np.asarray(proba, dtype=float)
    if windows == 1 or proba.shape[0] == 0:
        return proba
    sessions = np.asarray(sessions)
    out = np.empty_like(proba)
    change = np.flatnonzero(sessions[1:] != sessions[:-1]) + 1
    for a, b in zip(np.r_[0, change], np.r_[change, sessions.size]):
        out[a:b] = uniform_filter1d(proba[a:b], size=windows, axis=0, mode="nearest")
    return np.clip(out, 0.0, 1.0, out=out)  # the filter's running sum can leave 1 + 1e-16


def library_versions() -> dict[str, str]:
    """Versions of the libraries a saved model depends on."""
    import numpy
    import sklearn
    import skops

    return {"scikit-learn": sklearn.__version__, "numpy": numpy.__version__, "skops": skops.__version__}


def code_version() -> str:
    """Short git commit of this code, or ``unknown`` outside a git checkout."""
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip() or "unknown"
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def save_model(estimator: Any, card: dict, *, root: Path = ARTIFACTS_DIR) -> Path:
    """Persist a fitted estimator and its card under ``root/<card['version']>/``.

    Parameters
    ----------
    estimator : sklearn Pipeline
        Fitted classifier.
    card : dict
        Model card; must hold ``version``, ``feature_names``, ``threshold`` and
        ``summary`` (the first line of the Markdown card).
    root : Path
        Folder of artifacts.

    Returns
    -------
    Path
        The new artifact folder.

    Raises
    ------
    ModelArtifactError
        The version folder already exists (artifacts are never overwritten).
    """
    import skops.io as sio

    folder = Path(root) / str(card["version"])
    if folder.exists():
        raise ModelArtifactError(f"{folder}: artifact already exists; artifacts are never overwritten, "
                                 "choose a new version")
    folder.mkdir(parents=True)
    from pipeline.types import to_jsonable

    card = to_jsonable({**card, "library_versions": library_versions()})  # NaN → null: valid JSON
    sio.dump(estimator, folder / MODEL_FILE)
    card[BINDING_FIELD] = model_binding(folder / MODEL_FILE, card)
    (folder / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    (folder / CARD_MD_FILE).write_text(render_card_markdown(card))
    return folder


def model_binding(model_path: Path, card: dict) -> str:
    """The digest that ties a card's description of the model's inputs to the model file.

    The model reads a bare matrix: nothing in ``model.skops`` says which column is which marker. A card whose
    ``feature_names`` were reordered, or a card copied from another model, would make it read each marker as
    another one without any error. The digest covers the model file's bytes and the card fields that lay out
    the input (``feature_names``, ``inputs``, ``context``); the card's other fields (threshold, figures, text)
    may change without it.

    Parameters
    ----------
    model_path : Path
        The ``model.skops`` file.
    card : dict
        The model card (its ``feature_names``, ``inputs`` and ``context`` are read).

    Returns
    -------
    str
        SHA-256, 64 hexadecimal digits.

    Raises
    ------
    OSError
        The model file cannot be read.
    """
    digest = hashlib.sha256()
    with open(model_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    layout = {"feature_names": card.get("feature_names"), "inputs": card.get("inputs", {}),
              "context": card.get("context", {})}
    digest.update(json.dumps(layout, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    return digest.hexdigest()


def _mean_auroc_table(label: str, rows: dict, types: list, chosen) -> list[str]:
    """Markdown rows of a candidate table: ``label``, mean AUROC per rupture type, whether ``chosen(key)``."""
    out = [f"| {label} | " + " | ".join(f"mean AUROC {t}" for t in types) + " | chosen |",
           "|---|" + "---|" * len(types) + "---|"]
    return out + [f"| {key} | " + " | ".join(_md_num(v.get(t)) for t in types)
                  + f" | {'yes' if chosen(key) else 'no'} |" for key, v in rows.items()]


def render_card_markdown(card: dict) -> str:
    """The human-readable model card.

    Its first line says what the model was trained on; the first table after it is the headline figure: the
    cross-generator table (per rupture type and pair of training → held-out generator: AUROC, AUPRC, recall and
    precision at the shipped threshold, Brier score), or, for a model trained on one generator, the
    grouped-by-client cross-validation. Then the same-generator figures, the false alarms on real rupture-free
    speech, the marker shift between generators, the model choice, and the rest of the card.

    Parameters
    ----------
    card : dict
        As :func:`models.training.train` writes it (older cards without transfer figures render too).

    Returns
    -------
    str
        Markdown, ending with a newline.
    """
    lines = [f"{card['summary']}", "", f"# Model card: {card['version']}", ""]
    metrics = card.get("metrics", {})
    # with confirmation levels, recall and precision count the windows the flags cover
    at = (" at the shipped thresholds; recall and precision count the windows the flags cover (at the threshold, in "
          "a stretch that reaches the confirmation level)" if card.get("threshold", {}).get("confirm") else
          " at the shipped thresholds")
    cross = metrics.get("cross_generator", {})
    cv = metrics.get("cross_validation")
    if cross.get("pairs"):
        lines += ["## Transfer across session generators", "",
                  "Each generator's sessions scored by a model trained (and calibrated) only on the others' "
                  f"(leave-one-generator-out),{at}.", "", *_TYPE_TABLE_HEAD.format(
                      what="trained on → scored on").splitlines()]
        # a generator without ruptures (rupture-free real speech) has no AUROC or recall: its line says how many of
        # its windows a model that never trained on it flags
        scored = [p for p in cross["pairs"] if any(p["types"][n].get("n_positive") for n in CLASSES[1:])]
        lines += [_type_row(name, f"{p['train']} → {p['test']}", p["types"][name])
                  for name in CLASSES[1:] for p in scored]
        # the mean of the rows above (the stored figure could come from other scores)
        mean = {name: _mean_finite([p["types"][name].get("auroc") for p in scored]) for name in CLASSES[1:]}
        lines += ["", "Mean AUROC over the held-out generators: "
                  + ", ".join(f"{k} {_md_num(v)}" for k, v in mean.items()) + ".", ""]
        for p in cross["pairs"]:
            if p in scored or "flagged" not in p["types"][CLASSES[1]] or not p["n_windows"]:
                continue
            first, second = (round(100 * p["types"][name]["flagged"] / p["n_windows"]) for name in CLASSES[1:])
            lines += [f"Rupture-free sessions (generator {_md_text(p['test'])}, {p['n_windows']} windows), scored by a "
                      f"model trained on {_md_text(p['train'])}: {first} % of the windows at or above the "
                      f"{CLASSES[1]} threshold, {second} % at or above the {CLASSES[2]} threshold.", ""]
    elif cv:
        lines += [f"## Cross-validation grouped by {cv.get('grouped_by', 'client')}", "",
                  "Trained on one session generator: no cross-generator figure exists for this model.", "",
                  *_TYPE_TABLE_HEAD.format(what="held out").splitlines()]
        lines += [_type_row(name, f"{cv.get('n_splits', '')} folds", m) for name, m in cv["types"].items()]
        lines += [""]
    same = {g: v for g, v in metrics.get("same_generator", {}).items() if "types" in v}
    if same:
        lines += ["## Same generator (new clients of a generator the model trained on)", "",
                  f"Grouped by client within each generator,{at}.", "",
                  *_TYPE_TABLE_HEAD.format(what="generator").splitlines()]
        lines += [_type_row(name, g, v["types"][name]) for name in CLASSES[1:] for g, v in same.items()]
        lines += [""]
    fa = metrics.get("false_alarms")
    if fa:
        lines += ["## False alarms on real rupture-free speech", "",
                  "Every flagged stretch on these recordings is a false alarm (flags as the report shows them: "
                  "windows at the thresholds merged into stretches"
                  + (", each reaching its confirmation level" if card.get("threshold", {}).get("confirm") else "")
                  + ").", "",
                  "| file | minutes | flags | flags per hour |", "|---|---|---|---|"]
        lines += [f"| {_md_text(f['file'])} | {f['minutes']:.1f} | {f['flags']} | {_md_num(f['flags_per_hour'], 1)} |"
                  for f in fa["files"]]
        o = fa["overall"]
        lines += [f"| **overall** ({o['files']} files) | {o['minutes']:.1f} | {o['flags']} | "
                  f"{_md_num(o['flags_per_hour'], 1)} |", ""]
        lines += [f"Set aside, not counted: {_md_text(s['file'])} ({_md_text(s['why'])})." for s in fa.get("skipped", [])]
        lines += [""] if fa.get("skipped") else []
    shift = metrics.get("marker_shift")
    if shift and shift.get("pairs"):
        pairs = shift["pairs"]
        lines += ["## Marker shift between generators (windows without rupture)", "",
                  f"SMD: {shift['smd']}; KS: {shift['ks']}; used: {shift['used']}. Sorted by the largest |SMD|.", "",
                  "| marker | unit | " + " | ".join(f"SMD {p} | KS {p}" for p in pairs) + " | importance | used |",
                  "|---|---|" + "---|---|" * len(pairs) + "---|---|"]
        rows = sorted(shift["markers"], key=lambda r: -max([abs(r["shift"][p]["smd"]) for p in pairs
                                                            if r["shift"][p]["smd"] is not None
                                                            and math.isfinite(r["shift"][p]["smd"])] or [0.0]))
        for r in rows:
            cells = " | ".join(f"{_md_num(r['shift'][p]['smd'], 2)} | {_md_num(r['shift'][p]['ks'], 2)}" for p in pairs)
            lines.append(f"| {r['marker']} | {r.get('unit', '')} | {cells} | {_md_num(r.get('importance'), 4)} | "
                         f"{'yes' if r.get('used') else 'no'} |")
        lines += [""]
    choice = metrics.get("model_comparison")
    if choice:
        means = choice["mean_cross_generator_auroc"]
        types = list(next(iter(means.values())))
        lines += ["## Model choice", "", f"Measured on the same splits ({choice['measured_on']}), each fold with its "
                  "own model and calibration: the means can differ from the cross-generator table's, which is on "
                  "the shipped model's probability scale.", "",
                  *_mean_auroc_table("model", means, types, lambda kind: kind == choice["chosen"])]
        alarms = choice.get("false_alarms")
        if alarms:  # each kind as it would ship, on real rupture-free recordings the false-alarm table does not use
            lines += ["", "False alarms of each kind as it would ship (its own thresholds and confirmation levels) on "
                      "other real rupture-free recordings, which the false-alarm table above does not use ("
                      + ", ".join(_md_text(str(f)) for f in alarms["folders"]) + "):", "",
                      "| model | minutes | flags | flags per hour |", "|---|---|---|---|"]
            lines += [f"| {kind} | {_md_num(v['minutes'], 1)} | {v['flags']} | {_md_num(v['flags_per_hour'], 1)} |"
                      for kind, v in alarms["by_kind"].items()]
            if alarms.get("skipped"):
                lines += ["", "Set aside: " + "; ".join(f"{_md_text(r['file'])}: {_md_text(r['why'])}"
                                                      for r in alarms["skipped"]) + "."]
        lines += ["", f"Chosen: {choice['why']}.", ""]
    reg = metrics.get("regularisation")
    if reg:
        types = list(next(iter(reg["mean_auroc"].values())))
        lines += ["## Regularisation of the linear model", "", "The L2 penalty's C, searched on the same splits: "
                  f"{reg['chosen_by']}. The chosen C's figures are scored on the folds that chose it.", "",
                  *_mean_auroc_table("C", reg["mean_auroc"], types, lambda c: float(c) == reg["chosen"]), ""]
    for key, title in (("training_data", "Training data"), ("intended_use", "Intended use"),
                       ("limitations", "Known limits")):
        if key in card:
            lines += [f"## {title}", "", str(card[key]), ""]
        if key == "training_data" and card.get("skipped_sessions"):
            lines += ["Set aside, not trained on: " + "; ".join(f"{_md_text(r['session'])}: {_md_text(r['why'])}"
                                                              for r in card["skipped_sessions"]) + ".", ""]
    if "estimator" in card:
        lines += ["## Estimator", "", str(card["estimator"]), ""]
        cal = card.get("calibration")
        if cal:
            lines += ["Calibration: " + ", ".join(f"{k} {v}" for k, v in cal.items()) + ".", ""]
    if card.get("analysis"):
        how = card["analysis"]
        lines += ["## Analysis of the training sessions", "",
                  f"speech found by {_METHOD_NAMES.get(how.get('vad_method'), how.get('vad_method'))}, voices told "
                  f"apart by {_METHOD_NAMES.get(how.get('speaker_encoder'), how.get('speaker_encoder'))}: a "
                  "session analysed otherwise gets a note in its report (the markers differ).", ""]
    lines += ["## Features", "", "| name | unit |", "|---|---|"]
    lines += [f"| {n} | {u} |" for n, u in zip(card["feature_names"], card.get("feature_units", []))]
    per = card["threshold"].get("per_class")
    value = ", ".join(f"{k} {v}" for k, v in per.items()) if per else card["threshold"]["value"]
    lines += ["", "## Threshold", "", f"{value}: {card['threshold']['why']}", ""]
    levels = {k: v for k, v in (card["threshold"].get("confirm") or {}).items()
              if v > float((per or {}).get(k, card["threshold"]["value"]))}
    if levels:
        named = " and ".join(f"a {k} stretch is flagged only where it reaches {v} somewhere"
                             for k, v in levels.items())
        others = [k for k in CLASSES[1:] if k not in levels]
        why = str(card["threshold"].get("confirm_why", ""))
        lines += [f"Confirmation level: {named}"
                  + (f" ({' and '.join(others)}: every stretch at the threshold is flagged)" if others else "")
                  + f". {why[:1].upper() + why[1:]}", ""]
    if card.get("inputs", {}).get("session_baseline"):
        lines += ["## Session baseline", "", str(card["inputs"].get("why", "")), ""]
    if card.get("context", {}).get("windows", 1) > 1:
        lines += ["## Context", "", f"{card['context']['windows']} windows: {card['context'].get('why', '')}", ""]
    if "metrics" in card:
        lines += ["## Metrics", "", "```json", json.dumps(card["metrics"], indent=2), "```", ""]
    lines += ["## Library versions", ""] + [f"- {k} {v}" for k, v in card.get("library_versions", {}).items()]
    return "\n".join(lines) + "\n"


_TYPE_TABLE_HEAD = ("| rupture type | {what} | windows | positive | AUROC | AUPRC | recall at threshold | "
                    "precision at threshold | Brier |\n|---|---|---|---|---|---|---|---|---|")


def _mean_finite(values) -> float:
    v = [x for x in values if isinstance(x, (int, float)) and math.isfinite(x)]
    return sum(v) / len(v) if v else math.nan


def _type_row(name: str, what: str, m: dict) -> str:
    return (f"| {name} | {what} | {m['n_windows']} | {m['n_positive']} | {_md_num(m['auroc'])} | "
            f"{_md_num(m['auprc'])} | {_md_num(m['recall'])} | {_md_num(m['precision'])} | {_md_num(m['brier'])} |")


def _md_text(text: str) -> str:
    """A file name or reason in the card's Markdown: on one line (:func:`pipeline.ids.one_line`), ``|`` escaped so
    it stays in its table cell."""
    from pipeline.ids import one_line

    return one_line(text).replace("|", "\\|")


def _md_num(v, digits: int = 3) -> str:
    """A number for a Markdown cell; ``—`` for None and NaN."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.{digits}f}"


ACTIVE_FILE = "ACTIVE"
DEFAULT_FILE = "DEFAULT"


def user_models_dir(data_dir: str | Path) -> Path:
    """Where ``alliance retrain`` saves models: ``<data dir>/models``.

    The folder is not created here.

    Parameters
    ----------
    data_dir : str or Path
        The data directory (``ALLIANCE_DATA_DIR``).

    Returns
    -------
    Path
        ``<data_dir>/models``.
    """
    return Path(data_dir) / "models"


def active_model_path(settings) -> Path | None:
    """The model folder to use: ``ALLIANCE_MODEL__ACTIVE_MODEL``, else the one ``alliance activate-model`` chose
    (``<data dir>/models/ACTIVE``), else None (the shipped default, named in ``models/artifacts/DEFAULT``).

    A folder given by the setting is returned without a check; one named in
    ``ACTIVE`` must hold a model card.

    Parameters
    ----------
    settings : Settings
        ``settings.model.active_model`` and ``settings.data_dir`` are read.

    Returns
    -------
    Path or None
        The model folder; None means the shipped default.

    Raises
    ------
    ModelArtifactError
        The ACTIVE file names a model folder that no longer exists.
    """
    if settings.model.active_model is not None:
        return Path(settings.model.active_model)
    pointer = user_models_dir(settings.data_dir) / ACTIVE_FILE
    if pointer.is_file():
        folder = user_models_dir(settings.data_dir) / pointer.read_text(encoding="utf-8").strip()
        if not (folder / CARD_FILE).is_file():
            raise ModelArtifactError(f"{pointer}: names model {folder.name!r}, which is not in {folder.parent}; "
                                     "run `alliance activate-model VERSION` with an existing version")
        return folder
    return None


def activate_model(settings, version: str) -> Path:
    """Make ``<data dir>/models/<version>`` the active model (it must load with this code); ``"default"`` goes back to
    the shipped default.

    The model is loaded once (:func:`load_model`) before its name is written
    into ``<data dir>/models/ACTIVE``, so a model that would fail at the next
    analysis is refused now. ``"default"`` removes the ``ACTIVE`` file.

    Parameters
    ----------
    settings : Settings
        ``settings.data_dir`` is read.
    version : str
        A model folder name under ``<data dir>/models`` (letters, digits,
        ``.``, ``_`` or ``-``, starting with a letter or digit), or
        ``"default"``.

    Returns
    -------
    Path
        The now active model folder (for ``"default"``, the shipped one).

    Raises
    ------
    ModelArtifactError
        No such model, or it does not load (features, library versions); for
        ``"default"``, the shipped default cannot be found
        (:func:`default_artifact`).
    """
    models = user_models_dir(settings.data_dir)
    if version == "default":  # back to the shipped default
        (models / ACTIVE_FILE).unlink(missing_ok=True)
        return default_artifact()
    if not re.fullmatch(MODEL_NAME, version):
        raise ModelArtifactError(f"{version[:80]!r} must be the name of a model in {models} (letters, digits, '.', "
                                 "'_' or '-', starting with a letter or digit), or 'default' for the shipped model")
    folder = models / version
    if folder.is_dir() and not (folder / CARD_FILE).is_file():
        raise ModelArtifactError(f"{version!r} in {folder.parent} has no {CARD_FILE}; it is not a saved model "
                                 "(restore its card, or train one with `alliance retrain`)")
    if not (folder / CARD_FILE).is_file():
        known = sorted(p.parent.name for p in user_models_dir(settings.data_dir).glob(f"*/{CARD_FILE}"))
        raise ModelArtifactError(f"no model {version!r} in {folder.parent}; available: {', '.join(known) or 'none'} "
                                 "(train one with `alliance retrain`)")
    load_model(folder)
    (user_models_dir(settings.data_dir) / ACTIVE_FILE).write_text(version + "\n", encoding="utf-8")
    return folder


def default_artifact(root: Path = ARTIFACTS_DIR) -> Path:
    """The shipped default classifier: the artifact folder named in ``root/DEFAULT``.

    Parameters
    ----------
    root : Path
        Folder of shipped artifacts.

    Returns
    -------
    Path
        ``root/<name in DEFAULT>``.

    Raises
    ------
    ModelArtifactError
        ``DEFAULT`` is missing or empty, or names a folder without a model card.
    """
    pointer = Path(root) / DEFAULT_FILE
    name = pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else ""
    if not name:
        raise ModelArtifactError(f"{pointer}: no default classifier named; write the name of a model folder in "
                                 f"{root} into it, or set ALLIANCE_MODEL__ACTIVE_MODEL")
    folder = Path(root) / name
    if not (folder / CARD_FILE).is_file():
        known = sorted(p.parent.name for p in Path(root).glob(f"*/{CARD_FILE}"))
        raise ModelArtifactError(f"{pointer}: names model {name!r}, which is not in {root}; available: "
                                 f"{', '.join(known) or 'none'}")
    return folder


def _check_thresholds(folder: Path, threshold) -> None:
    """Refuse a card whose flag thresholds are not probabilities in (0, 1) (a hand-edited card)."""
    def bad(v) -> bool:
        return isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1

    per = threshold.get("per_class", {}) if isinstance(threshold, dict) else None
    if (not isinstance(threshold, dict) or bad(threshold.get("value")) or not isinstance(per, dict)
            or any(bad(v) for v in per.values())):
        raise ModelArtifactError(f"{folder.name}: {CARD_FILE}: threshold must be {{'value': p, 'per_class': "
                                 f"{{type: p}}}} with every p between 0 and 1. Got {json.dumps(threshold)[:80]} instead.")
    confirm = threshold.get("confirm", {})
    if not isinstance(confirm, dict) or any(bad(v) or k not in CLASSES[1:] for k, v in confirm.items()):
        raise ModelArtifactError(f"{folder.name}: {CARD_FILE}: threshold.confirm must be {{type: p}} for the rupture "
                                 f"types with every p between 0 and 1. Got {json.dumps(confirm)[:80]} instead.")


MAX_CONTEXT_WINDOWS = 99  # about 16 minutes of talk with 10-s hops; more is no longer one episode


def _check_card_fields(folder: Path, card: dict) -> None:
    """Refuse a hand-edited card whose version, marker list or context cannot be used, naming the field."""
    import re

    def refuse(text: str) -> None:
        raise ModelArtifactError(f"{folder.name}: {CARD_FILE}: {text}")

    version = card.get("version")
    if not isinstance(version, str) or not re.fullmatch(MODEL_NAME, version):
        refuse(f"version must be a model name (1-64 letters, digits, '.', '_', '-'). Got "
               f"{json.dumps(version)[:40]} instead.")
    names = card.get("feature_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        refuse(f"feature_names must be a list of marker names. Got {json.dumps(names)[:40]} instead.")
    if not isinstance(card.get("library_versions", {}), dict):
        refuse(f"library_versions must be an object such as {{\"scikit-learn\": \"1.9.1\"}}. Got "
               f"{json.dumps(card.get('library_versions'))[:40]} instead.")
    context = card.get("context", {})
    windows = context.get("windows", 1) if isinstance(context, dict) else None
    if (isinstance(windows, bool) or not isinstance(windows, int) or not 1 <= windows <= MAX_CONTEXT_WINDOWS
            or windows % 2 == 0):
        refuse(f"context.windows must be a positive odd whole number up to {MAX_CONTEXT_WINDOWS}. Got "
               f"{json.dumps(context)[:40]} instead.")


def load_model(folder: Path | None = None) -> ModelBundle:
    """Load an artifact and check it against this code.

    Parameters
    ----------
    folder : Path, optional
        Artifact folder; the shipped default (:func:`default_artifact`) when omitted.

    Returns
    -------
    ModelBundle

    Raises
    ------
    ModelArtifactError
        Files are missing, the card names a feature this code does not compute
        (or none, or one twice),
        the scikit-learn version differs from the one that saved the model,
        or the file holds types other than scikit-learn and numpy ones.
    """
    import sklearn
    import skops.io as sio

    folder = Path(folder) if folder is not None else default_artifact()
    card_path, model_path = folder / CARD_FILE, folder / MODEL_FILE
    if not folder.is_dir():
        raise ModelArtifactError(f"{folder}: the model folder does not exist" if not folder.exists()
                                 else f"{folder}: a file, not a model folder")
    for part in (model_path, card_path):  # a pipe or /dev/zero would be read for ever
        what = not_a_file(part)
        if what not in (None, "missing"):
            raise ModelArtifactError(f"{folder}: {part.name} is not a regular file ({what})")
    if not card_path.is_file() or not model_path.is_file():
        raise ModelArtifactError(f"{folder}: not a classifier artifact (expected {MODEL_FILE} and {CARD_FILE})")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelArtifactError(f"{folder.name}: {CARD_FILE} is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(card, dict):
        raise ModelArtifactError(f"{folder.name}: {CARD_FILE} must hold a JSON object")
    _check_thresholds(folder, card.get("threshold"))
    _check_card_fields(folder, card)
    names = list(card["feature_names"])
    unknown = sorted(set(names) - set(FEATURE_NAMES))
    repeated = sorted({n for n in names if names.count(n) > 1})
    if unknown or not names or repeated:
        raise ModelArtifactError(
            f"{folder.name}: the model's features do not match this code (unknown {unknown}, repeated {repeated}"
            f"{', none at all' if not names else ''}); retrain it with this version")
    saved = card.get("library_versions", {}).get("scikit-learn")
    if saved != sklearn.__version__:
        raise ModelArtifactError(
            f"{folder.name}: saved with scikit-learn {saved}, this environment has {sklearn.__version__}; "
            "install the version on the card or retrain the model")
    try:
        untrusted = sio.get_untrusted_types(file=model_path)
    except Exception as exc:  # not a zip archive, truncated, ...
        raise ModelArtifactError(f"{folder.name}: {MODEL_FILE} cannot be read ({exc.__class__.__name__})") from None
    foreign = [t for t in untrusted if not t.split(".")[0] in ("sklearn", "numpy")]
    if foreign:
        raise ModelArtifactError(f"{folder.name}: {MODEL_FILE} holds unexpected types {foreign}; refusing to load")
    try:
        estimator = sio.load(model_path, trusted=untrusted)
    except Exception as exc:  # a damaged file fails inside skops/zipfile in many ways; one line names it
        raise ModelArtifactError(f"{folder.name}: {MODEL_FILE} cannot be read ({exc.__class__.__name__})") from None
    if [int(c) for c in estimator.classes_] != list(range(len(CLASSES))):
        raise ModelArtifactError(f"{folder.name}: classes {list(estimator.classes_)}, expected 0..{len(CLASSES) - 1} "
                                 f"for {', '.join(CLASSES)}")
    bundle = ModelBundle(estimator=estimator, card=card, path=folder)
    inputs = card.get("inputs", {})
    if not isinstance(inputs, dict) or not isinstance(inputs.get("session_baseline", False), bool):
        raise ModelArtifactError(f"{folder.name}: the card's inputs.session_baseline must be true or false")
    expected = len(names) * (2 if bundle.session_baseline else 1)
    width = getattr(estimator, "n_features_in_", expected)
    if width != expected:
        raise ModelArtifactError(f"{folder.name}: the model reads {width} inputs where its card describes {expected} "
                                 f"({len(names)} markers, inputs.session_baseline "
                                 f"{str(bundle.session_baseline).lower()}); the card does not belong to this model")
    bound = card.get(BINDING_FIELD)
    if bound is None and not _saved_before_binding(card.get("created_at")):
        raise ModelArtifactError(
            f"{folder.name}: {CARD_FILE}: has no {BINDING_FIELD}, which every card saved since {BINDING_SINCE} holds "
            f"(it ties the card's markers to {MODEL_FILE}); restore the card saved with the model or retrain")
    if bound is not None and bound != model_binding(model_path, card):  # absent: saved before 5 December 2026
        raise ModelArtifactError(
            f"{folder.name}: {CARD_FILE}: its markers or inputs do not belong to {MODEL_FILE} (the card's "
            "feature_names, inputs or context were edited, or the card comes from another model); restore the "
            "card saved with the model or retrain")
    claimed = str(card.get("version", "")).strip().lower()  # "SIM-V6" reads as sim-v6 to a person
    shipped = next((p for p in ARTIFACTS_DIR.iterdir() if p.name.lower() == claimed), ARTIFACTS_DIR / "-") \
        if re.fullmatch(MODEL_NAME, claimed) else ARTIFACTS_DIR / "-"
    if ((shipped / CARD_FILE).is_file() and folder.resolve() != shipped.resolve()
            and _shipped_binding(shipped) != bound):
        # reports and cards name the model by its version: another model may not pass for a shipped one
        raise ModelArtifactError(
            f"{folder.name}: {CARD_FILE}: says it is the shipped model {card['version']}, but it is another model "
            f"(its {MODEL_FILE} or markers differ); give it its own version")
    return bundle
