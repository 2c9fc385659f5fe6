"""The review web app's FastAPI application: :func:`create_app` and its routes (see :mod:`flows.web`)."""

from __future__ import annotations

import hashlib
import html
import time
from pathlib import Path
from typing import Callable

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from flows.store import VERDICTS, Store
from flows.web.auth import (COOKIE, LOGIN_COOKIE, LOGIN_FORM_TTL_S, LoginRefused, Logins, LoginSession,
                            SecurityHeaders, printable, request_problem)
from pipeline.ids import is_valid_id

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
           "trend": "Verloop over sessies", "flags_count": "signalen",
           "locked": "Te veel mislukte inlogpogingen: deze naam of deze computer is tijdelijk geblokkeerd. "
                     "Probeer het over {minutes} minuten opnieuw.",
           "refused": "Geweigerd: dit verzoek kwam niet van de eigen pagina's van deze site, of het formulier is "
                      "verlopen. Laad de pagina opnieuw.",
           "back": "Terug"},
    "en": {"title": "Alliance monitor", "login": "Log in", "user": "Therapist", "password": "Password",
           "bad_login": "Unknown name or wrong password.", "logout": "Log out",
           "sessions": "Your sessions", "session": "Session", "client": "Client", "date": "Date", "flags": "Flags",
           "reviewed": "reviewed", "open_report": "Open report", "no_sessions": "No analysed sessions yet.",
           "flag": "Flag", "verdict": "Your verdict", "note": "Note (optional)", "save": "Save",
           "rupture": "rupture", "no_rupture": "no rupture", "repaired": "rupture, repaired",
           "withdrawal": "withdrawal", "confrontation": "confrontation", "probability": "probability",
           "no_audio": "The recording is no longer retained.", "saved": "Verdict saved.",
           "intro": "Flags are for review, not a diagnosis of the alliance.",
           "trend": "Trend across sessions", "flags_count": "flags",
           "locked": "Too many failed logins: this name or this computer is locked for now. "
                     "Try again in {minutes} minutes.",
           "refused": "Refused: this request did not come from this site's own pages, or its form has expired. "
                      "Reload the page.",
           "back": "Back"},
}


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


def _page(t: dict, body: str, *, user: str | None = None, lang: str = "nl", csrf: str = "") -> str:
    logout = (f'<form method="post" action="/logout" style="float:right">{_csrf_input(csrf)}'
              f'<button>{t["logout"]}</button></form>'
              f'<span style="float:right;margin-right:1rem">{html.escape(user)}</span>') if user else ""
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>{t["title"]}</title>'
            '<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;color:#222}'
            'table{border-collapse:collapse}td,th{padding:.3rem .6rem;border-bottom:1px solid #ddd;text-align:left}'
            '.flag{border-left:4px solid #c62828;padding:.5rem 1rem;margin:1rem 0;background:#fafafa}'
            '.note{color:#555;font-size:.9rem}</style></head>'
            f'<body>{logout}<h1>{t["title"]}</h1>{body}</body></html>')


def _csrf_input(token: str) -> str:
    return f'<input type="hidden" name="csrf" value="{html.escape(token)}">'


class _Refused(Exception):
    """Raised inside a route to answer with a refusal that is already audited."""

    def __init__(self, response: HTMLResponse) -> None:
        super().__init__("refused")
        self.response = response


