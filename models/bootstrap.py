"""Train the first (bootstrap) rupture classifier from rule-generated feature windows.

No rupture-labelled therapy audio is public. Until the session simulator
exists, this script draws synthetic *feature windows* (not audio) from
hand-set distributions that encode the 3RS descriptions of ruptures
(Eubanks, Muran & Safran 2015) and the turn-taking findings they rest on:

* **withdrawal**: the client speaks less, answers questions with minimal
  responses, after longer latencies, with more and longer silences; the
  therapist asks more questions; client voice quieter and flatter;
* **confrontation**: more overlaps (interruptions), the client holds the
  floor more, answers fast, louder and higher;
* **none**: ordinary talk, including some short answers and pauses.

The class distributions overlap on every single marker, so no one marker
separates them. The model card says all of this in its first line. Run::

    python -m models.bootstrap            # writes models/artifacts/bootstrap-v1/
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
from pathlib import Path

import numpy as np

from models.artifact import ARTIFACTS_DIR, CLASSES, code_version, save_model
from pipeline.features import FEATURE_NAMES, FEATURE_UNITS

# mean and sd per class (none, withdrawal, confrontation); the bootstrap reads these 14 markers only
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
BOOTSTRAP_FEATURES = tuple(_PROFILE)  # the model's column order
_BOUNDS = {"client_speech_share": (0, 1), "silence_share": (0, 1), "client_minimal_response_share": (0, 1)}


def synthetic_windows(n_per_class: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw labelled feature windows from the class profiles.

    Parameters
    ----------
    n_per_class : int > 0
        Windows per class.
    seed : int
        Random seed.

    Returns
    -------
    X : np.ndarray, shape (3 * n_per_class, len(BOOTSTRAP_FEATURES))
        Feature values in ``BOOTSTRAP_FEATURES`` order; about 10 % of the latency
        values are NaN (windows without a therapist → client change).
    y : np.ndarray, shape (3 * n_per_class,)
        0 none, 1 withdrawal, 2 confrontation.
    """
    if set(_PROFILE) - set(FEATURE_NAMES):
        raise RuntimeError("bootstrap profiles name markers this code does not compute; update models/bootstrap.py")
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for label in range(len(CLASSES)):
        cols = []
        for name in BOOTSTRAP_FEATURES:
            mu, sd = _PROFILE[name][label]
            col = rng.normal(mu, sd, n_per_class)
            lo, hi = _BOUNDS.get(name, (0.0 if not name.endswith("_z") else -np.inf, np.inf))
            cols.append(np.clip(col, lo, hi))
        x = np.column_stack(cols)
        x[rng.random(n_per_class) < 0.1, BOOTSTRAP_FEATURES.index("client_response_latency_s")] = np.nan
        xs.append(x)
        ys.append(np.full(n_per_class, label))
    return np.vstack(xs), np.concatenate(ys)


def make_pipeline():
    """Median imputation, standardisation, multinomial logistic regression."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler()),
                     ("classify", LogisticRegression(C=0.5, max_iter=2000))])


def train(*, version: str = "bootstrap-v1", seed: int = 20261129, n_per_class: int = 1500,
          root: Path = ARTIFACTS_DIR) -> Path:
    """Fit the bootstrap classifier, evaluate it on held-out synthetic windows, and save it.

    Returns
    -------
    Path
        The artifact folder.
    """
    from sklearn.metrics import roc_auc_score

    X, y = synthetic_windows(n_per_class, seed=seed)
    X_test, y_test = synthetic_windows(n_per_class // 3, seed=seed + 1)
    model = make_pipeline().fit(X, y)
    proba = model.predict_proba(X_test)
    metrics = {f"auroc_{name}_vs_rest_synthetic_holdout": round(float(roc_auc_score(y_test == k, proba[:, k])), 4)
               for k, name in enumerate(CLASSES) if k > 0}
    data_hash = hashlib.sha256(np.ascontiguousarray(X).tobytes() + y.tobytes()).hexdigest()
    card = {
        "summary": ("Trained on synthetic feature windows drawn from hand-set distributions (no audio, no "
                    "therapy data); a bootstrap model to be replaced by one trained on labelled sessions."),
        "version": version,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "training_data": (f"{3 * n_per_class} windows ({n_per_class} per class: none, withdrawal, confrontation) "
                          f"sampled by models/bootstrap.py with seed {seed}; sha256 {data_hash}. The class profiles "
                          "encode 3RS descriptions of withdrawal and confrontation ruptures (Eubanks, Muran & "
                          "Safran 2015); they are not measured from real sessions."),
        "feature_names": list(BOOTSTRAP_FEATURES),
        "feature_units": [FEATURE_UNITS[FEATURE_NAMES.index(n)] for n in BOOTSTRAP_FEATURES],
        "classes": list(CLASSES),
        "estimator": "SimpleImputer(median) → StandardScaler → LogisticRegression(C=0.5)",
        "threshold": {"value": 0.5, "why": "probability of a rupture class above which a window is flagged; "
                                            "0.5 is a neutral default, not tuned on real data"},
        "metrics": metrics,
        "intended_use": "Flags windows for a clinician to review. It never diagnoses and never replaces the "
                        "therapist's judgement.",
        "limitations": "Never trained or validated on real therapy audio: its probabilities are not calibrated "
                       "to any clinic. Its AUROC is measured on synthetic windows from the same generator, "
                       "so it says nothing about real sessions.",
    }
    return save_model(model, card, root=root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="bootstrap-v1")
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--out", type=Path, default=ARTIFACTS_DIR)
    args = parser.parse_args()
    print(train(version=args.version, seed=args.seed, root=args.out))


if __name__ == "__main__":
    main()
