"""Apply a classifier to a session's windows and explain each flag in plain words."""

from __future__ import annotations

import math

import numpy as np

from models.artifact import CLASSES, ModelBundle
from pipeline.features import FEATURES
from pipeline.i18n import DEFAULT_LANGUAGE
from pipeline.report import reason_sentence
from pipeline.types import ReasonFact, RuptureFlag, SessionFeatures

# Which way a marker must depart from the rest of the client's session to count as a reason for each rupture
# type: +1 higher, -1 lower, 0 never a reason. A fixed table rather than the model's coefficients, so that a
# model (or an occlusion explanation of a tree model) can never offer a marker that points the other way. It
# follows the 3RS descriptions (Eubanks, Muran & Safran 2015): withdrawal is moving away from the therapist or
# the work (silence, long latencies, short or minimal answers, a quieter and flatter voice, and the therapist's
# pressure to talk that answers it); confrontation is moving against them (complaints, refusals, negations,
# interrupting, a louder, higher and faster voice). Markers whose direction the literature does not settle
# (the therapist's word length and utterance length, synchrony, the client's backchannels, the therapist's
# and a parent's interruptions) are 0: they are measured and shown, never given as a reason.
DIRECTION = {
    "withdrawal": {
        "client_speech_share": -1, "therapist_speech_share": +1, "silence_share": +1, "longest_silence_s": +1,
        "mean_gap_s": +1, "mean_pause_s": +1, "client_response_latency_s": +1, "client_question_latency_s": +1,
        "client_framed_pauses_per_min": +1, "client_turns_per_min": -1, "client_mean_turn_s": -1,
        "client_words_per_utterance": -1, "client_minimal_response_share": +1,
        "client_minimal_responses_per_min": +1, "client_negations_per_utterance": +1,
        "client_deference_per_min": +1, "therapist_question_rate_per_min": +1, "therapist_question_run_max": +1,
        "therapist_questions_after_silence_per_min": +1, "therapist_share_client_withdrawn": +1,
        "client_f0_range_st": -1, "client_intensity_db": -1, "client_speaking_rate_syl_s": -1,
        "client_f0_range_z": -1, "client_intensity_z": -1, "client_speaking_rate_z": -1, "client_arousal_z": -1,
    },
    "confrontation": {
        "overlap_rate_per_min": +1, "client_interruptions_per_min": +1,
        "client_successful_interruptions_per_min": +1, "client_negations_per_utterance": +1,
        "client_refusals_per_min": +1, "client_complaints_per_min": +1, "client_f0_median_hz": +1,
        "client_f0_range_st": +1, "client_intensity_db": +1, "client_speaking_rate_syl_s": +1, "client_f0_z": +1,
        "client_f0_range_z": +1, "client_intensity_z": +1, "client_speaking_rate_z": +1, "client_arousal_z": +1,
    },
}

# The 3RS rupture marker (a key of the catalogue's ``rupture3rs`` table) each reason resembles, per type.
_WITHDRAWAL_3RS = {**dict.fromkeys(("silence_share", "longest_silence_s", "mean_gap_s", "mean_pause_s",
                                     "client_response_latency_s", "client_question_latency_s",
                                     "client_framed_pauses_per_min", "client_f0_range_st", "client_intensity_db",
                                     "client_speaking_rate_syl_s", "client_f0_range_z", "client_intensity_z",
                                     "client_speaking_rate_z", "client_arousal_z"), "avoidance"),
                   **dict.fromkeys(("client_speech_share", "client_turns_per_min", "client_mean_turn_s",
                                    "client_words_per_utterance", "client_minimal_response_share",
                                    "client_minimal_responses_per_min", "client_negations_per_utterance",
                                    "therapist_speech_share", "therapist_question_rate_per_min",
                                    "therapist_question_run_max", "therapist_questions_after_silence_per_min",
                                    "therapist_share_client_withdrawn"), "minimal_response"),
                   "client_deference_per_min": "deferential"}
_CONFRONTATION_3RS = {"client_complaints_per_min": "complaints_therapy",
                      "client_refusals_per_min": "rejects_intervention",
                      "client_negations_per_utterance": "rejects_intervention",
                      **dict.fromkeys(("overlap_rate_per_min", "client_interruptions_per_min",
                                       "client_successful_interruptions_per_min", "client_f0_median_hz",
                                       "client_f0_range_st", "client_intensity_db", "client_speaking_rate_syl_s",
                                       "client_f0_z", "client_f0_range_z", "client_intensity_z",
                                       "client_speaking_rate_z", "client_arousal_z"), "control")}
