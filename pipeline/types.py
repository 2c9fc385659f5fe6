"""The session data model shared by every stage.

Frozen dataclasses; times are float **seconds from the start of the
recording**; any other unit is in the field name (``_hz``, ``_db``, ``_st``).
Stages return new objects and never mutate their inputs. Containers carry a
``schema_version``; every type round-trips through ``to_dict()`` /
``from_dict()`` (NaN is written as ``null`` and read back as NaN).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

SCHEMA_VERSION = 1

ROLES = ("therapist", "client", "parent")
RUPTURE_LABELS = ("withdrawal", "confrontation")  # 3RS rupture types (Eubanks, Muran & Safran 2015)


def to_jsonable(value: Any) -> Any:
    """Convert dataclasses, tuples, numpy scalars and NaN into plain JSON values.

    NaN and infinities (for example the F0 of an unvoiced turn) become ``None``.

    Dataclass instances become dicts of their fields, leaving out fields
    marked ``metadata={"serialize": False}`` (such as a recording's samples).
    Mapping keys become strings; tuples, lists and numpy arrays become lists;
    numpy integers, floats and booleans become Python ones. The conversion is
    recursive. Anything else (str, int, bool, None, ...) is returned
    unchanged; the function does not check that it is JSON-ready.

    Parameters
    ----------
    value : object
        A session object, or any nesting of the types above.

    Returns
    -------
    object
        Ready for :func:`json.dumps`, for the types above.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.metadata.get("serialize", True)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if not math.isfinite(value) else value
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _from_jsonable(hint: Any, value: Any) -> Any:
    """``value`` read from JSON as the annotated type ``hint``: the inverse of :func:`to_jsonable`.

    ``null`` becomes NaN where the type is ``float`` (``to_jsonable`` wrote NaN that way) and stays ``None`` where
    the type allows ``None``; lists become tuples where the type is a tuple; nested dataclasses are rebuilt.
    Values typed ``Any`` or ``object`` are kept as JSON gives them.
    """
    if isinstance(hint, type) and issubclass(hint, _Serializable):
        return hint.from_dict(value) if value is not None else None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if value is None:
            return None
        return _from_jsonable(inner[0], value) if len(inner) == 1 else value
    if hint is float:
        return _nan(value)
    if value is None:
        return None
    if hint is int:
        return int(value)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_jsonable(args[0], v) for v in value)
        return tuple(_from_jsonable(a, v) for a, v in zip(args, value))
    if origin in (collections.abc.Mapping, dict):
        return {k: _from_jsonable(args[1], v) for k, v in value.items()}
    return value


def _build(cls: type, d: Mapping[str, Any], **given: Any) -> Any:
    """An instance of the dataclass ``cls`` from its ``to_dict()`` form; ``given`` values are used as they are.

    Keys missing from ``d`` take the field's default (an older schema); unknown keys are ignored.
    """
    hints = typing.get_type_hints(cls)
    values = {f.name: _from_jsonable(hints[f.name], d[f.name]) for f in dataclasses.fields(cls)
              if f.name in d and f.name not in given and f.metadata.get("serialize", True)}
    return cls(**values, **given)


