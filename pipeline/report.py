"""Render a :class:`~pipeline.types.SessionReport` as ``report.html``, ``session.json`` and CSV files.

The HTML is self-contained (inline CSS and SVG, no scripts, no network) so a
therapist can open it from disk.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Any, Mapping, Sequence

from pipeline.i18n import DEFAULT_LANGUAGE, DEFAULT_TIMEZONE, has, local_time, localise, quantity, text
from pipeline.i18n import number as i18n_number
from pipeline.types import (ReasonFact, Recording, SessionFeatures, SessionReport, SpeechRegion,
                            Transcript, to_jsonable)

ROLE_COLOURS = {"therapist": "#1f6fb2", "client": "#e07b00", "parent": "#5a9e3a", "unknown": "#888888"}
FLAG_COLOURS = {"withdrawal": "#7b4fb0", "confrontation": "#c62828"}
ROLE_ORDER = ("therapist", "client", "parent", "unknown")


def marker_unit(name: str, unit: str) -> str:
    """The unit the report prints a marker in: ``times`` for a ratio of lengths, ``offset_s`` for a response time.

    Parameters
    ----------
    name : str
        A marker of ``FEATURE_NAMES``.
    unit : str
        Its unit in ``FEATURE_UNITS``.

    Returns
    -------
    str
        ``"times"`` for a marker in :data:`TIMES_MARKERS`, ``"offset_s"`` for
        one in :data:`pipeline.features.OFFSET_MARKERS`, else ``unit``
        unchanged (a key for :func:`pipeline.i18n.quantity`).
    """
    from pipeline.features import OFFSET_MARKERS

    return "times" if name in TIMES_MARKERS else "offset_s" if name in OFFSET_MARKERS else unit


_BARE = {"1/min": 1, "questions": 0, "1/utterance": 2}
"""Units a reason sentence words itself ("... keer per minuut"): the number is printed without them."""


def _feature_units() -> dict[str, str]:
    """Every marker's unit by name (``FEATURE_NAMES`` to ``FEATURE_UNITS``)."""
    from pipeline.features import FEATURE_NAMES, FEATURE_UNITS

    return dict(zip(FEATURE_NAMES, FEATURE_UNITS))


def _amount(name: str, value: float, language: str) -> str:
    unit = marker_unit(name, _feature_units()[name])
    if unit in _BARE:
        return i18n_number(value, language, _BARE[unit]) if math.isfinite(value) else "—"
    return quantity(value, unit, language)


def reason_sentence(name: str, value: float, usual: float, language: str = DEFAULT_LANGUAGE) -> str:
    """One marker's observation about a flagged stretch, in words, with the number beside it.

    Parameters
    ----------
    name : str
        A marker of ``FEATURE_NAMES``.
    value : float
        The stretch's value, in the marker's unit.
    usual : float
        The client's median over the other windows of this session (NaN when there are none); z-score
        markers are already relative to the session and use the sign of ``value`` instead.
    language : {"nl", "en"}

    Returns
    -------
    str
    """
    key = f"marker.{name}"
    values = dict(value=_amount(name, value, language), usual=_amount(name, usual, language))
    if has(f"{key}.up"):
        values = dict(value=_amount(name, abs(value), language),
                      direction=text(f"{key}.up" if value > 0 else f"{key}.down", language))
    return text(f"{key}.reason", language, **values)


def flag_reasons(facts: Sequence[ReasonFact], sentences: Sequence[str], language: str) -> tuple[str, ...]:
    """A flag's reasons in the reader's ``language``, worded from the facts kept with it.

    A flag of a session analysed before the facts were kept (no ``facts``), or one whose facts name a marker
    this version has no sentence for, keeps the sentences it was analysed with (``sentences``, in the language
    of that analysis).

    Parameters
    ----------
    facts : sequence of ReasonFact
        The flag's ``reason_facts``, strongest reason first.
    sentences : sequence of str
        The flag's ``reasons``: its sentences in the language of the analysis.
    language : {"nl", "en"}
        The reader's language (the report's, or the review app's).

    Returns
    -------
    tuple of str
        One sentence per reason, strongest first.
    """
    known = _feature_units()
    if not facts or not all(f.marker in known and has(f"marker.{f.marker}.reason") for f in facts):
        return tuple(sentences)
    return tuple(reason_sentence(f.marker, f.value, f.usual, language) for f in facts)


def analysis_windows(report: SessionReport) -> tuple[float, float]:
    """The markers' window length and hop (s) as the analysis was set (``settings["features"]``).

    A session shorter than one window has one frame, whose length and start say nothing of the hop; the
    settings do. A report without them (an older ``session.json``) falls back on the frames, then on the
    defaults of :class:`pipeline.settings.FeatureSettings`.

    Returns
    -------
    window_s, hop_s : float
    """
    from pipeline.settings import FeatureSettings

    fs = (report.settings or {}).get("features") or {}
    frames = report.features.frames
    default = FeatureSettings()
    window_s = fs.get("window_s") or (frames[0].end - frames[0].start if len(frames) > 1 else default.window_s)
    hop_s = fs.get("hop_s") or (frames[1].start - frames[0].start if len(frames) > 1 else default.hop_s)
    return float(window_s), float(hop_s)