THREE_RS = {"withdrawal": _WITHDRAWAL_3RS, "confrontation": _CONFRONTATION_3RS}

_SPEC = {f.name: f for f in FEATURES}


MIN_Z = 0.5
"""Least departure (in the client's own session standard deviations) of a z-score marker to be a reason."""
MIN_RELATIVE = 0.1
"""Least departure of another marker from the client's usual value, as a fraction of that value, to be a reason."""


def _points_toward(name: str, marker_type: str, value: float, usual: float) -> bool:
    """Whether ``value`` departs clearly from the client's ``usual`` value in ``marker_type``'s direction.

    A z-score marker must lie at least ``MIN_Z`` on the rupture type's side of the session mean; another
    marker must differ from ``usual`` in that direction by more than ``MIN_RELATIVE`` of ``usual``.
    """
    d = DIRECTION.get(marker_type, {}).get(name, 0)
    if d == 0 or not math.isfinite(value):
        return False
    if _SPEC[name].unit == "z":
        return d * value >= MIN_Z
    return math.isfinite(usual) and d * (value - usual) > MIN_RELATIVE * abs(usual)


def reason_facts(bundle: ModelBundle, x: np.ndarray, class_index: int, *, usual: np.ndarray | None = None,
                 top: int = 3, model_x: np.ndarray | None = None) -> tuple[tuple[ReasonFact, ...], tuple[str, ...]]:
    """The markers that pushed one window towards ``class_index``, as facts to word in any language.

    For the multinomial logistic regression, a marker's contribution is its
    standardised value times its coefficient for the class minus its mean
    coefficient over classes. For another model (gradient-boosted trees), it
    is how much the class probability falls when the marker is set to its
    training median (the imputer's value): an occlusion, one marker at a time.
    A model that reads each marker beside its departure from the session's
    usual value (:func:`models.artifact.session_baseline`) gets both columns
    of a marker counted together (summed, or occluded together).
    Of the markers with a positive contribution, only those whose value departs
    from the client's usual value (``usual``) in the direction :data:`DIRECTION`
    gives for the rupture type are named, the ``top`` largest first. A calibrated model
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
    usual : np.ndarray, shape (n_model_features,), optional
        The client's median of each model feature over the session's other windows (NaN where unknown);
        without it only z-score markers can be reasons.
    top : int > 0
        Most reasons returned.
    model_x : np.ndarray, shape (n_model_features,) or (2 * n_model_features,), optional
        The window's input to the estimator (:meth:`models.artifact.ModelBundle.model_input` over its session);
        default ``x``, or for a model with the session baseline ``x`` beside ``x - usual``.

    Returns
    -------
    facts : tuple of ReasonFact
        Per reason, strongest first: the marker, the window's own value and the client's usual one
        (worded by :func:`pipeline.report.reason_sentence`).
    resembles : tuple of str
        The 3RS markers the reasons resemble (keys of the catalogue's ``rupture3rs`` table), in order, once each.
    """
    from models.transfer import base_pipeline

    pipe = base_pipeline(bundle.estimator)
    steps = pipe.named_steps
    clf = steps["classify"]
    classes = [int(c) for c in clf.classes_]
    if class_index not in classes:
        return (), ()
    k = classes.index(class_index)
    n = len(x)
    usual = np.full(n, np.nan) if usual is None else usual
    if model_x is None:
        model_x = np.concatenate([x, x - usual]) if bundle.session_baseline else x
    filled = steps["impute"].transform(np.asarray(model_x, dtype=float).reshape(1, -1))
    width = filled.shape[1]  # n, or 2n with the session baseline: column j and j + n are one marker
    if hasattr(clf, "coef_") and "scale" in steps:
        scaled = steps["scale"].transform(filled)[0]
        coef = clf.coef_
        contrib = (scaled * (coef[k] - coef.mean(axis=0))).reshape(width // n, n).sum(axis=0)
    else:
        base = clf.predict_proba(filled)[0, k]
        occluded = np.repeat(filled, n, axis=0)
        for j in range(n):
            occluded[j, j::n] = steps["impute"].statistics_[j::n]
        contrib = base - clf.predict_proba(occluded)[:, k]
    kind = CLASSES[class_index]
    names = bundle.feature_names
    order = [i for i in np.argsort(-contrib)
             if contrib[i] > 0 and _points_toward(names[i], kind, float(x[i]), float(usual[i]))][:top]
    facts = tuple(ReasonFact(names[i], float(x[i]), float(usual[i])) for i in order)
    resembles = tuple(dict.fromkeys(THREE_RS[kind][names[i]] for i in order if names[i] in THREE_RS[kind]))
    return facts, resembles


def flag_windows(features: SessionFeatures, bundle: ModelBundle, *, threshold: float | None = None,
                 min_speech_s: float = 3.0, language: str = DEFAULT_LANGUAGE) -> tuple[RuptureFlag, ...]:
    """Flag windows whose rupture probability reaches the threshold.

    A window's probability is the mean over the model's context of windows with
    enough speech (``ModelBundle.probabilities``; 1 window for models without one).
    Overlapping or touching flagged windows of one rupture type merge into one
    stretch; with a card that has ``threshold.confirm`` (from ``sim-v5``), a
    stretch is kept only where its highest probability reaches the type's
    confirmation level (:func:`models.artifact.confirmed_windows`). Each kept
    stretch is a flag carrying the highest probability and the reasons of the window whose own
    probability (before the context mean) is highest: the facts behind them (``reason_facts``), which the report and the
    review app word in the reader's language, and their sentences in ``language``.

    Parameters
    ----------
    features : SessionFeatures
        Per-window markers in ``FEATURE_NAMES`` order.
    bundle : ModelBundle
        Loaded classifier.
    threshold : float in (0, 1), optional
        Overrides the model card's thresholds (one per rupture type, or one for both); every stretch at it is
        then flagged (no confirmation level).
    min_speech_s : float >= 0
        Windows with less speech than this (seconds, any speaker) are never
        flagged: no talk at all is not evidence of a rupture.
    language : {"nl", "en"}
        Language of the stored sentences (``ALLIANCE_UI_LANGUAGE``), as ``session.json`` keeps them.

    Returns
    -------
    tuple of RuptureFlag
        Sorted by start time.
    """
    if not features.frames:
        return ()
    X = features.matrix()[:, bundle.columns()]
    # as in training: the windows with enough speech, their probabilities averaged over the model's context
    from models.artifact import context_mean
    from models.transfer import _class_proba

    speech = np.array([frame.speech_s >= min_speech_s for frame in features.frames])
    own = np.zeros((len(features.frames), len(CLASSES)))
    proba = np.zeros_like(own)
    inputs = X  # the estimator's input per window (with the session baseline over the windows with speech)
    if speech.any():
        spoken = bundle.model_input(X[speech])
        inputs = np.full((X.shape[0], spoken.shape[1]), np.nan)
        inputs[speech] = spoken
        own[speech] = _class_proba(bundle.estimator, spoken)
        proba[speech] = context_mean(own[speech], np.zeros(int(speech.sum()), dtype=int), bundle.context_windows)
    flags: list[RuptureFlag] = []
    for k in range(1, len(CLASSES)):
        cut = bundle.class_threshold(k) if threshold is None else threshold
        confirm = bundle.class_confirm(k) if threshold is None else None  # an override flags every window at it

        def close(stretch: list[int]) -> None:
            if stretch and (confirm is None or max(proba[i, k] for i in stretch) >= confirm):
                flags.append(_merge(features, bundle, X, inputs, proba, own, stretch, k, language))

        current: list[int] = []
        for i, frame in enumerate(features.frames):
            if proba[i, k] >= cut and frame.speech_s >= min_speech_s:
                if current and frame.start > features.frames[current[-1]].end:
                    close(current)
                    current = []
                current.append(i)
        close(current)
    return tuple(sorted(flags, key=lambda f: (f.start, f.marker_type)))


def _usual(X: np.ndarray, i: int) -> np.ndarray:
    """Per feature, the median over every window but ``i`` (NaN where none has a value)."""
    import warnings

    rest = np.delete(X, i, axis=0)
    if rest.shape[0] == 0:
        return np.full(X.shape[1], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN is the answer
        return np.nanmedian(rest, axis=0)


def _merge(features, bundle, X, inputs, proba, own, idx, k, language) -> RuptureFlag:
    # the flag's probability is the highest in context; its reasons come from the window whose own markers
    # point there most (with a context, the windows around one strong window share its mean)
    best = max(idx, key=lambda i: proba[i, k])
    strongest = max(idx, key=lambda i: own[i, k])
    facts, resembles = reason_facts(bundle, X[strongest], k, usual=_usual(X, strongest), model_x=inputs[strongest])
    return RuptureFlag(
        start=features.frames[idx[0]].start,
        end=features.frames[idx[-1]].end,
        probability=round(float(proba[best, k]), 4),
        marker_type=CLASSES[k],
        reasons=tuple(reason_sentence(f.marker, f.value, f.usual, language) for f in facts),
        model_version=bundle.version,
        resembles=resembles,
        reason_facts=facts,
    )