class _Serializable:
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON representation (NaN written as ``null``)."""
        return to_jsonable(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]):
        """The object back from its ``to_dict()`` form (or the same part of ``session.json``)."""
        return _build(cls, d)


@dataclass(frozen=True)
class Recording(_Serializable):
    """Decoded audio: mono float32 samples in [-1, 1] at ``sample_rate_hz``.

    ``samples`` is not serialised; ``to_dict`` keeps only the description.
    ``declared_duration_s`` is what the container header claims (``None``
    when it says nothing); ``decode_warning`` says how much of a damaged or
    truncated file was read (``None`` when all of it was). ``channels``, shape
    (n_channels, n_samples) at ``sample_rate_hz``, is kept only when asked for
    and the source has 2 to 4 channels (channel-per-speaker recordings).
    """

    path: str
    samples: np.ndarray = field(repr=False, compare=False, metadata={"serialize": False})
    sample_rate_hz: int
    duration_s: float
    source_sample_rate_hz: int
    source_channels: int
    source_format: str
    declared_duration_s: float | None = None
    decode_warning: str | None = None
    channels: np.ndarray | None = field(default=None, repr=False, compare=False, metadata={"serialize": False})
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Recording":
        """The description back from ``to_dict()``; ``samples`` is empty, as audio is never serialised."""
        return _build(cls, d, samples=np.zeros(0, np.float32))

    def without_audio(self) -> "Recording":
        """This description with empty ``samples`` and no ``channels``: what results and reports keep."""
        return dataclasses.replace(self, samples=np.zeros(0, np.float32), channels=None)


@dataclass(frozen=True)
class SpeechRegion(_Serializable):
    """A stretch of speech found by voice activity detection (VAD)."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class OverlapRegion(_Serializable):
    """A stretch in which two or more people speak at once (see :mod:`pipeline.overlap`).

    ``probability`` is the mean frame-level probability of overlapped speech
    over the region, in [0, 1].
    """

    start: float
    end: float
    probability: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Word(_Serializable):
    """One recognised word with its times and Whisper's probability in [0, 1].

    ``overlap`` is True when the word was spoken while another speaker was
    also talking (its speaker is then the one the word overlaps most, and
    may be wrong).
    """

    start: float
    end: float
    text: str
    probability: float
    speaker: str | None = None
    overlap: bool = False

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Word":
        """Rebuild a word from its :func:`to_jsonable` form (as in ``session.json``).

        Parameters
        ----------
        d : mapping
            With ``start`` and ``end`` (s), ``text`` and ``probability``;
            ``speaker`` (default None) and ``overlap`` (default False) may be
            missing.

        Returns
        -------
        Word

        Raises
        ------
        KeyError
            A required key is missing.
        ValueError
            A time or the probability is not a number.
        """
        return cls(float(d["start"]), float(d["end"]), str(d["text"]),
                   float(d["probability"]), d.get("speaker"), bool(d.get("overlap", False)))


@dataclass(frozen=True)
class Transcript(_Serializable):
    """Words of a recording in time order, with the language used or detected.

    ``language`` is the language of most of the speech; ``language_segments``
    lists, when the language was decided per stretch of speech, each stretch
    as ``(start_s, end_s, language, probability)``. ``limited_spans`` lists the
    stretches ``(start_s, end_s)`` decoded quickly (greedy, no temperature
    fallback) because the ASR time limit was reached
    (``ALLIANCE_ASR__MAX_S_PER_AUDIO_MIN``).
    """

    words: tuple[Word, ...]
    language: str
    language_probability: float
    duration_s: float
    schema_version: int = SCHEMA_VERSION
    language_segments: tuple[tuple[float, float, str, float], ...] = ()
    limited_spans: tuple[tuple[float, float], ...] = ()

    @property
    def text(self) -> str:
        return " ".join(w.text.strip() for w in self.words).strip()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Transcript":
        """Rebuild a transcript from its :func:`to_jsonable` form (as in ``session.json``).

        Parameters
        ----------
        d : mapping
            With ``words`` (each as for :meth:`Word.from_dict`), ``language``,
            ``language_probability`` and ``duration_s`` (s);
            ``schema_version``, ``language_segments`` and ``limited_spans``
            may be missing (defaults: the current version, none, none).

        Returns
        -------
        Transcript

        Raises
        ------
        KeyError
            A required key is missing.
        ValueError
            A number field holds something that is not a number.
        """
        return cls(tuple(Word.from_dict(w) for w in d["words"]), d["language"],
                   float(d["language_probability"]), float(d["duration_s"]),
                   int(d.get("schema_version", SCHEMA_VERSION)),
                   tuple((float(a), float(b), str(lang), float(p)) for a, b, lang, p in d.get("language_segments", ())),
                   tuple((float(a), float(b)) for a, b in d.get("limited_spans", ())))


@dataclass(frozen=True)
class SpeakerTurn(_Serializable):
    """A maximal stretch attributed to one speaker (one RTTM ``SPEAKER`` line)."""

    start: float
    end: float
    speaker: str

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class OverlapEvent(_Serializable):
    """A speaker who starts talking while another holds the floor (see :func:`pipeline.turns.overlap_events`).

    ``kind`` is ``"interruption"`` (the newcomer talks on: longer than a backchannel, or past the holder's end)
    or ``"backchannel"`` (a short contribution inside the holder's turn, such as "mm", that does not take the
    floor). ``start`` is the newcomer's start (s), ``speaker`` the newcomer, ``holder`` the speaker who had the
    floor, ``overlap_s`` how long both spoke (s). ``successful`` (interruptions only) is True when the holder
    stopped within the success span (1 s) of the start and the newcomer went on: the interrupter took the floor.
    """

    kind: str
    start: float
    speaker: str
    holder: str
    overlap_s: float
    successful: bool = False