def create_app(settings, *, language: str | None = None, clock: Callable[[], float] = time.monotonic,
               hosts: set[str] | None = None):
    """The FastAPI application (see the module docstring).

    Parameters
    ----------
    settings : Settings
        Data directory, database, inbox (for clips), ``web`` (lockout and session limits).
    language : {"nl", "en"}, optional
        Interface language; default ``settings.ui_language`` when present, else Dutch.
    clock : callable, optional
        Monotonic seconds for lockouts and session timeouts (tests pass a clock they move).
    hosts : set of str, optional
        ``Host`` headers this server answers to, such as ``{"127.0.0.1:8765", "localhost:8765"}``; any other
        gets 400 (DNS rebinding). None: any host (the test client).

    Returns
    -------
    FastAPI
    """
    lang = language or getattr(settings, "ui_language", "nl")
    t = TEXT[lang]
    web = settings.web
    store = Store.for_settings(settings)
    logins = Logins(store, web, clock)
    app = FastAPI(title="alliance-monitor review", docs_url=None, redoc_url=None, openapi_url=None)

    def refuse(request: Request, problem: str, *, actor: str | None = None, status: int = 403) -> HTMLResponse:
        """Answer ``status`` and audit the refusal (what was asked, why, by whom if logged in)."""
        if actor is None:
            s = logins.peek(request.cookies.get(COOKIE, ""))
            actor = s.user if s else "anonymous"
        store.audit("request refused", actor=actor, outcome="refused",
                    detail=f"{request.method} {printable(request.url.path)}: {problem}")
        body = f'<p>{t["refused"]}</p><p><a href="/">{t["back"]}</a></p>'
        return HTMLResponse(_page(t, body, lang=lang), status_code=status)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        problem = request_problem(request, hosts=hosts)
        if problem is not None:
            status, reason = problem
            return await run_in_threadpool(refuse, request, reason, status=status)
        return await call_next(request)

    app.add_middleware(SecurityHeaders)  # added last: outermost, so the guard's refusals get the headers too

    def login_of(request: Request) -> LoginSession:
        """The request's valid login session; otherwise (none, ended) a redirect to the login page."""
        s = logins.current(request.cookies.get(COOKIE, ""))
        if s is None:
            raise HTTPException(status_code=303, headers={"Location": "/login"})
        return s

    def user_of(request: Request) -> str:
        return login_of(request).user

    def check_csrf(request: Request, s: LoginSession, token: str) -> None:
        if not s.csrf_matches(token):
            raise _Refused(refuse(request, "the CSRF token is missing or not this login session's", actor=s.user))

    def valid_id(value: str) -> str:
        """``value`` when it is a valid id; 404 otherwise, before anything is looked up or built from it."""
        if not is_valid_id(value):
            raise HTTPException(status_code=404, detail="no such page")
        return value

    @app.exception_handler(_Refused)
    async def refused(_request: Request, exc: _Refused):
        return exc.response

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
    def login_form(error: int = 0, locked: int = 0) -> HTMLResponse:
        form_id, token = logins.open_form()  # a fresh token for this form, bound to a short-lived cookie
        msg = (f'<p style="color:#c62828">{t["locked"].format(minutes=f"{web.lockout_min:g}")}</p>' if locked else
               f'<p style="color:#c62828">{t["bad_login"]}</p>' if error else "")
        response = HTMLResponse(_page(
            t, f'{msg}<form method="post" action="/login">{_csrf_input(token)}<p><label>{t["user"]} '
               f'<input name="therapist" autocomplete="username" required></label></p><p><label>'
               f'{t["password"]} <input name="password" type="password" autocomplete="current-password" '
               f'required></label></p><button type="submit">{t["login"]}</button></form>', lang=lang))
        response.set_cookie(LOGIN_COOKIE, form_id, max_age=int(LOGIN_FORM_TTL_S), path="/login", httponly=True,
                            samesite="strict")
        return response

    @app.post("/login")
    def login(request: Request, therapist: str = Form(...), password: str = Form(...), csrf: str = Form("")):
        form_id = request.cookies.get(LOGIN_COOKIE, "")
        if not logins.form_token_matches(form_id, csrf):
            return refuse(request, "the login form's CSRF token is missing, expired or not this browser's")
        address = request.client.host if request.client else "unknown"
        try:
            session_token = logins.log_in(therapist, password, address=address, form_id=form_id)
        except LoginRefused as exc:
            return RedirectResponse("/login?locked=1" if exc.locked else "/login?error=1", status_code=303)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, session_token, httponly=True, samesite="strict")
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    @app.post("/logout")
    def logout(request: Request, csrf: str = Form("")):
        cookie = request.cookies.get(COOKIE, "")
        s = logins.peek(cookie)
        if s is not None:
            check_csrf(request, s, csrf)
            logins.log_out(cookie, s)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> str:
        s = login_of(request)
        user = s.user
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
        return _page(t, f'<h2>{t["sessions"]}</h2><p class="note">{t["intro"]}</p>{table}', user=user, lang=lang,
                     csrf=s.csrf)

    @app.get("/sessions/{session_id}", response_class=HTMLResponse)
    def session_page(request: Request, session_id: str, saved: int = 0) -> str:
        valid_id(session_id)
        s = login_of(request)
        user = s.user
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
                f'{player}<form method="post" action="/sessions/{sid}/flags/{f["id"]}/review">{_csrf_input(s.csrf)}'
                f'<p>{t["verdict"]}: {options}</p><p><label>{t["note"]}<br><textarea name="note" rows="2" cols="60">'
                f'{note}</textarea></label></p><button type="submit">{t["save"]}</button></form></div>')
        msg = f'<p style="color:#2e7d32">{t["saved"]}</p>' if saved else ""
        body = (f'<p><a href="/">← {t["sessions"]}</a></p><h2>{t["session"]} {sid}</h2>{msg}'
                f'<p><a href="/sessions/{sid}/report" target="_blank">{t["open_report"]}</a></p>{"".join(cards)}')
        return _page(t, body, user=user, lang=lang, csrf=s.csrf)

    @app.get("/clients/{client_id}/trend", response_class=HTMLResponse)
    def trend(request: Request, client_id: str) -> str:
        valid_id(client_id)
        s = login_of(request)
        user = s.user
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
                        f'<p class="note">{t["intro"]}</p>{chart}', user=user, lang=lang, csrf=s.csrf)

    @app.get("/sessions/{session_id}/report", response_class=HTMLResponse)
    def report(request: Request, session_id: str) -> str:
        valid_id(session_id)
        user = user_of(request)
        row = own_session(user, session_id)
        path = Path(row["out_dir"] or "") / "report.html"
        if not path.is_file():
            raise HTTPException(status_code=404, detail="the report file is missing")
        store.audit("report viewed", actor=user, outcome="success", client_id=row["client_id"], session_id=session_id)
        return path.read_text(encoding="utf-8")

    @app.get("/sessions/{session_id}/flags/{flag_id}/clip.wav")
    def clip(request: Request, session_id: str, flag_id: int):
        from pipeline.audio import decode, wav_bytes

        valid_id(session_id)
        user = user_of(request)
        row = own_session(user, session_id)
        flag = next((f for f in store.flags(session_id) if f["id"] == flag_id), None)
        audio = find_recording(settings.inbox_dir, row)
        if flag is None or audio is None:
            raise HTTPException(status_code=404, detail="no clip: unknown flag, or the recording is no longer retained")
        rec = decode(audio, settings=settings.audio)
        a = max(0, int((flag["start_s"] - CLIP_PAD_S) * rec.sample_rate_hz))
        b = min(rec.samples.size, int((flag["end_s"] + CLIP_PAD_S) * rec.sample_rate_hz))
        clip_wav = wav_bytes(rec.samples[a:b], rec.sample_rate_hz)  # in memory: no copy of client audio on disk
        store.audit("clip played", actor=user, outcome="success", client_id=row["client_id"], session_id=session_id,
                    detail=f"flag {flag_id}, {a / rec.sample_rate_hz:.1f}-{b / rec.sample_rate_hz:.1f} s")
        return Response(clip_wav, media_type="audio/wav", headers={"Cache-Control": "no-store"})

    @app.post("/sessions/{session_id}/flags/{flag_id}/review")
    def review(request: Request, session_id: str, flag_id: int, verdict: str = Form(...), note: str = Form(""),
               csrf: str = Form("")):
        valid_id(session_id)
        s = login_of(request)
        check_csrf(request, s, csrf)
        user = s.user
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

