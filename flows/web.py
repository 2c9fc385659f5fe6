"""The review web app: therapists log in, open their clients' reports, hear flagged moments, record verdicts.

Served by ``alliance web`` on loopback only. Each therapist sees only the
sessions whose ``therapist_id`` is their own login (HTTP 403 otherwise).
Passwords are stored as argon2id hashes (``argon2-cffi``). Every report view,
clip play, review and failed login is written to the append-only audit log;
review notes are stored, never logged. Audio is never copied: a flag's clip
is cut on request from the recording while the clinic still retains it
(``<inbox>/done/``, ``ALLIANCE_AUDIO_RETENTION_DAYS``).
"""

from __future__ import annotations

import hashlib
import html
import io
import secrets
from pathlib import Path

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from flows.store import VERDICTS, Store

COOKIE = "alliance_session"
CLIP_PAD_S = 1.0  # a flag's clip starts this much before the flag and ends this much after

TEXT = {
    "nl": {"title": "Alliantiemonitor", "login": "Inloggen", "user": "Therapeut", "password": "Wachtwoord",
           "bad_login": "Onbekende naam of verkeerd wachtwoord.", "logout": "Uitloggen",
           "sessions": "Uw sessies", "session": "Sessie", "client": "Cliënt", "date": "Datum", "flags": "Signalen",
           "reviewed": "beoordeeld", "open_report": "Rapport openen", "no_sessions": "Nog geen geanalyseerde sessies.",
           "flag": "Signaal", "verdict": "Uw oordeel", "note": "Notitie (optioneel)", "save": "Opslaan",
           "rupture": "breuk", "no_rupture": "geen breuk", "repaired": "breuk, hersteld",
           "withdrawal": "terugtrekking", "confrontation": "confrontatie", "probability": "kans",
           "no_audio": "De opname is niet meer bewaard.", "saved": "Oordeel opgeslagen.",
           "intro": "Signalen zijn bedoeld om terug te kijken, niet als diagnose van de alliantie.",
           "trend": "Verloop over sessies", "flags_count": "signalen"},
    "en": {"title": "Alliance monitor", "login": "Log in", "user": "Therapist", "password": "Password",
           "bad_login": "Unknown name or wrong password.", "logout": "Log out",
           "sessions": "Your sessions", "session": "Session", "client": "Client", "date": "Date", "flags": "Flags",
           "reviewed": "reviewed", "open_report": "Open report", "no_sessions": "No analysed sessions yet.",
           "flag": "Flag", "verdict": "Your verdict", "note": "Note (optional)", "save": "Save",
           "rupture": "rupture", "no_rupture": "no rupture", "repaired": "rupture, repaired",
           "withdrawal": "withdrawal", "confrontation": "confrontation", "probability": "probability",
           "no_audio": "The recording is no longer retained.", "saved": "Verdict saved.",
           "intro": "Flags are for review, not a diagnosis of the alliance.",
           "trend": "Trend across sessions", "flags_count": "flags"},
}


def hash_password(password: str) -> str:
    """argon2id hash of a password (argon2-cffi's defaults, RFC 9106).

    Raises
    ------
    ValueError
        The password is shorter than 8 characters.
    """
    from argon2 import PasswordHasher

    if len(password) < 8:
        raise ValueError("a password needs at least 8 characters")
    return PasswordHasher().hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash`` (False for an unknown user, without revealing which)."""
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    if stored_hash is None:
        PasswordHasher().hash("timing-equaliser")  # same cost whether or not the user exists
        return False
    try:
        return PasswordHasher().verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def find_recording(inbox_dir: Path | None, row: dict) -> Path | None:
    """The retained recording of a session in ``<inbox>/done/`` (checked by sha256), or None."""
    if inbox_dir is None or not row.get("recording_name"):
        return None
    done = Path(inbox_dir) / "done"
    if not done.is_dir():
        return None
    for p in sorted(done.glob(row["recording_name"] + "*")):
        if p.is_file() and hashlib.sha256(p.read_bytes()).hexdigest() == row.get("recording_sha256"):
            return p
    return None


TREND_MARKERS = ("client_speech_share", "client_minimal_response_share", "client_response_latency_s",
                 "longest_silence_s", "client_arousal_z")


def client_trend(rows: list[dict]) -> list[dict]:
    """Per analysed session of one client, in date order: date, flag count and the session markers.

    ``rows`` are the client's session rows from the store; markers come from each session's ``session.json``.
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
    """A small-multiples line chart (matplotlib, SVG text) of flag counts and key markers across sessions."""
    import io as _io

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
    buf = _io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def _page(t: dict, body: str, *, user: str | None = None, lang: str = "nl") -> str:
    logout = (f'<form method="post" action="/logout" style="float:right"><button>{t["logout"]}</button></form>'
              f'<span style="float:right;margin-right:1rem">{html.escape(user)}</span>') if user else ""
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>{t["title"]}</title>'
            '<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;color:#222}'
            'table{border-collapse:collapse}td,th{padding:.3rem .6rem;border-bottom:1px solid #ddd;text-align:left}'
            '.flag{border-left:4px solid #c62828;padding:.5rem 1rem;margin:1rem 0;background:#fafafa}'
            '.note{color:#555;font-size:.9rem}</style></head>'
            f'<body>{logout}<h1>{t["title"]}</h1>{body}</body></html>')