@dataclass(frozen=True)
class Diarization(_Serializable):
    """Who spoke when: speaker turns in time order.

    ``num_speakers_estimated`` says whether the count was estimated rather
    than given; ``method`` names how turns were found and ``detail`` why
    (for example the channel-per-speaker decision). Turns of different
    speakers overlap where both spoke at once.
    """

    turns: tuple[SpeakerTurn, ...]
    speakers: tuple[str, ...]
    method: str
    num_speakers_estimated: bool = False
    detail: str = ""
    schema_version: int = SCHEMA_VERSION

    def speech_time_s(self) -> dict[str, float]:
        """Total speech time per speaker, in seconds."""
        totals = {s: 0.0 for s in self.speakers}
        for t in self.turns:
            totals[t.speaker] = totals.get(t.speaker, 0.0) + t.duration
        return totals

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Diarization":
        """Rebuild a diarization from its :func:`to_jsonable` form (as in ``session.json``).

        Parameters
        ----------
        d : mapping
            With ``turns`` (each with ``start`` and ``end`` in seconds and
            ``speaker``), ``speakers`` and ``method``;
            ``num_speakers_estimated``, ``detail`` and ``schema_version`` may
            be missing (defaults: False, ``""``, the current version).

        Returns
        -------
        Diarization

        Raises
        ------
        KeyError
            A required key is missing.
        ValueError
            A turn's time is not a number.
        """
        return cls(tuple(SpeakerTurn(float(t["start"]), float(t["end"]), t["speaker"]) for t in d["turns"]),
                   tuple(d["speakers"]), d["method"], bool(d.get("num_speakers_estimated", False)),
                   str(d.get("detail", "")), int(d.get("schema_version", SCHEMA_VERSION)))


@dataclass(frozen=True)
class RoleAssignment(_Serializable):
    """Speaker label → role (``therapist``, ``client``, ``parent``) and how it was decided.

    ``rule`` names the evidence used (joined by ``+``); ``evidence`` holds the
    numbers behind it (profile similarities, F0 margin, question rates) and a
    confidence word per cue.
    """

    roles: Mapping[str, str]
    rule: str
    evidence: Mapping[str, object] = field(default_factory=dict)

    def role_of(self, speaker: str | None) -> str:
        """The role of one speaker.

        Parameters
        ----------
        speaker : str or None
            A speaker label; None for a word no speaker was given.

        Returns
        -------
        str
            ``"therapist"``, ``"client"`` or ``"parent"``; ``"unknown"`` for
            None or a speaker without a role.
        """
        return self.roles.get(speaker, "unknown") if speaker is not None else "unknown"


@dataclass(frozen=True)
class Utterance(_Serializable):
    """Consecutive words of one speaker, with that speaker's role."""

    speaker: str
    role: str
    start: float
    end: float
    words: tuple[Word, ...]

    @property
    def text(self) -> str:
        return " ".join(w.text.strip() for w in self.words).strip()

    @property
    def is_question(self) -> bool:
        return self.text.rstrip().endswith("?")


@dataclass(frozen=True)
class UtteranceMarkers(_Serializable):
    """Markers of one utterance (no transcript text; see :mod:`pipeline.lexical`).

    ``speaking_rate_syl_s`` is syllables per second of the utterance's span;
    ``latency_s`` is the silence (s) since another speaker's previous
    utterance ended (negative: it started in overlap; NaN when the previous
    utterance is the same speaker's or there is none). ``negations``,
    ``refusals``, ``complaints`` and ``deference`` (3RS deferential and
    appeasing phrases) are occurrences weighted by the words' ASR confidence
    (see :func:`pipeline.lexical.utterance_markers`).
    """

    speaker: str
    role: str
    start: float
    end: float
    n_words: int
    n_syllables: int
    speaking_rate_syl_s: float
    is_question: bool
    is_minimal_response: bool
    is_backchannel: bool
    negations: float
    refusals: float
    complaints: float
    latency_s: float
    deference: float = 0.0


