"""A client's sessions over time, for the review web app: flag counts and session markers, as an SVG chart."""

from __future__ import annotations

from pathlib import Path

TREND_MARKERS = ("client_speech_share", "client_minimal_response_share", "client_response_latency_s",
                 "longest_silence_s", "client_arousal_z")


def client_trend(rows: list[dict]) -> list[dict]:
    """Per analysed session of one client, in date order: date, flag count and the session markers.

    Parameters
    ----------
    rows : list of dict
        The client's session rows from the store (:meth:`flows.store.Store.sessions`); sessions not analysed,
        or whose ``session.json`` is gone, are left out.

    Returns
    -------
    list of dict
        ``{"session_id", "date" (YYYY-MM-DD), "flags" (count), "markers" ({name: value or None})}`` per session,
        markers as in each session's ``session.json``.
    """
    import json

    out = []
    for r in sorted(rows, key=lambda r: r.get("updated_at") or ""):
        path = Path(r.get("out_dir") or "") / "session.json"
        if r.get("status") != "analysed" or not path.is_file():
            continue
        s = json.loads(path.read_text(encoding="utf-8"))
        markers = {k: (v.get("value") if isinstance(v, dict) else None) for k, v in s.get("session_markers", {}).items()}
        out.append({"session_id": r["session_id"], "date": (r.get("updated_at") or "")[:10],
                    "flags": len(s.get("flags", [])), "markers": markers})
    return out


def trend_svg(trend: list[dict], *, labels: dict[str, str] | None = None) -> str:
    """A small-multiples line chart (matplotlib, SVG text) of flag counts and key markers across sessions.

    Parameters
    ----------
    trend : list of dict
        Sessions in date order, as :func:`client_trend` gives them; at least one.
    labels : dict of str to str, optional
        Axis label per series name (``"flags"`` or a marker of ``TREND_MARKERS``); default the name itself.

    Returns
    -------
    str
        The ``<svg>`` element, for inline use in a page (no script, refers only to its own ids).
    """
    from pipeline.report import svg_of

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ("flags",) + TREND_MARKERS
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 1.4 * len(names)), sharex=True)
    x = list(range(len(trend)))
    for ax, name in zip(axes, names):
        ys = [t["flags"] if name == "flags" else t["markers"].get(name) for t in trend]
        ys = [float("nan") if y is None else y for y in ys]
        ax.plot(x, ys, marker="o", color="#c62828" if name == "flags" else "#1565c0")
        ax.set_ylabel((labels or {}).get(name, name), rotation=0, ha="right", va="center", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xticks(x, [t["date"] or t["session_id"] for t in trend], rotation=30, fontsize=8)
    fig.tight_layout()
    return svg_of(fig)
