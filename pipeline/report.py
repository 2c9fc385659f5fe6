"""Render a :class:`~pipeline.types.SessionReport` as ``report.html`` and ``session.json``.

The HTML is self-contained (inline CSS and SVG, no scripts, no network) so a
therapist can open it from disk.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from pipeline.types import Recording, SessionFeatures, SessionReport, SpeechRegion, Transcript, to_jsonable

ROLE_COLOURS = {"therapist": "#1f6fb2", "client": "#e07b00", "parent": "#5a9e3a", "unknown": "#888888"}
FLAG_COLOURS = {"withdrawal": "#7b4fb0", "confrontation": "#c62828"}
ROLE_ORDER = ("therapist", "client", "parent", "unknown")


def _fmt_time(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    return f"{int(seconds // 60):d}:{seconds % 60:04.1f}"


LONG_SILENCE_S = 3.0


def overlap_spans(turns) -> list[tuple[float, float]]:
    """Stretches (s) in which two or more speakers' turns overlap."""
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
    """A matplotlib figure as inline SVG text (from ``<svg``, without the XML prolog); the figure is closed.

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
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def _arange(start: float, stop: float, step: float) -> list[float]:
    n = int(math.floor((stop - start) / step)) + 1
    return [start + i * step for i in range(n)]


def _excerpt(report: SessionReport, start: float, end: float) -> list[dict]:
    return [dict(role=u.role, speaker=u.speaker, start=_fmt_time(u.start), text=u.text)
            for u in report.utterances if u.end > start and u.start < end]


def render_html(report: SessionReport, *, language: str = "en", clips: dict[int, str] | None = None) -> str:
    """The report as one self-contained HTML page (no scripts, no network; printable to PDF).

    Parameters
    ----------
    report : SessionReport
    language : {"nl", "en"}
        Interface language (``ALLIANCE_UI_LANGUAGE``).
    clips : dict of int to str, optional
        Per flag index, a ``data:audio/wav;base64,…`` URI of that stretch, embedded as a player.
    """
    from jinja2 import Environment, PackageLoader, select_autoescape

    from pipeline.report_text import REPORT_TEXT

    text = REPORT_TEXT[language]
    env = Environment(loader=PackageLoader("pipeline", "templates"), autoescape=select_autoescape(["html"]))
    env.filters["t"] = _fmt_time
    m = report.metrics
    role = lambda r: text.get(r, r)  # noqa: E731
    speakers = [dict(speaker=s, role=role(report.roles.role_of(s)), speech_s=m.speech_time_s.get(s, 0.0),
                     ratio=m.speech_ratio.get(s, 0.0), turns=m.n_turns.get(s, 0),
                     colour=ROLE_COLOURS.get(report.roles.role_of(s), ROLE_COLOURS["unknown"]))
                for s in report.diarization.speakers]
    summary = [
        (text["duration"], f"{m.duration_s:.1f} s"),
        (text["gaps"], f"{len(m.gaps_s)} ({text['mean']} {sum(m.gaps_s) / len(m.gaps_s):.2f} s)" if m.gaps_s else "0"),
        (text["overlaps"], f"{len(m.overlaps_s)} ({m.overlap_time_s:.1f} s {text['overlapped_speech']})"),
        (text["interruptions"], ", ".join(
            f"{role(report.roles.role_of(s))} {n}" + (f" ({m.successful_interruptions.get(s, 0)} {text['successful']})"
                                                      if n else "")
            for s, n in m.interruptions.items()) or "0"),
        (text["overlap_backchannels"], ", ".join(f"{role(report.roles.role_of(s))} {n}"
                                                 for s, n in m.overlap_backchannels.items()) or "0"),
        *([(text["overlap_detected"], f"{len(report.overlap_regions)} × "
            f"({sum(r.duration for r in report.overlap_regions):.1f} s)")] if report.overlap_regions else []),
        (text["latency"], "—" if not math.isfinite(m.response_latency_s) else f"{m.response_latency_s:.2f} s"),
        (text["longest"], f"{m.longest_silence_s:.1f} s"),
        (text["silence_share"], f"{m.silence_share:.0%}"),
    ]
    flags = [dict(f=f, colour=FLAG_COLOURS.get(f.marker_type, "#c62828"), kind=text.get(f.marker_type, f.marker_type),
                  excerpt=[dict(e, role=role(e["role"])) for e in _excerpt(report, f.start, f.end)],
                  clip=(clips or {}).get(i))
             for i, f in enumerate(report.flags)]
    fmt = lambda v: "—" if not math.isfinite(_num(v)) else f"{round(_num(v), 2) + 0.0:.2f}"  # noqa: E731 (no -0.00)
    markers = []
    for k, v in report.session_markers.items():
        h = report.client_history.get(k)
        earlier = (f"{fmt(h['min'])} – {fmt(h['max'])} (n = {h['n']})" if h and h.get("n") else "—")
        markers.append(dict(name=k, unit=v["unit"], description=v["description"], value=fmt(v["value"]),
                            earlier=earlier))
    windows = [dict(start=fr.start, end=fr.end, cells=[fmt(v) for v in fr.values]) for fr in report.features.frames]
    return env.get_template("report.html").render(
        r=report, x=text, lang=language, timeline=timeline_svg(report, text), speakers=speakers, summary=summary,
        flags=flags, role_colours={role(k): c for k, c in ROLE_COLOURS.items()}, windows=windows, markers=markers,
        feature_header=list(zip(report.features.feature_names, report.features.units)),
        utterances=[dict(role=role(u.role), colour=ROLE_COLOURS.get(u.role, "#888"), start=u.start, text=u.text)
                    for u in report.utterances],
    )


def clip_data_uris(samples, sample_rate_hz: int, flags, *, pad_s: float = 1.0) -> dict[int, str]:
    """``data:audio/wav;base64,…`` of each flag's stretch (± ``pad_s``), 16-bit mono, for embedding in the report."""
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


