"""The review web app's FastAPI application: :func:`create_app` and its routes (see :mod:`flows.web`)."""

from __future__ import annotations

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
from flows.web.charts import client_trend, trend_svg
from flows.web.clips import cut_clip, find_recording
from flows.web.text import TEXT
from pipeline.ids import is_valid_id


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
        valid_id(session_id)
        user = user_of(request)
        row = own_session(user, session_id)
        flag = next((f for f in store.flags(session_id) if f["id"] == flag_id), None)
        audio = find_recording(settings.inbox_dir, row)
        if flag is None or audio is None:
            raise HTTPException(status_code=404, detail="no clip: unknown flag, or the recording is no longer retained")
        excerpt = cut_clip(audio, flag["start_s"], flag["end_s"], settings=settings.audio)
        store.audit("clip played", actor=user, outcome="success", client_id=row["client_id"], session_id=session_id,
                    detail=f"flag {flag_id}, {excerpt.start_s:.1f}-{excerpt.end_s:.1f} s")
        return Response(excerpt.wav, media_type="audio/wav", headers={"Cache-Control": "no-store"})

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