def create_app(settings, *, language: str | None = None):
    """The FastAPI application (see the module docstring).

    Parameters
    ----------
    settings : Settings
        Data directory, database, inbox (for clips).
    language : {"nl", "en"}, optional
        Interface language; default ``settings.ui_language`` when present, else Dutch.
    """
    lang = language or getattr(settings, "ui_language", "nl")
    t = TEXT[lang]
    store = Store.for_settings(settings)
    tokens: dict[str, str] = {}  # session cookie → therapist id (in memory: a restart logs everyone out)
    app = FastAPI(title="alliance-monitor review", docs_url=None, redoc_url=None, openapi_url=None)

    def user_of(request: Request) -> str:
        user = tokens.get(request.cookies.get(COOKIE, ""))
        if user is None:
            raise HTTPException(status_code=303, headers={"Location": "/login"})
        return user

    def own_session(user: str, session_id: str) -> dict:
        row = store.session(session_id)
        if row is None or row.get("status") != "analysed":
            raise HTTPException(status_code=404, detail="no such session")
        if row.get("therapist_id") != user:
            store.audit("access refused", actor=user, outcome="refused", client_id=row.get("client_id"),
                        session_id=session_id, detail="not this therapist's client")
            raise HTTPException(status_code=403, detail="this session belongs to another therapist's client")
        return row

    @app.get("/login", response_class=HTMLResponse)
    def login_form(error: int = 0) -> str:
        msg = f'<p style="color:#c62828">{t["bad_login"]}</p>' if error else ""
        return _page(t, f'{msg}<form method="post" action="/login"><p><label>{t["user"]} '
                        f'<input name="therapist" autocomplete="username" required></label></p><p><label>'
                        f'{t["password"]} <input name="password" type="password" autocomplete="current-password" '
                        f'required></label></p><button type="submit">{t["login"]}</button></form>', lang=lang)

    @app.post("/login")
    def login(therapist: str = Form(...), password: str = Form(...)):
        if not verify_password(store.password_hash(therapist), password):
            store.audit("login", actor=therapist[:128], outcome="refused")
            return RedirectResponse("/login?error=1", status_code=303)
        token = secrets.token_urlsafe(32)
        tokens[token] = therapist
        store.audit("login", actor=therapist, outcome="success")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.post("/logout")
    def logout(request: Request):
        tokens.pop(request.cookies.get(COOKIE, ""), None)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> str:
        user = user_of(request)
        rows = [r for r in store.sessions() if r.get("therapist_id") == user and r.get("status") == "analysed"]
        lines = []
        for r in sorted(rows, key=lambda r: r.get("updated_at") or "", reverse=True):
            flags = store.flags(r["session_id"])
            done = len(store.reviews(session_id=r["session_id"]))
            sid = html.escape(r["session_id"])
            cid = html.escape(r["client_id"] or "")
            lines.append(f'<tr><td><a href="/sessions/{sid}">{sid}</a></td><td><a href="/clients/{cid}/trend">{cid}</a></td>'
                         f'<td>{html.escape((r.get("updated_at") or "")[:10])}</td>'
                         f'<td>{len(flags)} ({done} {t["reviewed"]})</td></tr>')
        table = (f'<table><tr><th>{t["session"]}</th><th>{t["client"]}</th><th>{t["date"]}</th><th>{t["flags"]}</th>'
                 f'</tr>{"".join(lines)}</table>') if lines else f'<p>{t["no_sessions"]}</p>'
        return _page(t, f'<h2>{t["sessions"]}</h2><p class="note">{t["intro"]}</p>{table}', user=user, lang=lang)

    @app.get("/sessions/{session_id}", response_class=HTMLResponse)
    def session_page(request: Request, session_id: str, saved: int = 0) -> str:
        user = user_of(request)
        row = own_session(user, session_id)
        reviews = {r["flag_id"]: r for r in store.reviews(session_id=session_id)}
        audio = find_recording(settings.inbox_dir, row) is not None
        sid = html.escape(session_id)
        cards = []
        for f in store.flags(session_id):
            r = reviews.get(f["id"])
            options = "".join(f'<label><input type="radio" name="verdict" value="{v}" required'
                              f'{" checked" if r and r["verdict"] == v else ""}> {t[v]}</label> ' for v in VERDICTS)
            player = (f'<audio controls preload="none" src="/sessions/{sid}/flags/{f["id"]}/clip.wav"></audio>'
                      if audio else f'<p class="note">{t["no_audio"]}</p>')
            note = html.escape(r["note"]) if r and r.get("note") else ""
            cards.append(
                f'<div class="flag" id="flag-{f["id"]}"><h3>{t["flag"]} {_mmss(f["start_s"])}–{_mmss(f["end_s"])} · '
                f'{t.get(f["marker_type"], f["marker_type"])} · {t["probability"]} {f["probability"]:.2f}</h3>'
                f'{player}<form method="post" action="/sessions/{sid}/flags/{f["id"]}/review">'
                f'<p>{t["verdict"]}: {options}</p><p><label>{t["note"]}<br><textarea name="note" rows="2" cols="60">'
                f'{note}</textarea></label></p><button type="submit">{t["save"]}</button></form></div>')
        msg = f'<p style="color:#2e7d32">{t["saved"]}</p>' if saved else ""
        body = (f'<p><a href="/">← {t["sessions"]}</a></p><h2>{t["session"]} {sid}</h2>{msg}'
                f'<p><a href="/sessions/{sid}/report" target="_blank">{t["open_report"]}</a></p>{"".join(cards)}')
        return _page(t, body, user=user, lang=lang)

    @app.get("/clients/{client_id}/trend", response_class=HTMLResponse)
    def trend(request: Request, client_id: str) -> str:
        user = user_of(request)
        rows = store.sessions(client_id=client_id)
        if not rows:
            raise HTTPException(status_code=404, detail="no such client")
        if any(r.get("therapist_id") != user for r in rows):
            store.audit("access refused", actor=user, outcome="refused", client_id=client_id,
                        detail="trend of another therapist's client")
            raise HTTPException(status_code=403, detail="this client belongs to another therapist")
        points = client_trend(rows)
        store.audit("trend viewed", actor=user, outcome="success", client_id=client_id)
        chart = trend_svg(points, labels={"flags": t["flags_count"]}) if points else ""
        return _page(t, f'<p><a href="/">← {t["sessions"]}</a></p><h2>{t["trend"]}: {html.escape(client_id)}</h2>'
                        f'<p class="note">{t["intro"]}</p>{chart}', user=user, lang=lang)

    @app.get("/sessions/{session_id}/report", response_class=HTMLResponse)
    def report(request: Request, session_id: str) -> str:
        user = user_of(request)
        row = own_session(user, session_id)
        path = Path(row["out_dir"] or "") / "report.html"
        if not path.is_file():
            raise HTTPException(status_code=404, detail="the report file is missing")
        store.audit("report viewed", actor=user, outcome="success", client_id=row["client_id"], session_id=session_id)
        return path.read_text(encoding="utf-8")

    @app.get("/sessions/{session_id}/flags/{flag_id}/clip.wav")
    def clip(request: Request, session_id: str, flag_id: int):
        from pipeline.audio import decode, save_wav

        user = user_of(request)
        row = own_session(user, session_id)
        flag = next((f for f in store.flags(session_id) if f["id"] == flag_id), None)
        audio = find_recording(settings.inbox_dir, row)
        if flag is None or audio is None:
            raise HTTPException(status_code=404, detail="no clip: unknown flag, or the recording is no longer retained")
        rec = decode(audio, settings=settings.audio)
        a = max(0, int((flag["start_s"] - CLIP_PAD_S) * rec.sample_rate_hz))
        b = min(rec.samples.size, int((flag["end_s"] + CLIP_PAD_S) * rec.sample_rate_hz))
        buf = io.BytesIO()
        tmp = Path(settings.data_dir) / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        path = save_wav(tmp / f"clip-{secrets.token_hex(8)}.wav", rec.samples[a:b], rec.sample_rate_hz)
        try:
            buf.write(path.read_bytes())
        finally:
            path.unlink(missing_ok=True)
        store.audit("clip played", actor=user, outcome="success", client_id=row["client_id"], session_id=session_id,
                    detail=f"flag {flag_id}, {a / rec.sample_rate_hz:.1f}-{b / rec.sample_rate_hz:.1f} s")
        return Response(buf.getvalue(), media_type="audio/wav", headers={"Cache-Control": "no-store"})

    @app.post("/sessions/{session_id}/flags/{flag_id}/review")
    def review(request: Request, session_id: str, flag_id: int, verdict: str = Form(...), note: str = Form("")):
        user = user_of(request)
        row = own_session(user, session_id)
        flag = next((f for f in store.flags(session_id) if f["id"] == flag_id), None)
        if flag is None:
            raise HTTPException(status_code=404, detail="no such flag")
        if verdict not in VERDICTS:
            raise HTTPException(status_code=422, detail=f"verdict must be one of {', '.join(VERDICTS)}")
        store.save_review(session_id=session_id, flag=flag, verdict=verdict, note=note.strip()[:2000],
                          therapist_id=user)
        store.audit("flag reviewed", actor=user, outcome="success", client_id=row["client_id"],
                    session_id=session_id, detail=f"flag {flag_id}: {verdict}")
        return RedirectResponse(f"/sessions/{session_id}?saved=1#flag-{flag_id}", status_code=303)

    return app