def write_report(report: SessionReport, out_dir: str | Path, *, language: str = "en",
                 clips: dict[int, str] | None = None) -> dict[str, Path]:
    """Write ``report.html``, ``session.json``, ``features.csv`` and ``utterance_markers.csv`` into ``out_dir``.

    ``language`` and ``clips`` go to :func:`render_html`.

    Returns
    -------
    dict of str to Path
        ``{"html": ..., "json": ..., "features_csv": ..., "utterances_csv": ...}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "report.html", "json": out / "session.json", "features_csv": out / "features.csv",
             "utterances_csv": out / "utterance_markers.csv"}
    paths["html"].write_text(render_html(report, language=language, clips=clips), encoding="utf-8")
    paths["json"].write_text(json.dumps(to_jsonable(report), indent=1, ensure_ascii=False), encoding="utf-8")
    write_features_csv(report.features, paths["features_csv"])
    write_utterance_markers_csv(report.utterance_markers, paths["utterances_csv"])
    return paths


UTTERANCE_COLUMNS = (("speaker", ""), ("role", ""), ("start", "s"), ("end", "s"), ("n_words", "words"),
                     ("n_syllables", "syllables"), ("speaking_rate_syl_s", "syllables/s"), ("is_question", "0/1"),
                     ("is_minimal_response", "0/1"), ("is_backchannel", "0/1"), ("negations", "count"),
                     ("refusals", "count"), ("complaints", "count"), ("latency_s", "s"))


def write_utterance_markers_csv(markers, path: str | Path) -> Path:
    """Per-utterance markers as CSV (no transcript text); the header row holds ``name [unit]``."""
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
    """Per-window feature table as CSV; the header row holds ``name [unit]``."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["start_s", "end_s"] + [f"{n} [{u}]" for n, u in zip(features.feature_names, features.units)])
        for fr in features.frames:
            w.writerow([fr.start, fr.end] + ["" if not math.isfinite(v) else round(v, 5) for v in fr.values])
    return path


MIN_ANALYSABLE_S = 1.0


def input_warnings(rec: Recording, speech: tuple[SpeechRegion, ...], transcript: Transcript) -> tuple[str, ...]:
    """Plain sentences about the input that the reader of the report must see.

    Parameters
    ----------
    rec : Recording
        Its ``decode_warning`` (truncated or damaged file) and duration (s).
    speech : tuple of SpeechRegion
        VAD output; empty means no speech was found.
    transcript : Transcript
        Empty words with speech present means nothing was recognised.

    Returns
    -------
    tuple of str
    """
    out = []
    if rec.decode_warning:
        out.append(rec.decode_warning)
    if rec.duration_s < MIN_ANALYSABLE_S:
        out.append(f"the recording is only {rec.duration_s:.1f} s long: too short to analyse turn-taking")
    if not speech:
        out.append("no speech found: voice activity detection found no speech in the recording, "
                   "so there is no transcript and nothing was flagged")
    elif not transcript.words:
        out.append("speech was detected but no words were recognised; check the language setting "
                   "and the recording quality")
    return tuple(out)