@dataclass(frozen=True)
class TurnProsody(_Serializable):
    """Prosody of one speaker turn.

    ``f0_median_hz`` and ``f0_range_st`` (5th–95th percentile, semitones) are
    NaN when the turn has no voiced frames; ``intensity_db`` is the mean RMS
    level in dB relative to full scale (dBFS).
    """

    start: float
    end: float
    speaker: str
    f0_median_hz: float
    f0_range_st: float
    intensity_db: float
    voiced_fraction: float


@dataclass(frozen=True)
class TurnMetrics(_Serializable):
    """Session-level turn-taking metrics (floor-transfer terms after Heldner & Edlund 2010).

    ``gaps_s`` are silences between the end of one speaker's turn and the
    start of another's; ``overlaps_s`` the durations where the next speaker
    started before the previous one finished. ``response_latency_s`` is the
    mean gap before the client's turns that follow a therapist turn (NaN when
    there are none). ``longest_silence_s`` and ``silence_share`` are measured
    between the first and the last speech. ``overlap_time_s`` is the time in
    which two or more speakers talk at once. ``interruptions`` counts, per
    speaker, the times they started talking over a speaker who held the floor
    (:func:`pipeline.turns.overlap_events`), ``successful_interruptions`` those
    after which the holder stopped within 1 s, and ``overlap_backchannels``
    their short contributions inside another's turn. ``overlap_events`` lists
    these events in time order.
    """

    duration_s: float
    speech_time_s: Mapping[str, float]
    speech_ratio: Mapping[str, float]
    speech_time_by_role_s: Mapping[str, float]
    n_turns: Mapping[str, int]
    gaps_s: tuple[float, ...]
    overlaps_s: tuple[float, ...]
    response_latency_s: float
    longest_silence_s: float
    silence_share: float
    overlap_time_s: float = 0.0
    interruptions: Mapping[str, int] = field(default_factory=dict)
    successful_interruptions: Mapping[str, int] = field(default_factory=dict)
    overlap_backchannels: Mapping[str, int] = field(default_factory=dict)
    overlap_events: tuple[OverlapEvent, ...] = ()


@dataclass(frozen=True)
class FeatureFrame(_Serializable):
    """Feature values of one analysis window, in ``FEATURE_NAMES`` order.

    ``speech_s`` is the speech time (any speaker) inside the window; windows
    with too little speech are not classified.
    """

    start: float
    end: float
    values: tuple[float, ...]
    speech_s: float = 0.0


@dataclass(frozen=True)
class SessionFeatures(_Serializable):
    """The per-window feature table of a session."""

    feature_names: tuple[str, ...]
    units: tuple[str, ...]
    frames: tuple[FeatureFrame, ...]

    def matrix(self) -> np.ndarray:
        """Feature values, shape (n_windows, n_features), NaN where undefined."""
        if not self.frames:
            return np.zeros((0, len(self.feature_names)))
        return np.array([[_nan(v) for v in f.values] for f in self.frames], dtype=float)


@dataclass(frozen=True)
class ReasonFact(_Serializable):
    """What one reason of a flag says, without words: a marker, the stretch's value and the client's usual one.

    ``marker`` is a name of ``FEATURE_NAMES``; ``value`` the flagged window's value in the marker's unit;
    ``usual`` the client's median over the session's other windows (NaN when there are none, and for a
    z-score marker, which is relative to the session already). The sentence is worded from these in the
    reader's language where it is shown (:func:`pipeline.report.flag_reasons`).
    """

    marker: str
    value: float
    usual: float


@dataclass(frozen=True)
class RuptureFlag(_Serializable):
    """A stretch flagged for clinician review: never a diagnosis.

    ``marker_type`` is a 3RS rupture type (one of :data:`RUPTURE_LABELS`);
    ``reasons`` are plain-language sentences (in the interface language of
    the analysis) drawn from the markers that drove the flag, and
    ``reason_facts`` the facts they were worded from, one per reason, so that
    the report and the review app word them in the reader's language; a flag
    of a session analysed before the facts were kept has none, and shows its
    sentences as they are. ``resembles`` names the 3RS rupture markers they
    resemble, as keys of the text catalogue's ``rupture3rs`` table
    (``"minimal_response"``, ...).
    """

    start: float
    end: float
    probability: float
    marker_type: str
    reasons: tuple[str, ...]
    model_version: str
    resembles: tuple[str, ...] = ()
    reason_facts: tuple[ReasonFact, ...] = ()


