"""A client's sessions over time, for the review web app: flags per session by verdict and a few session markers,
as an SVG chart with clinical labels from the text catalogue."""

from __future__ import annotations

from pathlib import Path
from pipeline.i18n import has, number, text

TREND_MARKERS = ("client_speech_share", "client_minimal_response_share", "client_response_latency_s",
                 "longest_silence_s")
"""Session markers drawn under the flags, each labelled with its clinical name (``marker.<name>.label``).

Not the client's arousal (``client_arousal_z``): its z-scores are against the session itself, so its session
value is 0 in every session (the duration-weighted mean of its own z-scores) and says nothing across sessions.
A marker without a value in any of the client's sessions is left out of the chart."""

VERDICT_ORDER = ("rupture", "repaired", "no_rupture", "open")
"""Stacking order of a session's flags in the chart: by latest verdict, those not yet reviewed on top."""

VERDICT_COLOURS = {"rupture": "#b71c1c", "repaired": "#e08a00", "no_rupture": "#2e7d32", "open": "#9e9e9e"}

FLAT_SPAN = {"ratio": 0.1, "z": 1.0}
"""Smallest y-axis span per unit (default 1 unit): a marker that barely moves is drawn flat, not magnified."""


def client_trend(rows: list[dict], store, *, inbox_dir: Path | None = None) -> list[dict]:
    """Per analysed session of one client, in session-date order: date, number, flags by verdict, markers.

    Parameters
    ----------
    rows : list of dict
        The client's session rows (:meth:`flows.store.Store.sessions`), of every therapist who treated them;
        sessions not analysed are left out.
    store : Store
        Flags and verdicts (the latest per flag: a flag reviewed again counts once).
    inbox_dir : Path, optional
        The nightly inbox, whose kept sidecars give a session date ``session.json`` lacks.

    Returns
    -------
    list of dict
        ``{"session_id", "therapist_id", "number" (1 = the client's first session), "date" (YYYY-MM-DD or
        None), "flags" (count), "verdicts" ({rupture, no_rupture, repaired, open}: counts), "markers" ({name:
        value or None}), "units" ({name: unit})}`` per session.
    """
    from flows.web.review import read_session_json, session_facts, session_numbers

    analysed = [r for r in rows if r.get("status") == "analysed"]
    data = {r["session_id"]: read_session_json(r) for r in analysed}
    facts = {r["session_id"]: session_facts(r, data[r["session_id"]], inbox_dir) for r in analysed}
    numbers = session_numbers(facts)
    out = []
    for r in sorted(analysed, key=lambda r: numbers[r["session_id"]]):
        sid = r["session_id"]
        flags = store.flags(sid)
        latest = {v["flag_id"]: v["verdict"] for v in store.reviews(session_id=sid)}
        verdicts = dict.fromkeys(VERDICT_ORDER[:3], 0) | {"open": 0}
        for f in flags:
            verdicts[latest.get(f["id"], "open")] += 1
        markers = {k: (v.get("value") if isinstance(v, dict) else None)
                   for k, v in (data[sid].get("session_markers") or {}).items()}
        units = {k: v.get("unit", "") for k, v in (data[sid].get("session_markers") or {}).items()
                 if isinstance(v, dict)}
        out.append({"session_id": sid, "therapist_id": r.get("therapist_id") or "", "number": numbers[sid],
                    "date": facts[sid]["date"], "flags": len(flags), "verdicts": verdicts, "markers": markers,
                    "units": units})
    return out


def _tick_text(value: float, unit: str, language: str) -> str:
    """An axis tick as the report prints values: percent for ratios, a decimal comma in Dutch, no exponent."""
    if unit == "ratio":
        return f"{number(100 * value, language, 0)} %"
    if unit == "s":
        return f"{number(value, language, 1)} s"
    return number(value, language, 2 if unit in ("r", "z") else 1)


