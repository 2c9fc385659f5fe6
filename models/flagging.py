"""Apply a classifier to a session's windows and explain each flag in plain words."""

from __future__ import annotations

import math

import numpy as np

from models.artifact import CLASSES, ModelBundle
from pipeline.features import FEATURES
from pipeline.types import RuptureFlag, SessionFeatures

# Plain-language sentence per marker, and the direction that supports each rupture type.
_REASON = {
    "client_speech_share": lambda v: f"the client spoke {v:.0%} of the speech in this stretch",
    "silence_share": lambda v: f"nobody spoke for {v:.0%} of this stretch",
    "longest_silence_s": lambda v: f"a silence of {v:.1f} s",
    "mean_gap_s": lambda v: f"gaps between speakers averaged {v:.1f} s",
    "client_response_latency_s": lambda v: f"the client took {v:.1f} s on average to answer the therapist",
    "overlap_rate_per_min": lambda v: f"{v:.1f} overlaps/interruptions per minute",
    "client_turns_per_min": lambda v: f"{v:.1f} client turns per minute",
    "client_mean_turn_s": lambda v: f"client turns lasted {v:.1f} s on average",
    "client_words_per_utterance": lambda v: f"the client used {v:.1f} words per utterance on average",
    "therapist_question_rate_per_min": lambda v: f"the therapist asked {v:.1f} questions per minute",
    "client_minimal_response_share": lambda v: f"{v:.0%} of the therapist's questions got a minimal answer or none",
    "client_f0_z": lambda v: f"the client's pitch was {abs(v):.1f} SD {'above' if v > 0 else 'below'} their session average",
    "client_f0_range_z": lambda v: f"the client's pitch range was {abs(v):.1f} SD {'wider' if v > 0 else 'flatter'} than their session average",
    "client_intensity_z": lambda v: f"the client's voice was {abs(v):.1f} SD {'louder' if v > 0 else 'quieter'} than their session average",
    "therapist_speech_share": lambda v: f"the therapist did {v:.0%} of the talking",
    "mean_pause_s": lambda v: f"pauses within turns averaged {v:.1f} s",
    "client_question_latency_s": lambda v: f"the client took {v:.1f} s on average to answer a question",
    "client_framed_pauses_per_min": lambda v: (f"{v:.1f} times a minute the client left a silence and the therapist "
                                               "spoke again"),
    "client_interruptions_per_min": lambda v: f"the client cut in {v:.1f} times a minute",
    "therapist_interruptions_per_min": lambda v: f"the therapist cut in {v:.1f} times a minute",
    "client_successful_interruptions_per_min": lambda v: (f"{v:.1f} times a minute the client cut in and the other "
                                                          "stopped talking"),
    "parent_interruptions_per_min": lambda v: f"a parent cut in {v:.1f} times a minute",
    "client_overlap_backchannels_per_min": lambda v: f"the client said 'mm' or 'yes' over the speaker {v:.1f} times a minute",
    "therapist_mean_turn_s": lambda v: f"therapist turns lasted {v:.1f} s on average",
    "client_minimal_responses_per_min": lambda v: f"{v:.1f} one-word or 'don't know' answers a minute",
    "client_backchannels_per_min": lambda v: f"{v:.1f} client backchannels ('mm', 'yes') a minute",
    "client_negations_per_utterance": lambda v: f"{v:.1f} negations per client utterance",
    "client_refusals_per_min": lambda v: f"{v:.1f} refusals ('I won't', 'wil niet') a minute",
    "client_complaints_per_min": lambda v: f"{v:.1f} complaints ('boring', 'saai') a minute",
    "therapist_question_run_max": lambda v: f"the therapist asked {v:.0f} questions in a row without a real answer",
    "therapist_questions_after_silence_per_min": lambda v: f"{v:.1f} questions a minute came after a silence",
    "therapist_share_client_withdrawn": lambda v: f"the therapist did {v:.0%} of the talking while answers stayed minimal",
    "therapist_mlu_words": lambda v: f"therapist utterances averaged {v:.1f} words",
    "therapist_syllables_per_word": lambda v: f"therapist words averaged {v:.1f} syllables",
    "therapist_client_mlu_ratio": lambda v: f"therapist utterances were {v:.1f}× as long as the client's",
    "client_f0_median_hz": lambda v: f"the client's median pitch was {v:.0f} Hz",
    "client_f0_range_st": lambda v: f"the client's pitch range was {v:.1f} semitones",
    "client_intensity_db": lambda v: f"the client's level was {v:.0f} dB",
    "client_speaking_rate_syl_s": lambda v: f"the client spoke {v:.1f} syllables a second",
    "client_speaking_rate_z": lambda v: f"the client spoke {abs(v):.1f} SD {'faster' if v > 0 else 'slower'} than their session average",
    "client_arousal_z": lambda v: f"the client's voice was {abs(v):.1f} SD {'more' if v > 0 else 'less'} aroused (pitch, loudness, pace) than their session average",
    "intensity_synchrony_r": lambda v: f"therapist and client loudness moved together (r = {v:.2f})",
    "f0_synchrony_r": lambda v: f"therapist and client pitch moved together (r = {v:.2f})",
}


