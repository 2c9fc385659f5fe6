"""What the review pages show of a session: its date, the client's age and session number, and per flag its
reasons, the transcript around it, where it lies in the session and the verdicts given on it.

Everything is read from what the analysis wrote (``session.json``: the session date and client age from the
session's metadata, the utterances with their roles, the flags with their reasons and the 3RS markers they
resemble) and from the database (flags, verdicts); nothing here is logged, transcript text least of all. A flag's
reasons are worded in the reader's language from the facts kept with it; a session analysed before the facts
were kept shows the sentences it was analysed with.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from pipeline.i18n import DEFAULT_TIMEZONE, has, number, text
from pipeline.i18n import local_time as when  # noqa: F401  (the review pages' times)
from pipeline.types import ReasonFact

CONTEXT_S = 5.0
"""Seconds of context before and after a flag: in its clip and in its transcript excerpt."""

MATCH_TOLERANCE_S = 0.01
"""A database flag is the ``session.json`` flag of the same kind whose start and end lie this close (s)."""

ROLE_COLOURS = {"therapist": "#1f5f99", "client": "#a35200", "parent": "#3d6e27", "unknown": "#555555"}
"""Role colours on the review page: the report's hues, darkened to a contrast of at least 4.5:1 on white."""

FLAG_COLOURS = {"withdrawal": "#6a3f9e", "confrontation": "#b71c1c"}
"""Flag kinds' colours (the report's hues, at least 4.5:1 on white)."""

"""The clinic's time zone when none is given (the default of ``ALLIANCE_WEB__TIMEZONE``)."""


def clock(seconds: float) -> str:
    """A time in the session as m:ss, as the report prints it.

    Parameters
    ----------
    seconds : float
        Seconds from the start of the recording; negative values print as 0:00.

    Returns
    -------
    str
    """
    s = int(round(max(0.0, float(seconds))))
    return f"{s // 60}:{s % 60:02d}"


def read_session_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """The ``session.json`` the analysis wrote for a session's database row; ``{}`` when it is missing or unreadable.

    Parameters
    ----------
    row : mapping
        The session's row (:meth:`flows.store.Store.session`), with ``out_dir``.

    Returns
    -------
    dict
    """
    path = Path(row.get("out_dir") or "") / "session.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _sidecar_record(row: Mapping[str, Any], inbox_dir: Path | None) -> dict[str, Any]:
    """This session's own sidecar kept in ``<inbox>/done/`` (:func:`flows.inbox.session_sidecar`), or ``{}``."""
    from flows.inbox import session_sidecar

    path = session_sidecar(inbox_dir, row)
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def session_facts(row: Mapping[str, Any], data: Mapping[str, Any], inbox_dir: Path | None) -> dict[str, Any]:
    """The session's own date and the client's age, from its metadata (never the processing date).

    Parameters
    ----------
    row : mapping
        The session's database row.
    data : mapping
        Its ``session.json`` (:func:`read_session_json`): ``session_date`` and ``client_age`` as the analysis took
        them from the session's metadata.
    inbox_dir : Path or None
        The nightly inbox: its ``done/`` folder keeps the session's sidecar, read when ``session.json`` lacks them.

    Returns
    -------
    dict
        ``{"date": "YYYY-MM-DD" or None, "age": float or None, "sort": str}``; ``sort`` orders a client's
        sessions (the session date, else the processing time, then the session id).
    """
    date, age = data.get("session_date"), data.get("client_age")
    if date is None or age is None:
        record = _sidecar_record(row, inbox_dir)
        date = date if date is not None else record.get("date")
        if age is None:
            age = record.get("client_age")
            if age is None:
                age = next((p.get("age") for p in record.get("participants") or []
                            if isinstance(p, dict) and p.get("role") == "client"), None)
    date = str(date)[:10] if date else None
    age = float(age) if isinstance(age, (int, float)) and math.isfinite(age) else None
    return {"date": date, "age": age, "sort": f"{date or (row.get('updated_at') or '')[:10]} {row['session_id']}"}