def trend_svg(trend: list[dict], *, language: str = "nl") -> str:
    """Flags per session (stacked by verdict) and the client's key markers across sessions, as an SVG chart.

    Every label comes from the text catalogue: the markers' clinical names, the verdicts in words, the x axis
    as session number and session date. Tick labels are plain numbers (percent for ratios), never an offset or
    an exponent; a marker that barely moves is drawn flat over a sensible span (``FLAT_SPAN``).

    Parameters
    ----------
    trend : list of dict
        Sessions in date order, as :func:`client_trend` gives them; at least one.
    language : {"nl", "en"}

    Returns
    -------
    str
        The ``<svg>`` element (text as text, not glyph paths), with ``role="img"`` and an ``aria-label``; no
        script, it refers only to its own ids.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from markupsafe import escape
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    from pipeline.report import svg_of

    markers = [m for m in TREND_MARKERS if any(t["markers"].get(m) is not None for t in trend)]
    x = list(range(len(trend)))
    with matplotlib.rc_context({"svg.fonttype": "none", "font.size": 9}):
        fig, axes = plt.subplots(1 + len(markers), 1, figsize=(8, 1.9 + 1.45 * len(markers)), sharex=True,
                                 squeeze=False)
        axes = axes[:, 0]
        ax = axes[0]
        bottom = [0] * len(trend)
        for v in VERDICT_ORDER:
            counts = [t["verdicts"][v] for t in trend]
            ax.bar(x, counts, bottom=bottom, color=VERDICT_COLOURS[v], width=0.6,
                   label=text("web.not_reviewed" if v == "open" else f"web.{v}", language))
            bottom = [b + c for b, c in zip(bottom, counts)]
        ax.set_title(text("web.trend_flags", language), loc="left", fontsize=9)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: number(v, language, 0)))
        ax.set_ylim(0, max(max(bottom, default=0), 1) * 1.15)
        fig.legend(handles=[Patch(color=VERDICT_COLOURS[v], label=text("web.not_reviewed" if v == "open"
                                                                       else f"web.{v}", language))
                            for v in VERDICT_ORDER], loc="lower center", ncol=len(VERDICT_ORDER), frameon=False,
                   fontsize=8)
        for ax, name in zip(axes[1:], markers):
            unit = next((t["units"].get(name) for t in trend if t["units"].get(name)), "")
            ys = [t["markers"].get(name) for t in trend]
            ys = [float("nan") if y is None else float(y) for y in ys]
            ax.plot(x, ys, marker="o", color="#1f5f99")
            finite = [y for y in ys if y == y]
            if finite:
                lo, hi = min(finite), max(finite)
                need = FLAT_SPAN.get(unit, 1.0)
                if hi - lo < need:
                    mid = (hi + lo) / 2
                    lo, hi = mid - need / 2, mid + need / 2
                    if unit == "ratio":
                        lo, hi = max(lo, 0.0), min(max(hi, lo + need), 1.0)
                pad = 0.1 * (hi - lo)
                ax.set_ylim(lo - pad, hi + pad)
            ax.yaxis.set_major_locator(MaxNLocator(nbins=3))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _, u=unit: _tick_text(v, u, language)))
            label = text(f"marker.{name}.label", language) if has(f"marker.{name}.label") else name
            if unit == "s" and any(y < 0 for y in finite):  # a mean response time below 0: starting too early
                ax.axhline(0.0, color="#555555", linewidth=0.8)
                label += " (" + text("web.trend_below_zero_s", language) + ")"
            ax.set_title(label, loc="left", fontsize=9)
        for ax in axes:
            ax.grid(alpha=0.3)
            for side in ("top", "right"):
                ax.spines[side].set_visible(False)
        date_unknown = text("web.date_unknown", language)
        axes[-1].set_xticks(x, [f"{text('web.number_short', language, n=t['number'])}\n{t['date'] or date_unknown}"
                                for t in trend], fontsize=8)
        axes[-1].set_xlim(-0.6, len(trend) - 0.4)
        fig.tight_layout(rect=(0, 0.5 / fig.get_figheight(), 1, 1))  # half an inch below for the legend
        svg = svg_of(fig)
    label = text("web.trend_chart", language, n=len(markers)) if markers else text("web.trend_chart_flags", language)
    return svg.replace("<svg ", f'<svg role="img" aria-label="{escape(label)}" ', 1)