_SPEC = {f.name: f for f in FEATURES}


def _sentence(name: str, value: float) -> str:
    """Plain-language sentence for one marker value (the marker's description when there is no custom one)."""
    if name in _REASON:
        return _REASON[name](value)
    spec = _SPEC[name]
    return f"{spec.description}: {value:.2g} {spec.unit}"


def explain_window(bundle: ModelBundle, x: np.ndarray, class_index: int, *, top: int = 3) -> tuple[str, ...]:
    """The markers that pushed one window towards ``class_index``, in words.

    For the multinomial logistic regression, a marker's contribution is its
    standardised value times its coefficient for the class minus its mean
    coefficient over classes. For another model (gradient-boosted trees), it
    is how much the class probability falls when the marker is set to its
    training median (the imputer's value): an occlusion, one marker at a time.
    The ``top`` positive contributions are named. A calibrated model
    (``CalibratedClassifierCV``) is explained by the pipeline inside it, fitted
    on all training windows; calibration is monotone per class, so it does not
    change which markers push the window up.

    Parameters
    ----------
    bundle : ModelBundle
        Loaded classifier: a pipeline (imputer, optional scaler, classifier),
        or a ``CalibratedClassifierCV`` around one.
    x : np.ndarray, shape (n_model_features,)
        Raw values of the model's features (``bundle.feature_names``) for the window (NaN allowed).
    class_index : int
        1 withdrawal, 2 confrontation.
    top : int > 0
        Most reasons returned.

    Returns
    -------
    tuple of str
        Sentences with the window's own values.
    """
    from models.transfer import base_pipeline

    pipe = base_pipeline(bundle.estimator)
    steps = pipe.named_steps
    clf = steps["classify"]
    classes = [int(c) for c in clf.classes_]
    if class_index not in classes:
        return ()
    k = classes.index(class_index)
    filled = steps["impute"].transform(x.reshape(1, -1))
    if hasattr(clf, "coef_") and "scale" in steps:
        scaled = steps["scale"].transform(filled)[0]
        coef = clf.coef_
        contrib = scaled * (coef[k] - coef.mean(axis=0))
    else:
        base = clf.predict_proba(filled)[0, k]
        occluded = np.repeat(filled, filled.shape[1], axis=0)
        np.fill_diagonal(occluded, steps["impute"].statistics_)
        contrib = base - clf.predict_proba(occluded)[:, k]
    order = [i for i in np.argsort(-contrib) if contrib[i] > 0][:top]
    return tuple(_sentence(bundle.feature_names[i], x[i]) for i in order if math.isfinite(x[i]))


def flag_windows(features: SessionFeatures, bundle: ModelBundle, *, threshold: float | None = None,
                 min_speech_s: float = 3.0) -> tuple[RuptureFlag, ...]:
    """Flag windows whose rupture probability reaches the threshold.

    Overlapping or touching flagged windows of one rupture type merge into one
    flag carrying the highest probability and the reasons of its most probable
    window.

    Parameters
    ----------
    features : SessionFeatures
        Per-window markers in ``FEATURE_NAMES`` order.
    bundle : ModelBundle
        Loaded classifier.
    threshold : float in (0, 1), optional
        Overrides the model card's thresholds (one per rupture type, or one for both).
    min_speech_s : float >= 0
        Windows with less speech than this (seconds, any speaker) are never
        flagged: no talk at all is not evidence of a rupture.

    Returns
    -------
    tuple of RuptureFlag
        Sorted by start time.
    """
    if not features.frames:
        return ()
    X = features.matrix()[:, bundle.columns()]
    proba = bundle.estimator.predict_proba(X)
    flags: list[RuptureFlag] = []
    for k in range(1, len(CLASSES)):
        current: list[int] = []
        for i, frame in enumerate(features.frames):
            cut = bundle.class_threshold(k) if threshold is None else threshold
            if proba[i, k] >= cut and frame.speech_s >= min_speech_s:
                if current and frame.start > features.frames[current[-1]].end:
                    flags.append(_merge(features, bundle, X, proba, current, k))
                    current = []
                current.append(i)
        if current:
            flags.append(_merge(features, bundle, X, proba, current, k))
    return tuple(sorted(flags, key=lambda f: (f.start, f.marker_type)))


def _merge(features, bundle, X, proba, idx, k) -> RuptureFlag:
    best = max(idx, key=lambda i: proba[i, k])
    return RuptureFlag(
        start=features.frames[idx[0]].start,
        end=features.frames[idx[-1]].end,
        probability=round(float(proba[best, k]), 4),
        marker_type=CLASSES[k],
        reasons=explain_window(bundle, X[best], k),
        model_version=bundle.version,
    )