def _markers_from_dict(markers: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Session markers read back from JSON: an undefined ``value`` (``null``) is NaN again."""
    return {name: {**m, "value": _nan(m.get("value"))} if "value" in m else dict(m) for name, m in markers.items()}


@dataclass(frozen=True)
class SessionAnalysis(_Serializable):
    """What the analysis of one recording finds, from decoding to the session markers (see :mod:`pipeline.session`).

    A :class:`SessionReport` without what the clinic adds to it: no flags or model (the classifier is not part of
    the analysis), no creation time, no client history. ``recording`` is the description only (no samples);
    ``overlap_regions`` are the stretches where the overlapped-speech detector heard two or more people at once
    (one-microphone recordings; empty when the speakers have their own channels or detection is off);
    ``transcript`` has each word's speaker; ``warnings``, ``session_markers`` and ``utterance_markers`` are as in
    :class:`SessionReport`; ``settings`` are the settings in force, ``settings_hash`` their hash.
    """

    session_id: str
    recording: Recording
    speech_regions: tuple[SpeechRegion, ...]
    transcript: Transcript
    diarization: Diarization
    roles: RoleAssignment
    utterances: tuple[Utterance, ...]
    metrics: TurnMetrics
    prosody: tuple[TurnProsody, ...]
    features: SessionFeatures
    settings_hash: str
    settings: Mapping[str, Any]
    warnings: tuple[str, ...] = ()
    session_markers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    utterance_markers: tuple[UtteranceMarkers, ...] = ()
    client_age: float | None = None
    client_id: str | None = None
    session_date: str | None = None
    overlap_regions: tuple[OverlapRegion, ...] = ()
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SessionAnalysis":
        """The analysis back from its ``to_dict()`` form."""
        return _build(cls, d, session_markers=_markers_from_dict(d.get("session_markers", {})))


@dataclass(frozen=True)
class SessionReport(_Serializable):
    """Everything the report shows, and ``session.json`` holds.

    ``warnings`` are plain sentences about the input the reader must know
    (truncated file, no speech found, too short to analyse).
    ``session_markers`` holds every marker of ``FEATURE_NAMES`` over the whole
    session (``{name: {"value", "unit", "description"}}``);
    ``utterance_markers`` the per-utterance markers (no text).
    ``client_history`` gives, per marker, the client's range over earlier
    sessions: ``{name: {"min", "max", "n"}}``. ``overlap_regions`` as in
    :class:`SessionAnalysis`. ``flag_thresholds`` gives each rupture type's
    probability threshold in use (``{"withdrawal": 0.291, "confrontation":
    0.403}``: the model card's, or the ``flag_threshold`` setting for both);
    ``flag_threshold`` is that setting, else the card's single value;
    ``flag_confirm`` the confirmation level a flagged stretch of a type had to
    reach (``{"confrontation": 0.563}``; empty for models without one or when
    the setting replaced the thresholds).
    """

    session_id: str
    recording: Recording
    speech_regions: tuple[SpeechRegion, ...]
    transcript: Transcript
    diarization: Diarization
    roles: RoleAssignment
    utterances: tuple[Utterance, ...]
    metrics: TurnMetrics
    prosody: tuple[TurnProsody, ...]
    features: SessionFeatures
    flags: tuple[RuptureFlag, ...]
    model_version: str
    flag_threshold: float
    settings_hash: str
    settings: Mapping[str, Any]
    created_at: str
    software_version: str
    warnings: tuple[str, ...] = ()
    session_markers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    utterance_markers: tuple[UtteranceMarkers, ...] = ()
    client_age: float | None = None
    client_id: str | None = None
    session_date: str | None = None
    client_history: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    overlap_regions: tuple[OverlapRegion, ...] = ()
    flag_thresholds: Mapping[str, float] = field(default_factory=dict)
    flag_confirm: Mapping[str, float] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SessionReport":
        """The report back from its ``to_dict()`` form, as ``session.json`` holds it."""
        return _build(cls, d, session_markers=_markers_from_dict(d.get("session_markers", {})))

    @classmethod
    def from_analysis(cls, analysis: SessionAnalysis, **added: Any) -> "SessionReport":
        """The report of ``analysis`` with what the clinic adds (``flags``, ``model_version``, ``created_at``, ...)."""
        return cls(**{f.name: getattr(analysis, f.name) for f in dataclasses.fields(analysis)}, **added)