def _per_minute(n: int, time_s: float, duration_s: float, language: str) -> str:
    """``n`` events in a session of ``duration_s`` as a rate per minute, then the count and their total time."""
    rate = n / (duration_s / 60.0) if duration_s > 0 else math.nan
    return (f"{quantity(rate, '1/min', language)} ("
            + text("report.overlap_count", language, n=n, duration=_clock(duration_s),
                   time=i18n_number(time_s, language, 1)) + ")")


def _fmt_time(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    return f"{int(seconds // 60):d}:{seconds % 60:04.1f}"


LONG_SILENCE_S = 3.0


def overlap_spans(turns) -> list[tuple[float, float]]:
    """Stretches (s) in which two or more speakers' turns overlap.

    Turns are counted, not speakers, so two overlapping turns of one speaker
    also give a stretch. A turn that ends exactly where another starts is no
    overlap.

    Parameters
    ----------
    turns : iterable of SpeakerTurn
        Turns of all speakers, times in seconds, in any order.

    Returns
    -------
    list of (float, float)
        ``(start_s, end_s)`` in time order, not overlapping.
    """
    events = sorted([(t.start, 1) for t in turns] + [(t.end, -1) for t in turns])
    out, active, since = [], 0, 0.0
    for time, step in events:
        if active < 2 <= active + step:
            since = time
        elif active >= 2 > active + step and time > since:
            out.append((since, time))
        active += step
    return out


def timeline_svg(report: SessionReport, text: dict, *, width_in: float = 9.5) -> str:
    """Who spoke when, as inline SVG drawn with matplotlib.

    One lane per role in fixed colours (``ROLE_COLOURS``), a lane marking
    overlapped speech, silences of at least ``LONG_SILENCE_S`` shaded grey,
    and flags as translucent spans in their rupture type's colour.
    The time axis runs from 0 to the recording's duration, with at most
    about 12 ``m:ss`` ticks.

    Parameters
    ----------
    report : SessionReport
        Its diarization turns, roles, flags and recording duration (s) are
        drawn.
    text : dict of str to str
        The report's words (:func:`pipeline.report_text.report_text`):
        ``"silence"`` and ``"flag"`` are needed; role names, ``"overlap"``
        and the rupture types are used when present, else the key itself.
    width_in : float > 0
        Figure width in inches.

    Returns
    -------
    str
        An ``<svg ...>...</svg>`` element (:func:`svg_of`).

    Raises
    ------
    KeyError
        ``text`` lacks ``"silence"`` or ``"flag"``.
    """

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from pipeline.turns import silences

    turns = report.diarization.turns
    duration = max(report.recording.duration_s, 1e-6)
    roles = [r for r in ROLE_ORDER if r in {report.roles.role_of(t.speaker) for t in turns}] or ["unknown"]
    lanes = roles + ["overlap"]
    fig, ax = plt.subplots(figsize=(width_in, 0.45 * len(lanes) + 0.9))
    y = {name: len(lanes) - 1 - i for i, name in enumerate(lanes)}
    for f in report.flags:
        ax.axvspan(f.start, f.end, color=FLAG_COLOURS.get(f.marker_type, "#c62828"), alpha=0.18, lw=0)
    if turns:
        first, last = min(t.start for t in turns), max(t.end for t in turns)
        for a, b in silences(turns, start_s=first, end_s=last):
            if b - a >= LONG_SILENCE_S:
                ax.axvspan(a, b, color="#bbbbbb", alpha=0.35, lw=0)
    for role in roles:
        spans = [(t.start, t.duration) for t in turns if report.roles.role_of(t.speaker) == role]
        ax.broken_barh(spans, (y[role] - 0.35, 0.7), color=ROLE_COLOURS.get(role, ROLE_COLOURS["unknown"]))
    ax.broken_barh([(a, b - a) for a, b in overlap_spans(turns)], (y["overlap"] - 0.2, 0.4), color="#222222")
    ax.set_yticks([y[n] for n in lanes], [text.get(n, n) for n in lanes], fontsize=9)
    ax.set_xlim(0, duration)
    ax.set_ylim(-0.7, len(lanes) - 0.3)
    ticks = [t for t in _arange(0, duration, next(s for s in (5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 1e9)
                                                 if duration / s <= 12))]
    ax.set_xticks(ticks, [f"{int(t // 60)}:{int(t % 60):02d}" for t in ticks], fontsize=8)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0)
    handles = [Patch(color="#bbbbbb", alpha=0.35, label=text["silence"])] + [
        Patch(color=c, alpha=0.18, label=f"{text['flag']}: {text.get(k, k)}") for k, c in FLAG_COLOURS.items()]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    return svg_of(fig)


