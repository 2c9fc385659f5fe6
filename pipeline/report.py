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


def _timeline(report: SessionReport, *, width: int = 900, lane_h: int = 22) -> dict:
    """Geometry of the who-spoke-when timeline (pixels)."""
    duration = max(report.recording.duration_s, 1e-6)
    roles_present = [r for r in ROLE_ORDER if r in set(report.roles.roles.values())] or ["unknown"]
    left, right = 90, 20
    scale = (width - left - right) / duration
    lanes = {r: i for i, r in enumerate(roles_present)}
    bars = [dict(x=left + t.start * scale, w=max(1.0, t.duration * scale), y=8 + lanes.get(report.roles.role_of(t.speaker), 0) * (lane_h + 6),
                 colour=ROLE_COLOURS.get(report.roles.role_of(t.speaker), ROLE_COLOURS["unknown"]),
                 title=f"{report.roles.role_of(t.speaker)} ({t.speaker}) {_fmt_time(t.start)}–{_fmt_time(t.end)}")
            for t in report.diarization.turns]
    height = 8 + len(roles_present) * (lane_h + 6) + 24
    flags = [dict(x=left + f.start * scale, w=max(2.0, (f.end - f.start) * scale),
                  colour=FLAG_COLOURS.get(f.marker_type, "#c62828"),
                  title=f"{f.marker_type} p={f.probability:.2f} {_fmt_time(f.start)}–{_fmt_time(f.end)}")
             for f in report.flags]
    step = next(s for s in (5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 1e9) if duration / s <= 12)
    ticks = [dict(x=left + t * scale, label=f"{int(t // 60)}:{int(t % 60):02d}") for t in _arange(0, duration, step)]
    return dict(width=width, height=height, left=left, right=right, lane_h=lane_h, bars=bars, flags=flags, ticks=ticks,
                lanes=[dict(role=r, y=8 + i * (lane_h + 6)) for r, i in lanes.items()], axis_y=height - 18)


def _arange(start: float, stop: float, step: float) -> list[float]:
    n = int(math.floor((stop - start) / step)) + 1
    return [start + i * step for i in range(n)]


def _excerpt(report: SessionReport, start: float, end: float) -> list[dict]:
    return [dict(role=u.role, speaker=u.speaker, start=_fmt_time(u.start), text=u.text)
            for u in report.utterances if u.end > start and u.start < end]


def render_html(report: SessionReport) -> str:
    """The report as one self-contained HTML page (no scripts, no network)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("pipeline", "templates"), autoescape=select_autoescape(["html"]))
    env.filters["t"] = _fmt_time
    m = report.metrics
    speakers = [dict(speaker=s, role=report.roles.role_of(s), speech_s=m.speech_time_s.get(s, 0.0),
                     ratio=m.speech_ratio.get(s, 0.0), turns=m.n_turns.get(s, 0),
                     colour=ROLE_COLOURS.get(report.roles.role_of(s), ROLE_COLOURS["unknown"]))
                for s in report.diarization.speakers]
    summary = [
        ("Duration", f"{m.duration_s:.1f} s"),
        ("Gaps at speaker changes", f"{len(m.gaps_s)} (mean {sum(m.gaps_s) / len(m.gaps_s):.2f} s)" if m.gaps_s else "0"),
        ("Overlaps at speaker changes", f"{len(m.overlaps_s)} ({m.overlap_time_s:.1f} s overlapped speech)"),
        ("Interruptions", ", ".join(f"{report.roles.role_of(s)} {n}" for s, n in m.interruptions.items()) or "0"),
        ("Client response latency (mean)", "—" if not math.isfinite(m.response_latency_s) else f"{m.response_latency_s:.2f} s"),
        ("Longest silence", f"{m.longest_silence_s:.1f} s"),
        ("Share of silence", f"{m.silence_share:.0%}"),
    ]
    flags = [dict(f=f, colour=FLAG_COLOURS.get(f.marker_type, "#c62828"), excerpt=_excerpt(report, f.start, f.end))
             for f in report.flags]
    age = f"; client age {report.client_age:g} y" if report.client_age is not None else ""
    markers = [dict(name=k, unit=v["unit"], description=v["description"],
                    value="—" if not math.isfinite(_num(v["value"])) else f"{_num(v['value']):.2f}")
               for k, v in report.session_markers.items()]
    windows = [dict(start=fr.start, end=fr.end, cells=["—" if not math.isfinite(v) else f"{v:.2f}" for v in fr.values])
               for fr in report.features.frames]
    return env.get_template("report.html").render(
        r=report, timeline=_timeline(report), speakers=speakers, summary=summary, flags=flags,
        role_colours=ROLE_COLOURS, flag_colours=FLAG_COLOURS, windows=windows, markers=markers, age_note=age,
        feature_header=list(zip(report.features.feature_names, report.features.units)),
        utterances=[dict(role=u.role, speaker=u.speaker, start=u.start, text=u.text) for u in report.utterances],
    )


def _num(v) -> float:
    return float(v) if v is not None else math.nan


def write_report(report: SessionReport, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.html``, ``session.json``, ``features.csv`` and ``utterance_markers.csv`` into ``out_dir``.

    Returns
    -------
    dict of str to Path
        ``{"html": ..., "json": ..., "features_csv": ..., "utterances_csv": ...}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "report.html", "json": out / "session.json", "features_csv": out / "features.csv",
             "utterances_csv": out / "utterance_markers.csv"}
    paths["html"].write_text(render_html(report), encoding="utf-8")
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