def session_numbers(facts: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Each session's number among its client's sessions, 1 for the first, in session-date order.

    Parameters
    ----------
    facts : mapping of str to mapping
        Per session id of one client, its :func:`session_facts`.

    Returns
    -------
    dict of str to int
    """
    return {sid: i for i, sid in enumerate(sorted(facts, key=lambda sid: facts[sid]["sort"]), start=1)}


def age_text(age: float | None, language: str) -> str:
    """The client's age in whole years as the lists print it (``"11"``), a dash when unknown.

    Parameters
    ----------
    age : float or None
        Age in years; None when the metadata gives none.
    language : {"nl", "en"}
        The reader's language (:func:`pipeline.i18n.number`).

    Returns
    -------
    str
        The age rounded to whole years, or ``"—"``.
    """
    return "—" if age is None else number(age, language, 0)


def stored_flag(flag: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """The ``session.json`` flag that a database flag stands for (same kind, same stretch), or ``{}``.

    Parameters
    ----------
    flag : mapping
        A database flag (``start_s``, ``end_s``, ``marker_type``).
    data : mapping
        The session's ``session.json``.

    Returns
    -------
    dict
        With ``reasons`` (sentences in the language the session was analysed in), ``reason_facts`` (what they
        were worded from, :func:`stored_facts`; none in a session analysed before they were kept) and
        ``resembles`` (keys of the catalogue's ``rupture3rs`` table).
    """
    for f in data.get("flags") or []:
        if (isinstance(f, dict) and f.get("marker_type") == flag["marker_type"]
                and abs(float(f.get("start", math.nan)) - flag["start_s"]) <= MATCH_TOLERANCE_S
                and abs(float(f.get("end", math.nan)) - flag["end_s"]) <= MATCH_TOLERANCE_S):
            return f
    return {}


def stored_facts(stored: Mapping[str, Any]) -> tuple[ReasonFact, ...]:
    """The facts behind a ``session.json`` flag's reasons (:class:`~pipeline.types.ReasonFact`), or ``()``.

    Parameters
    ----------
    stored : mapping
        A flag of ``session.json`` (:func:`stored_flag`).

    Returns
    -------
    tuple of ReasonFact
        Empty for a session analysed before the facts were kept, or when any of them is incomplete: then the
        flag's stored sentences are shown as they are.
    """
    raw = stored.get("reason_facts") or []
    if not all(isinstance(f, Mapping) and isinstance(f.get("marker"), str)
               and all(isinstance(f.get(k), (int, float)) or f.get(k) is None for k in ("value", "usual"))
               for f in raw):
        return ()
    return tuple(ReasonFact.from_dict(f) for f in raw)


def excerpt(data: Mapping[str, Any], start_s: float, end_s: float, language: str, *,
            context_s: float = CONTEXT_S) -> list[dict[str, Any]]:
    """The utterances around a flag, each with its role in words, its time and whether it lies inside the flag.

    Parameters
    ----------
    data : mapping
        The session's ``session.json`` (utterances with roles, names already replaced by the analysis).
    start_s, end_s : float
        The flag, seconds from the start of the recording.
    language : {"nl", "en"}
    context_s : float >= 0, optional
        Seconds before and after the flag whose utterances are included.

    Returns
    -------
    list of dict
        ``{"role", "role_key", "colour", "at" (m:ss), "text", "inside" (bool)}`` in time order.
    """
    a, b = start_s - context_s, end_s + context_s
    out = []
    for u in data.get("utterances") or []:
        if not isinstance(u, dict) or not (u.get("end", 0.0) > a and u.get("start", 0.0) < b):
            continue
        words = " ".join(str(w.get("text", "")).strip() for w in u.get("words") or [] if isinstance(w, dict))
        role = u.get("role") if u.get("role") in ROLE_COLOURS else "unknown"
        out.append({"role": text(f"report.{role}", language),
                    "role_key": role, "colour": ROLE_COLOURS[role], "at": clock(u.get("start", 0.0)),
                    "text": words.strip(), "inside": u.get("end", 0.0) > start_s and u.get("start", 0.0) < end_s})
    return out


def timeline_svg(flag: Mapping[str, Any], others: Iterable[Mapping[str, Any]], duration_s: float,
                 language: str) -> str:
    """A small bar of the whole session placing one flag in it (the other flags lighter), as inline SVG.

    Parameters
    ----------
    flag : mapping
        The flag shown (``start_s``, ``end_s``, ``marker_type``).
    others : iterable of mapping
        The session's other flags.
    duration_s : float > 0
        The session's length, seconds.
    language : {"nl", "en"}

    Returns
    -------
    str
        An ``<svg role="img">`` with an ``aria-label`` saying where the flag lies; no script.
    """
    from markupsafe import escape

    width, left, right = 600.0, 8.0, 8.0
    span = max(float(duration_s), float(flag["end_s"]), 1e-6)
    x = lambda t: left + (width - left - right) * min(max(t, 0.0), span) / span  # noqa: E731
    label = text("web.place", language, start=clock(flag["start_s"]), end=clock(flag["end_s"]),
                 duration=clock(span))
    parts = [f'<svg class="place" role="img" aria-label="{escape(label)}" viewBox="0 0 {width:g} 34" '
             f'width="100%" height="34" xmlns="http://www.w3.org/2000/svg">',
             f'<rect x="{left:g}" y="6" width="{width - left - right:g}" height="12" fill="#e8e8e8" stroke="#767676"/>']
    for o in others:
        parts.append(f'<rect x="{x(o["start_s"]):.1f}" y="6" width="{max(x(o["end_s"]) - x(o["start_s"]), 2):.1f}" '
                     f'height="12" fill="#9e9e9e"/>')
    colour = FLAG_COLOURS.get(flag["marker_type"], "#b71c1c")
    a, b = x(flag["start_s"]), x(flag["end_s"])
    parts.append(f'<rect x="{a:.1f}" y="2" width="{max(b - a, 3):.1f}" height="20" fill="{colour}"/>')
    parts.append(f'<text x="{left:g}" y="32" font-size="11" fill="#333">0:00</text>')
    parts.append(f'<text x="{width - right:g}" y="32" font-size="11" fill="#333" text-anchor="end">'
                 f'{clock(span)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def verdict_words(verdict: str | None, language: str) -> str:
    """A verdict (``rupture``, ``no_rupture``, ``repaired``) in words; None: not yet reviewed.

    A verdict the text catalogue has no words for is shown as not yet
    reviewed.

    Parameters
    ----------
    verdict : str or None
        The stored verdict.
    language : {"nl", "en"}
        The reader's language.

    Returns
    -------
    str
        The catalogue's ``web.<verdict>`` text, or ``web.not_reviewed``.

    Raises
    ------
    ValueError
        ``language`` is neither ``nl`` nor ``en``.
    """
    return text(f"web.{verdict}" if verdict and has(f"web.{verdict}") else "web.not_reviewed", language)


def history_rows(history: Iterable[Mapping[str, Any]], language: str, zone: str = DEFAULT_TIMEZONE) -> list[str]:
    """Verdict history as lines ("2026-12-02 16:01 t-anna: breuk"), oldest first, each with its note.

    Parameters
    ----------
    history : iterable of mapping
        Review rows (:meth:`flows.store.Store.review_history`), their times in UTC.
    language : {"nl", "en"}
    zone : str, optional
        The clinic's time zone, in which the times are shown (:func:`when`).

    Returns
    -------
    list of str
    """
    out = []
    for h in history:
        line = text("web.history_row", language, at=when(h["at"], zone), who=h["therapist_id"],
                    verdict=verdict_words(h["verdict"], language))
        if h.get("note"):  # the team reads each other's notes (escaped by the page, as every value)
            line += text("web.history_note", language, note=str(h["note"]))
        out.append(line)
    return out


def flag_view(flag: Mapping[str, Any], *, data: Mapping[str, Any], flags: list[Mapping[str, Any]],
              latest: Mapping[str, Any] | None, history: list[Mapping[str, Any]], language: str,
              zone: str = DEFAULT_TIMEZONE) -> dict[str, Any]:
    """Everything the review page shows of one flag.

    Parameters
    ----------
    flag : mapping
        The database flag (``id``, ``start_s``, ``end_s``, ``marker_type``, ``probability``).
    data : mapping
        The session's ``session.json``.
    flags : list of mapping
        All the session's database flags (the timeline shows the others lighter).
    latest : mapping or None
        The flag's latest verdict (:meth:`flows.store.Store.reviews`), None when not reviewed yet.
    history : list of mapping
        Every verdict on this flag, oldest first.
    language : {"nl", "en"}
    zone : str, optional
        The clinic's time zone, in which verdict times are shown (:func:`when`).

    Returns
    -------
    dict
    """
    from pipeline.report import flag_reasons, probability_band

    stored = stored_flag(flag, data)
    duration = float((data.get("recording") or {}).get("duration_s") or 0.0) or float(flag["end_s"])
    kind = flag["marker_type"]
    return {
        "id": flag["id"], "start": clock(flag["start_s"]), "end": clock(flag["end_s"]),
        "kind": text(f"report.{kind}", language) if has(f"report.{kind}") else kind,
        "colour": FLAG_COLOURS.get(kind, "#b71c1c"),
        "band": text("report.band", language, band=text(f"report.{probability_band(flag['probability'])}", language)),
        "p": number(flag["probability"], language, 2),
        "reasons": list(flag_reasons(stored_facts(stored), [str(r) for r in stored.get("reasons") or []],
                                     language)),
        "resembles": [text(f"rupture3rs.{k}", language) for k in stored.get("resembles") or []
                      if has(f"rupture3rs.{k}")],
        "excerpt": excerpt(data, flag["start_s"], flag["end_s"], language),
        "clip": text("web.clip", language, start=clock(flag["start_s"] - CONTEXT_S),
                     end=clock(min(flag["end_s"] + CONTEXT_S, duration))),
        "timeline": timeline_svg(flag, [f for f in flags if f["id"] != flag["id"]], duration, language),
        "verdict": latest["verdict"] if latest else None,
        "note": (latest or {}).get("note") or "",
        "now": (text("web.verdict_now", language, verdict=verdict_words(latest["verdict"], language),
                     who=latest["therapist_id"], at=when(latest["at"], zone)) if latest else
                verdict_words(None, language)),
        "history": history_rows(history, language, zone),
    }