def svg_of(fig) -> str:
    """A matplotlib figure as inline SVG text (from ``<svg``, without the XML prolog or a creation date); the figure
    is closed.

    Parameters
    ----------
    fig : matplotlib.figure.Figure

    Returns
    -------
    str
        The ``<svg ...>...</svg>`` element, ready to embed in HTML.
    """
    import io

    import matplotlib.pyplot as plt

    buf = io.StringIO()
    # No creation date and ids hashed with a fixed salt (not random): the same report renders to the same text,
    # and the render time stays out of it.
    with plt.rc_context({"svg.hashsalt": "alliance-monitor"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def _arange(start: float, stop: float, step: float) -> list[float]:
    n = int(math.floor((stop - start) / step)) + 1
    return [start + i * step for i in range(n)]


def _excerpt(report: SessionReport, start: float, end: float) -> list[dict]:
    return [dict(role=u.role, speaker=u.speaker, start=_fmt_time(u.start), text=u.text)
            for u in report.utterances if u.end > start and u.start < end]


PROBABILITY_BANDS = ((0.5, "band_low"), (0.8, "band_medium"), (1.01, "band_high"))
"""Upper bounds (exclusive) of the probability bands the report names: below 0.5 low, below 0.8 medium, else
high. Only a flag's band is named in words; the number stands beside it in small print."""

TIMES_MARKERS = frozenset({"therapist_client_mlu_ratio"})
"""Markers whose unit is a ratio of two lengths, printed as "1,4×" rather than as a percentage."""

UNUSUAL_MAX = 5
"""Most markers the summary lists as unlike the client's earlier sessions."""

MIN_HISTORY = 2
"""Fewest earlier sessions of the client the summary compares this one with: one session is no range."""

# Literature the page cites, in order of first citation ([n] on the page, the list at the end).
REFERENCES = ("bordin", "eubanks", "heldner", "ferguson", "kunsch", "mauch", "brown", "wiltshire")


def probability_band(p: float) -> str:
    """The catalogue key (``report.band_*``) of a probability's band.

    Parameters
    ----------
    p : float in [0, 1]

    Returns
    -------
    str
        ``"band_low"`` below 0.5, ``"band_medium"`` below 0.8, else ``"band_high"``.
    """
    return next(key for upper, key in PROBABILITY_BANDS if p < upper)


def _clock(seconds: float) -> str:
    """A time in the session as m:ss (the summary's and the cards' clock)."""
    s = int(round(max(0.0, float(seconds))))
    return f"{s // 60}:{s % 60:02d}"


def model_caveat(card: Mapping[str, Any] | None, version: str, language: str) -> str:
    """One line naming the model and what it was trained on, from its card.

    Parameters
    ----------
    card : mapping, optional
        The model card (``models/artifacts/<version>/model_card.json``); its ``summary`` says what the
        model was trained on. A card may add ``summary_nl``, its Dutch wording.
    version : str
        The model version the report's flags came from.
    language : {"nl", "en"}

    Returns
    -------
    str
    """
    summary = str((card or {}).get("summary", ""))
    if (card or {}).get(f"summary_{language}"):
        trained = str(card[f"summary_{language}"]).rstrip(".")
    elif "simulated" in summary.lower() and "not on real" in summary.lower():
        trained = text("report.trained_simulated", language)
    elif summary and language == "en":
        trained = summary.rstrip(".")
    else:
        trained = text("report.trained_unknown", language)
    return text("report.caveat", language, version=version, trained=trained)


TRAINED_BEFORE_CARDS_SAID = {"vad_method": "silero", "speaker_encoder": "resemblyzer"}  # sim-v1 to sim-v6


def settings_note(report: SessionReport, card: Mapping[str, Any] | None, language: str) -> str:
    """A line for beside the caveat when the speech or the voices were found otherwise than for the model's training.

    The markers depend on what found the speech (``vad.method``) and what told the voices apart
    (``diarization.embedder``); a classifier reads them as it learned them.

    Parameters
    ----------
    report : SessionReport
        Its ``settings`` hold the analysis' ``vad`` and ``diarization`` groups.
    card : mapping, optional
        The model card; its ``analysis`` says how the training sessions were analysed (cards without it:
        Silero and resemblyzer, as every model up to ``sim-v6`` was trained).
    language : {"nl", "en"}

    Returns
    -------
    str
        Empty when the analysis was done as the model's training sessions were, or when no model card is given.
    """
    if card is None:
        return ""
    trained = {**TRAINED_BEFORE_CARDS_SAID, **(card.get("analysis") or {})}
    settings = report.settings or {}
    now = {"vad_method": (settings.get("vad") or {}).get("method", "silero"),
           "speaker_encoder": (settings.get("diarization") or {}).get("embedder", "resemblyzer")}
    parts = []
    for key, line in (("vad_method", "report.measured_vad"), ("speaker_encoder", "report.measured_encoder")):
        if now[key] != trained[key]:
            def name(v):
                return text(f"report.method_{v}", language) if has(f"report.method_{v}") else str(v)

            parts.append(text(line, language, now=name(now[key]), trained=name(trained[key])))
    return text("report.measured_otherwise", language, what="; ".join(parts)) if parts else ""


def threshold_note(report: SessionReport, card: Mapping[str, Any] | None, language: str) -> str:
    """A line for beside the caveat when a setting (``ALLIANCE_MODEL__FLAG_THRESHOLD``) replaced the model's threshold.

    Parameters
    ----------
    report : SessionReport
        Its ``settings["model"]["flag_threshold"]`` is the setting (``None``: the model card's thresholds).
    card : mapping, optional
        The model card, whose ``threshold`` holds ``value`` and optionally ``per_class`` values.
    language : {"nl", "en"}

    Returns
    -------
    str
        Empty when no setting replaced the threshold; else says to what, and whether that flags more
        (lowered below every threshold of the model) or fewer (raised above every threshold and confirmation
        level) stretches.
    """
    override = ((report.settings or {}).get("model") or {}).get("flag_threshold")
    if override is None:
        return ""
    def thr(v: float) -> str:  # as precisely as it is set: 0,29 and 0,295
        return i18n_number(v, language, 2 if abs(v - round(v, 2)) < 1e-9 else 3)

    value = thr(float(override))
    limits = (card or {}).get("threshold") or {}
    per = {k: float(v) for k, v in (limits.get("per_class") or {}).items()}
    model = sorted(set(per.values())) or ([float(limits["value"])] if "value" in limits else [])
    if not model:
        return text("report.threshold_set", language, threshold=value)
    said = (thr(model[0]) if len(model) == 1 else ", ".join(
        text("report.threshold_per_type", language, value=thr(v),
             kind=text(f"report.{k}", language) if has(f"report.{k}") else k) for k, v in per.items()))
    # a setting flags every stretch at it, without the model's confirmation levels: "fewer" only above those too
    levels = [float(v) for v in (limits.get("confirm") or {}).values()]
    key = ("report.threshold_lowered" if override < model[0] else "report.threshold_raised"
           if override > max([model[-1], *levels]) else "report.threshold_set")
    return text(key, language, threshold=value, model=said) if key != "report.threshold_set" else text(
        key, language, threshold=value)


def _how_roles(rule: str, language: str) -> str:
    """The role rule codes (``most-speech-is-therapist+...``, :mod:`pipeline.roles`) in words."""
    from pipeline import roles

    keys = {roles.RULE_OVERRIDE: "override", roles.RULE_PROFILE: "profile", roles.RULE_CHILD_F0: "child_voice",
            roles.RULE_QUESTIONS: "questions", roles.RULE_MOST_SPEECH: "most_speech", roles.RULE_CLIENT_REST: "rest"}
    if not rule:  # no speaker, so no role was given
        return text("roles.nobody", language)
    words = [text(f"roles.{keys.get(part, 'other')}", language) for part in rule.split("+") if part]
    return ", ".join(dict.fromkeys(words)) or text("roles.other", language)


def speaker_names(speakers, roles, language: str) -> dict[str, str]:
    """What the report calls each speaker: their role, numbered when two or more share it.

    Parameters
    ----------
    speakers : sequence of str
        The diarization's speaker codes (``SPEAKER_00``, ...), which the clinician never reads.
    roles : RoleAssignment
    language : {"nl", "en"}

    Returns
    -------
    dict of str to str
        Speaker code → name, e.g. ``{"SPEAKER_00": "therapeut", "SPEAKER_01": "ouder 1", "SPEAKER_02": "ouder 2"}``.
    """
    by_role: dict[str, list[str]] = {}
    for s in speakers:
        by_role.setdefault(roles.role_of(s), []).append(s)
    out = {}
    for r, group in by_role.items():
        word = text(f"report.{r}", language) if has(f"report.{r}") else r
        out.update({s: word if len(group) == 1 else f"{word} {i}" for i, s in enumerate(group, 1)})
    return out


def language_name(code: str, language: str) -> str:
    """A transcript's language (Whisper's code, ``"en"``) by its name in ``language`` (``"Engels"``).

    A code the catalogue has no name for (``report.language_<code>``) is returned as it is.

    Parameters
    ----------
    code : str
        The transcript's language code, or ``"unknown"``.
    language : {"nl", "en"}
        The reader's language.

    Returns
    -------
    str
        The language's name, or ``code``.

    Raises
    ------
    ValueError
        ``language`` is neither ``nl`` nor ``en`` (for a code the catalogue
        names).
    """
    key = f"report.language_{code}"
    return text(key, language) if has(key) else code


def _how_speakers(method: str, language: str) -> str:
    return text("roles.channels" if "channel" in method else "roles.clustering", language)


def _unusual(report: SessionReport, language: str) -> list[str]:
    """Markers of this session outside the client's range over earlier sessions, furthest outside first."""
    out = []
    for name, h in report.client_history.items():
        m = report.session_markers.get(name)
        if not m or not h or not h.get("n") or not has(f"marker.{name}.label"):
            continue
        v, lo, hi = _num(m.get("value")), _num(h.get("min")), _num(h.get("max"))
        if not all(math.isfinite(z) for z in (v, lo, hi)) or lo <= v <= hi:
            continue
        outside = (lo - v if v < lo else v - hi) / max(hi - lo, 1e-9, abs(hi) * 0.05)
        unit = marker_unit(name, m.get("unit", ""))
        out.append((outside, text("report.summary_unusual_item", language,
                                  label=text(f"marker.{name}.label", language),
                                  value=quantity(v, unit, language), low=quantity(lo, unit, language),
                                  high=quantity(hi, unit, language))))
    return [s for _, s in sorted(out, key=lambda t: -t[0])][:UNUSUAL_MAX]


def render_html(report: SessionReport, *, language: str = "nl", clips: dict[int, str] | None = None,
                model_card: Mapping[str, Any] | None = None) -> str:
    """The report as one self-contained HTML page (no scripts, no network; A4 portrait when printed).

    Every word comes from the text catalogue (:mod:`pipeline.i18n`) in ``language``: a summary first (how
    many stretches, where, of which kind, what differs from the client's earlier sessions), the timeline, a
    card per flag (3RS markers it resembles, reasons worded in ``language`` from their facts
    (:func:`flag_reasons`), probability band), the session's markers under their
    clinical names, the transcript, a narrow appendix of every marker by code name (the per-window table
    itself is ``features.csv``) and the literature cited.

    Parameters
    ----------
    report : SessionReport
    language : {"nl", "en"}
        Interface language (``ALLIANCE_UI_LANGUAGE``); Dutch by default.
    clips : dict of int to str, optional
        Per flag index, a ``data:audio/wav;base64,…`` URI of that stretch, embedded as a player.
    model_card : mapping, optional
        The flags' model card, for the one-line caveat under the summary.
    """
    from jinja2 import Environment, PackageLoader, select_autoescape

    from pipeline.report_text import report_text

    x = report_text(language)
    env = Environment(loader=PackageLoader("pipeline", "templates"), autoescape=select_autoescape(["html"]))
    env.filters["t"] = _fmt_time
    env.filters["clock"] = _clock
    m = report.metrics
    num = lambda v, d=1: i18n_number(v, language, d)  # noqa: E731
    role = lambda r: x.get(r, r)  # noqa: E731
    names = speaker_names(report.diarization.speakers, report.roles, language)
    speakers = [dict(speaker=names[s], role=role(report.roles.role_of(s)), speech_s=num(m.speech_time_s.get(s, 0.0)),
                     ratio=num(100 * m.speech_ratio.get(s, 0.0), 0), turns=m.n_turns.get(s, 0),
                     colour=ROLE_COLOURS.get(report.roles.role_of(s), ROLE_COLOURS["unknown"]))
                for s in report.diarization.speakers]
    summary = [
        (x["duration"], _clock(m.duration_s)),
        (x["gaps"], f"{len(m.gaps_s)} ({x['mean']} {num(sum(m.gaps_s) / len(m.gaps_s), 2)} s)" if m.gaps_s else "0"),
        # overlap as one measure everywhere: per minute of the session (the marker overlap_rate_per_min), the count
        # the time of those overlaps only (overlap_time_s also holds overlaps inside a turn: the row below)
        (x["overlaps"], _per_minute(len(m.overlaps_s), sum(m.overlaps_s), m.duration_s, language)),
        (x["interruptions"], ", ".join(
            f"{role(report.roles.role_of(s))} {n}" + (f" ({m.successful_interruptions.get(s, 0)} {x['successful']})"
                                                      if n else "")
            for s, n in m.interruptions.items()) or "0"),
        (x["overlap_backchannels"], ", ".join(f"{role(report.roles.role_of(s))} {n}"
                                              for s, n in m.overlap_backchannels.items()) or "0"),
        *([(x["overlap_detected"], _per_minute(len(report.overlap_regions),
                                                sum(r.duration for r in report.overlap_regions), m.duration_s,
                                                language))] if report.overlap_regions else []),
        (x["latency"], quantity(m.response_latency_s, "offset_s", language)),
        (x["longest"], f"{num(m.longest_silence_s)} s"),
        (x["silence_share"], f"{num(100 * m.silence_share, 0)} %"),
    ]
    flags = [dict(f=f, colour=FLAG_COLOURS.get(f.marker_type, "#c62828"), kind=x.get(f.marker_type, f.marker_type),
                  band=text("report.band", language, band=x[probability_band(f.probability)]),
                  p=num(f.probability, 2), reasons=flag_reasons(f.reason_facts, f.reasons, language),
                  resembles=[text(f"rupture3rs.{k}", language) for k in f.resembles if has(f"rupture3rs.{k}")],
                  excerpt=[dict(e, role=role(e["role"])) for e in _excerpt(report, f.start, f.end)],
                  clip=(clips or {}).get(i))
             for i, f in enumerate(report.flags)]
    kinds = {}
    for f in report.flags:  # a 3RS marker only where the flag's own observations resemble it
        like = [text(f"rupture3rs.{k}", language) for k in f.resembles if has(f"rupture3rs.{k}")]
        kinds.setdefault(f.marker_type, []).append(
            f"{_clock(f.start)}–{_clock(f.end)}"
            + (f" ({text('report.summary_resembles', language, markers='; '.join(like))})" if like else ""))
    history_n = max((int(h.get("n") or 0) for h in report.client_history.values()), default=0)
    markers = []
    for k, v in report.session_markers.items():
        h = report.client_history.get(k)
        unit = marker_unit(k, v.get("unit", ""))
        if v.get("unit") == "z":  # against the client's own session average: 0 over the session by construction
            continue
        earlier = (f"{quantity(_num(h['min']), unit, language)} – {quantity(_num(h['max']), unit, language)} "
                   f"(n = {h['n']})" if h and h.get("n") else "—")
        markers.append(dict(name=k, label=text(f"marker.{k}.label", language) if has(f"marker.{k}.label") else k,
                            value=quantity(_num(v["value"]), unit, language), earlier=earlier))
    feats = report.features
    flagged = [i for i, fr in enumerate(feats.frames) if any(fr.start < f.end and fr.end > f.start
                                                             for f in report.flags)]
    appendix = []
    for j, (name, unit) in enumerate(zip(feats.feature_names, feats.units)):
        digits = 2 if unit in ("ratio", "r", "1/utterance", "syllables/word", "z") else 1
        bare = lambda v: i18n_number(v, language, digits)  # noqa: E731
        col = [fr.values[j] for fr in feats.frames if math.isfinite(fr.values[j])]
        in_flags = [feats.frames[i].values[j] for i in flagged if math.isfinite(feats.frames[i].values[j])]
        appendix.append(dict(
            name=name, unit=text(f"unit_short.{unit}", language) if has(f"unit_short.{unit}") else unit,
            label=text(f"marker.{name}.label", language) if has(f"marker.{name}.label") else name,
            median=bare(statistics.median(col)) if col else "—",
            range=f"{bare(min(col))} – {bare(max(col))}" if col else "—",
            flagged=f"{bare(min(in_flags))} – {bare(max(in_flags))}" if in_flags else "—"))
    window_s, hop_s = analysis_windows(report)
    return env.get_template("report.html").render(
        r=report, x=x, lang=language, timeline=timeline_svg(report, x), speakers=speakers, summary=summary,
        flags=flags, kinds=[(x.get(k, k), spans) for k, spans in kinds.items()],
        unusual=_unusual(report, language) if history_n >= MIN_HISTORY else [], history_n=history_n,
        min_history=MIN_HISTORY,
        caveat=model_caveat(model_card, report.model_version, language),
        threshold_note=threshold_note(report, model_card, language),
        settings_note=settings_note(report, model_card, language),
        warnings=[localise(w, language) for w in report.warnings],
        unjudged=nothing_judged(report.warnings),  # nothing was judged, so nothing was "below" the threshold
        created=local_time(report.created_at, ((report.settings or {}).get("web") or {}).get("timezone")
                           or DEFAULT_TIMEZONE),
        roles_by=text("report.roles_by", language, how=_how_roles(report.roles.rule, language)),
        speakers_by=text("report.speakers_by", language, how=_how_speakers(report.diarization.method, language)),
        certainty=[text("report.certainty", language, level=x.get(f"band_{v}", v))
                   for k, v in report.roles.evidence.items() if k.endswith("confidence") and isinstance(v, str)],
        markers=markers, appendix=appendix, flagged_n=len(flagged),
        appendix_note=text("report.appendix_note", language, n=len(feats.feature_names), window=num(window_s, 0),
                           hop=num(hop_s, 0)),
        references=[text(f"reference.{k}", language) for k in REFERENCES],
        language_name=language_name(report.transcript.language, language),
        technical=text("report.appendix_technical", language, hash=report.settings_hash,
                       speakers=", ".join(f"{s} = {role(report.roles.role_of(s))}"
                                          for s in report.diarization.speakers) or "—"),
        duration=_clock(report.recording.duration_s),
        utterances=[dict(role=role(u.role), colour=ROLE_COLOURS.get(u.role, "#888"), start=u.start, text=u.text)
                    for u in report.utterances],
    )


def clip_data_uris(samples, sample_rate_hz: int, flags, *, pad_s: float = 1.0) -> dict[int, str]:
    """``data:audio/wav;base64,…`` of each flag's stretch (± ``pad_s``), 16-bit mono, for embedding in the report.

    The stretch is cut to the recording, and samples outside [-1, 1] are
    clipped before conversion to 16-bit PCM.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono audio in [-1, 1].
    sample_rate_hz : int
        Sample rate in Hz, also written into each WAV header.
    flags : sequence of RuptureFlag
        Each with ``start`` and ``end`` in seconds.
    pad_s : float >= 0
        Seconds of audio added before and after each flag.

    Returns
    -------
    dict of int to str
        Flag index (position in ``flags``) to its data URI; empty without
        flags.
    """
    import base64
    import io
    import wave

    import numpy as np

    out = {}
    for i, f in enumerate(flags):
        a = max(0, int((f.start - pad_s) * sample_rate_hz))
        b = min(len(samples), int((f.end + pad_s) * sample_rate_hz))
        pcm = (np.clip(np.asarray(samples[a:b], dtype=np.float32), -1, 1) * 32767).astype("<i2").tobytes()
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(sample_rate_hz)
            w.writeframes(pcm)
        out[i] = "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return out


def _num(v) -> float:
    return float(v) if v is not None else math.nan


def report_file(out_dir: str | Path, language: str) -> Path:
    """The session's report in ``language``: ``report.<language>.html`` when it was written, else ``report.html``.

    ``report.html`` is in the language of the analysis (``ALLIANCE_UI_LANGUAGE`` then); :func:`write_report`
    adds ``report.<language>.html`` for each other language. A session analysed before reports were written in
    every language has only ``report.html``, in whatever language it was analysed.

    Parameters
    ----------
    out_dir : str or Path
        The session's folder.
    language : {"nl", "en"}
        The reader's language.

    Returns
    -------
    Path
        The file to show (it may not exist: the caller checks).
    """
    translated = Path(out_dir) / f"report.{language}.html"
    return translated if translated.is_file() else Path(out_dir) / "report.html"


def write_report(report: SessionReport, out_dir: str | Path, *, language: str = "nl",
                 clips: dict[int, str] | None = None, model_card: Mapping[str, Any] | None = None,
                 other_languages: Sequence[str] = ()) -> dict[str, Path]:
    """Write ``report.html``, ``session.json``, ``features.csv`` and ``utterance_markers.csv`` into ``out_dir``.

    ``language``, ``clips`` and ``model_card`` go to :func:`render_html`. The per-window markers are in
    ``features.csv`` (and ``session.json``), not in the page.

    Parameters
    ----------
    report : SessionReport
        The session; it is what ``session.json`` holds (its flags' sentences in the language of the analysis,
        and the facts they were worded from).
    out_dir : str or Path
        The session's folder (created when missing).
    language : {"nl", "en"}
        Language of ``report.html`` (``ALLIANCE_UI_LANGUAGE``).
    clips : dict of int to str, optional
        Embedded clips per flag index (:func:`clip_data_uris`), in every language's report.
    model_card : mapping, optional
        The model's card, for the caveat.
    other_languages : sequence of {"nl", "en"}, optional
        Each is written as a self-contained ``report.<language>.html`` of the same report, its flags' reasons
        worded in that language (:func:`flag_reasons`): what the review app serves in that language
        (:func:`report_file`). ``language`` itself is skipped.

    Returns
    -------
    dict of str to Path
        ``{"html": ..., "json": ..., "features_csv": ..., "utterances_csv": ...}``, and ``"html_<language>"``
        for each other language written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "report.html", "json": out / "session.json", "features_csv": out / "features.csv",
             "utterances_csv": out / "utterance_markers.csv"}
    paths["html"].write_text(render_html(report, language=language, clips=clips, model_card=model_card),
                             encoding="utf-8")
    for other in dict.fromkeys(other_languages):
        if other == language:
            continue
        paths[f"html_{other}"] = out / f"report.{other}.html"
        paths[f"html_{other}"].write_text(render_html(report, language=other, clips=clips, model_card=model_card),
                                          encoding="utf-8")
    paths["json"].write_text(json.dumps(to_jsonable(report), indent=1, ensure_ascii=False), encoding="utf-8")
    write_features_csv(report.features, paths["features_csv"])
    write_utterance_markers_csv(report.utterance_markers, paths["utterances_csv"])
    return paths


UTTERANCE_COLUMNS = (("speaker", ""), ("role", ""), ("start", "s"), ("end", "s"), ("n_words", "words"),
                     ("n_syllables", "syllables"), ("speaking_rate_syl_s", "syllables/s"), ("is_question", "0/1"),
                     ("is_minimal_response", "0/1"), ("is_backchannel", "0/1"), ("negations", "count"),
                     ("refusals", "count"), ("complaints", "count"), ("deference", "count"),
                     ("latency_s", "s"))


def write_utterance_markers_csv(markers, path: str | Path) -> Path:
    """Per-utterance markers as CSV (no transcript text); the header row holds ``name [unit]``.

    The columns are :data:`UTTERANCE_COLUMNS`; times are in seconds. Booleans
    are written as 0 or 1, and a NaN or infinite value as an empty field. The
    file is UTF-8 and is overwritten if it exists.

    Parameters
    ----------
    markers : iterable of UtteranceMarkers
        One row each, in the order given.
    path : str or Path
        The CSV file to write.

    Returns
    -------
    Path
        ``path``, as a Path.

    Raises
    ------
    OSError
        The file cannot be written.
    """
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([f"{n} [{u}]" if u else n for n, u in UTTERANCE_COLUMNS])
        for m in markers:
            row = []
            for n, _ in UTTERANCE_COLUMNS:
                v = getattr(m, n)
                row.append(int(v) if isinstance(v, bool) else ("" if isinstance(v, float) and not math.isfinite(v) else v))
            w.writerow(row)
    return path


def write_features_csv(features: SessionFeatures, path: str | Path) -> Path:
    """Per-window feature table as CSV; the header row holds ``name [unit]``.

    The first two columns are ``start_s`` and ``end_s`` of each window, then
    one column per marker in ``features.feature_names`` order. Values are
    rounded to 5 decimals; NaN or infinite values are written as an empty
    field. The file is UTF-8 and is overwritten if it exists.

    Parameters
    ----------
    features : SessionFeatures
        The per-window markers.
    path : str or Path
        The CSV file to write.

    Returns
    -------
    Path
        ``path``, as a Path.

    Raises
    ------
    OSError
        The file cannot be written.
    """
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["start_s", "end_s"] + [f"{n} [{u}]" for n, u in zip(features.feature_names, features.units)])
        for fr in features.frames:
            w.writerow([fr.start, fr.end] + ["" if not math.isfinite(v) else round(v, 5) for v in fr.values])
    return path


MIN_ANALYSABLE_S = 1.0


def judgement_warnings(features: SessionFeatures, speech: tuple[SpeechRegion, ...], *,
                       min_window_speech_s: float) -> tuple[str, ...]:
    """A sentence when speech was found but no window holds enough of it to be judged by the classifier.

    Windows with less than ``min_window_speech_s`` of speech are never flagged (:mod:`models.flagging`), so such a
    recording (a few words in noise, a recorder left running; white noise that Whisper turns into one word) has
    not been judged at all, which the report must say instead of "nothing needs review".

    Parameters
    ----------
    features : SessionFeatures
        The analysis windows, each with its ``speech_s`` (s).
    speech : tuple of SpeechRegion
        VAD output; when empty, :func:`input_warnings` already says no speech was found.
    min_window_speech_s : float
        Seconds of speech a window needs to be judged (``ALLIANCE_MODEL__MIN_WINDOW_SPEECH_S``).

    Returns
    -------
    tuple of str
        Empty, or one sentence in English from the text catalogue (``warn.too_little_speech``; when the whole
        recording is shorter than ``min_window_speech_s``, ``warn.too_little_speech_short``, which gives its length).
    """
    if not speech or any(fr.speech_s >= min_window_speech_s for fr in features.frames):
        return ()
    window = features.frames[0].end - features.frames[0].start if features.frames else 0.0
    if window < min_window_speech_s:  # the whole recording is shorter than the speech a judgement needs
        return (text("warn.too_little_speech_short", "en", duration=f"{window:.0f}", min=f"{min_window_speech_s:g}"),)
    return (text("warn.too_little_speech", "en", window=f"{window:g}", min=f"{min_window_speech_s:g}"),)


def nothing_judged(warnings: Sequence[str]) -> str | None:
    """Which of the report's summaries says that nothing was judged, given a report's (English) warnings.

    Returns
    -------
    str or None
        ``"summary_no_speech"`` (no speech found), ``"summary_too_little_speech"`` (see :func:`judgement_warnings`),
        or None when the recording was judged.
    """
    if text("warn.no_speech", "en") in warnings:
        return "summary_no_speech"
    little = text("warn.too_little_speech", "en", window="", min="").split(":")[0]
    return "summary_too_little_speech" if any(w.startswith(little) for w in warnings) else None


def input_warnings(rec: Recording, speech: tuple[SpeechRegion, ...], transcript: Transcript) -> tuple[str, ...]:
    """Plain sentences about the input that the reader of the report must see.

    Parameters
    ----------
    rec : Recording
        Its ``decode_warning`` (truncated or damaged file) and duration (s).
    speech : tuple of SpeechRegion
        VAD output; empty means no speech was found.
    transcript : Transcript
        Empty words with speech present means nothing was recognised; ``limited_spans`` that ASR finished
        quickly after its time limit.

    Returns
    -------
    tuple of str
        In English, from the text catalogue (``warn.*``), as ``session.json`` and the command line keep them;
        the report shows them in its language (:func:`pipeline.i18n.localise`).
    """
    from pipeline.i18n import text

    out = []
    if rec.decode_warning:
        out.append(rec.decode_warning)
    if rec.duration_s < MIN_ANALYSABLE_S:
        out.append(text("warn.too_short", "en", duration=f"{rec.duration_s:.1f}"))
    if not speech:
        out.append(text("warn.no_speech", "en"))
    elif not transcript.words:
        out.append(text("warn.no_words", "en"))
    if transcript.limited_spans:  # the ASR time limit (pipeline.asr.transcribe) was reached
        start = min(a for a, _ in transcript.limited_spans)
        out.append(text("warn.asr_limited", "en", start=f"{int(start // 60)}:{int(start % 60):02d}"))
    return tuple(out)