def _mmss(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}"


def export_reviews(settings, out_dir: str | Path) -> dict[str, list[str]]:
    """Write reviewed sessions as annotated sessions in the training format (see :mod:`models.dataset`).

    For each analysed session with at least one review: ``<out>/<session_id>/`` with the recording (copied
    while the clinic retains it), ``metadata.json`` and ``ruptures.csv``. A flag judged *rupture* or *rupture,
    repaired* becomes an episode of the flag's type (marker ``repaired`` for the latter); *no rupture* adds none,
    so the stretch counts as ordinary talk.

    Returns
    -------
    dict
        ``{"exported": [session ids], "skipped": ["<session id>: reason", ...]}``.
    """
    import json
    import shutil

    from pipeline.annotations import RuptureAnnotation, write_rupture_csv

    store = Store.for_settings(settings)
    out = Path(out_dir)
    result: dict[str, list[str]] = {"exported": [], "skipped": []}
    by_session: dict[str, list[dict]] = {}
    for r in store.reviews():
        by_session.setdefault(r["session_id"], []).append(r)
    for session_id, reviews in sorted(by_session.items()):
        row = store.session(session_id)
        if row is None:
            result["skipped"].append(f"{session_id}: the session was purged")
            continue
        audio = find_recording(settings.inbox_dir, row)
        if audio is None:
            result["skipped"].append(f"{session_id}: the recording is no longer retained")
            continue
        from flows.nightly import sidecar_of

        sidecar = sidecar_of(audio)
        record = json.loads(sidecar.read_text(encoding="utf-8")) if sidecar is not None else {}
        folder = out / session_id
        if folder.exists():
            result["skipped"].append(f"{session_id}: {folder} already exists")
            continue
        folder.mkdir(parents=True)
        shutil.copy2(audio, folder / f"recording{audio.suffix.lower()}")
        # the session's own record: language (or auto), participants with roles and ages, as the clinic gave them
        language = record.get("language") if record.get("language") in ("nl", "en", "auto") else None
        participants = record.get("participants") or [{"role": "therapist", "id": row["therapist_id"]},
                                                      {"role": "client"}]
        meta = {"session_id": session_id, "client_id": row["client_id"], "language": language,
                "participants": participants, "source": "therapist reviews exported by alliance export-reviews"}
        if isinstance(record.get("client_age"), (int, float)):
            meta["client_age"] = record["client_age"]
        (folder / "metadata.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        notes = [RuptureAnnotation(r["start_s"], r["end_s"], r["marker_type"],
                                   "repaired" if r["verdict"] == "repaired" else None)
                 for r in reviews if r["verdict"] in ("rupture", "repaired")]
        kept, dropped = _merge_touching(notes)
        write_rupture_csv(folder / "ruptures.csv", kept)
        result["skipped"] += [f"{session_id}: the {d.label} verdict at {d.start:.0f}–{d.end:.0f} s overlaps an episode "
                              "of the other type and was left out (episodes cannot overlap); annotate it by hand"
                              for d in dropped]
        store.audit("reviews exported", actor="alliance export-reviews", outcome="success", client_id=row["client_id"],
                    session_id=session_id, detail=f"{len(reviews)} reviews, {len(notes)} episodes")
        result["exported"].append(session_id)
    return result


def _merge_touching(notes):
    """Episodes of one type that overlap or touch become one (flags of one type can touch); an episode of the
    other type overlapping one already kept is cut to the part after it, or, with nothing left, returned as dropped.

    Returns
    -------
    (kept, dropped) : two lists of RuptureAnnotation
    """
    from pipeline.annotations import RuptureAnnotation

    out, dropped = [], []
    for n in sorted(notes, key=lambda n: n.start):
        if out and n.start <= out[-1].end:
            if n.label == out[-1].label:
                out[-1] = RuptureAnnotation(out[-1].start, max(out[-1].end, n.end), n.label, out[-1].marker or n.marker)
                continue
            cut = RuptureAnnotation(out[-1].end, n.end, n.label, n.marker)
            if cut.end - cut.start < 1.0:
                dropped.append(n)
                continue
            n = cut
        out.append(n)
    return out, dropped
