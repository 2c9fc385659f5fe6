"""The review web app's FastAPI application: :func:`create_app` and its routes (see :mod:`flows.web`)."""

from __future__ import annotations

import logging
import re
import time
import traceback
from pathlib import Path
from typing import Callable

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from flows.store import VERDICTS, Store
from flows.web.auth import (COOKIE, LOGIN_COOKIE, LOGIN_FORM_TTL_S, LoginRefused, Logins, LoginSession,
                            SecurityHeaders, printable, request_problem)
from flows.web.charts import client_trend, trend_svg
from flows.inbox import find_recording
from flows.web.clips import cut_clip
from flows.web.review import (CONTEXT_S, age_text, flag_view, history_rows, read_session_json,
                              session_facts, session_numbers)
from flows.web.review import clock as mmss
from flows.web.text import TEXT
from pipeline.ids import is_valid_id

log = logging.getLogger(__name__)

NOTE_MAX = 2000
"""Longest note kept with a verdict, in characters (the form says so: ``maxlength``)."""

# control characters other than line breaks and tabs, and the invisible characters that turn text around (a
# right-to-left override shows "xwav.png" for "x\u202egnp.wav") have no place in a clinical note
_NOT_IN_NOTES = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")



# Notes that say how a session was analysed, not that its result may mislead: shown on the session's page, not
# marked in the list, or every session of a therapist without a voice profile would carry the mark.
_NOT_MARKED = frozenset({"warn.no_profile"})


def _warned(warnings) -> bool:
    """Whether a session's warnings earn the list's mark (no speech, a damaged file, no client...)."""
    from pipeline.i18n import catalogue_key

    return any(catalogue_key(str(w)) not in _NOT_MARKED for w in (warnings or ()))


def clean_note(note: str) -> str:
    """A review note as stored: control and direction characters removed, lines kept (the length is checked by the
    caller against NOTE_MAX; nothing is cut).

    Parameters
    ----------
    note : str
        As the form sent it (the page's ``maxlength`` keeps a browser within NOTE_MAX).

    Returns
    -------
    str
    """
    return _NOT_IN_NOTES.sub("", note.replace("\r\n", "\n")).strip()


SHOW = ("all", "open")
"""The lists' filter (``?show=``): every flag, or only flags not yet reviewed."""

# The pages, in templates/ (package data); every value is escaped unless a template says |safe.
PAGES = Environment(loader=PackageLoader("flows.web", "templates"), autoescape=True, undefined=StrictUndefined,
                    trim_blocks=True, lstrip_blocks=True)
PAGES.filters["mmss"] = mmss


def model_card_of(version: str, data_dir: Path) -> dict | None:
    """The model card of a model version (the shipped ones, else those trained here), or None.

    Parameters
    ----------
    version : str
        The flags' model version; only a valid id is looked up (it names a folder).
    data_dir : Path
        ``ALLIANCE_DATA_DIR``, whose ``models/`` holds the models trained here.

    Returns
    -------
    dict or None
        ``model_card.json`` as read; None when no such card is found or it cannot be read.
    """
    import json

    from models.artifact import ARTIFACTS_DIR, CARD_FILE, user_models_dir

    if not version or not is_valid_id(version):
        return None
    for root in (ARTIFACTS_DIR, user_models_dir(data_dir)):
        try:
            return json.loads((Path(root) / version / CARD_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return None


class _Refused(Exception):
    """Raised inside a route to answer with a refusal that is already audited."""

    def __init__(self, response: HTMLResponse) -> None:
        super().__init__("refused")
        self.response = response


def create_app(settings, *, language: str | None = None, clock: Callable[[], float] = time.monotonic,
               hosts: set[str] | None = None):
    """The FastAPI application of the review web app (its protections: :mod:`flows.web`).

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
    from pipeline.i18n import localise, text
    from pipeline.report import model_caveat, report_file

    lang = language or getattr(settings, "ui_language", "nl")
    # the app's own texts, and what the review page shares with the report's flag cards
    t = {**TEXT[lang], "resembles": text("report.resembles", lang), "why": text("report.why", lang),
         "no_reason": text("report.no_reason", lang)}
    web = settings.web
    store = Store.for_settings(settings)
    logins = Logins(store, web, clock)
    app = FastAPI(title="alliance-monitor review", docs_url=None, redoc_url=None, openapi_url=None)

    def page(template: str, *, login: LoginSession | None = None, **context) -> str:
        """A page of ``templates/`` in the app's language; with ``login``, its user and logout form on top."""
        return PAGES.get_template(template).render(t=t, lang=lang, login=login, **context)

    def refuse(request: Request, problem: str, *, actor: str | None = None, status: int = 403) -> HTMLResponse:
        """Answer ``status`` and audit the refusal (what was asked, why, by whom if logged in)."""
        if actor is None:
            s = logins.peek(request.cookies.get(COOKIE, ""))
            actor = s.user if s else "anonymous"
        store.audit("request refused", actor=actor, outcome="refused",
                    detail=f"{request.method} {printable(request.url.path)}: {problem}")
        return HTMLResponse(page("refused.html"), status_code=status)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        problem = request_problem(request, hosts=hosts)
        if problem is not None:
            status, reason = problem
            return await run_in_threadpool(refuse, request, reason, status=status)
        try:
            return await call_next(request)
        except Exception as exc:  # noqa: BLE001 - the answer is a plain error page; the cause goes to the log
            # the route, the error's type and where it happened; not its message, which might quote a file's
            # content (transcript text must never reach a log); the page shows none of it
            where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}"
                                for f in reversed(traceback.extract_tb(exc.__traceback__)))
            log.error("%s %s failed: %s at %s", request.method, printable(request.url.path), type(exc).__name__,
                      where)
            return error_page(500)

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

    def not_found() -> HTTPException:
        """The one answer to anything that is not there *for this user*: unknown, or another therapist's.

        Both must look the same (status and page), so that a logged-in user cannot probe which ids exist.
        """
        return HTTPException(status_code=404, detail="no such page")

    def valid_id(value: str) -> str:
        """``value`` when it is a valid id; 404 otherwise, before anything is looked up or built from it."""
        if not is_valid_id(value):
            raise not_found()
        return value

    @app.exception_handler(_Refused)
    async def refused(_request: Request, exc: _Refused):
        return exc.response

    def error_page(status: int, hint: str | None = None) -> HTMLResponse:
        """A small page in the app's language for an error ``status``: a heading and a hint, no internals."""
        heading = t.get(f"error_{status}", t["error_other"])
        return HTMLResponse(page("error.html", heading=heading,
                                 hint=t.get(f"error_{status}_hint", "") if hint is None else hint),
                            status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException):
        if exc.status_code < 400:  # the redirect to the login page
            return Response(status_code=exc.status_code, headers=exc.headers)
        response = error_page(exc.status_code)
        if exc.headers:  # such as 405's Allow
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, _exc: RequestValidationError):
        return error_page(422)  # not pydantic's account of which field failed how

    def own_session(user: str, session_id: str) -> dict:
        row = store.session(session_id)
        if row is None or row.get("status") != "analysed":
            # audited like a refusal (one row either way, so the two answers also take as long), and probing shows
            store.audit("not found", actor=user, outcome="refused", session_id=session_id, detail="no such session")
            raise not_found()
        if row.get("therapist_id") != user:
            store.audit("access refused", actor=user, outcome="refused", client_id=row.get("client_id"),
                        session_id=session_id, detail="not this therapist's client")
            raise not_found()  # as for an unknown id: whether the session exists is not this user's to know
        return row

    @app.api_route("/login", methods=["GET", "HEAD"], response_class=HTMLResponse)
    def login_form(error: int = 0, locked: int = 0) -> HTMLResponse:
        form_id, token = logins.open_form()  # a fresh token for this form, bound to a short-lived cookie
        response = HTMLResponse(page("login.html", form_token=token, locked=locked, error=error,
                                     lockout_min=f"{web.lockout_min:g}"))
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

    def show_of(show: str) -> str:
        if show not in SHOW:
            raise HTTPException(status_code=422, detail=f"show must be one of {', '.join(SHOW)}")
        return show

    def client_numbers(client_id: str | None) -> dict[str, int]:
        """Session numbers of a client's analysed sessions (all therapists), in session-date order."""
        if not client_id:
            return {}
        rows = [r for r in store.sessions(client_id=client_id) if r.get("status") == "analysed"]
        return session_numbers({r["session_id"]: session_facts(r, read_session_json(r), settings.inbox_dir)
                                for r in rows})

    def caveat_of(version: str | None) -> str:
        return model_caveat(model_card_of(version or "", settings.data_dir), version or "?", lang)

    @app.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse)
    def index(request: Request, show: str = "all") -> str:
        s = login_of(request)
        show_of(show)
        rows = [r for r in store.sessions() if r.get("therapist_id") == s.user and r.get("status") == "analysed"]
        numbers: dict[str, dict[str, int]] = {}
        shown = []
        for r in rows:
            data = read_session_json(r)
            facts = session_facts(r, data, settings.inbox_dir)
            if r["client_id"] not in numbers:
                numbers[r["client_id"]] = client_numbers(r["client_id"])
            flags = store.flags(r["session_id"])
            reviewed = {v["flag_id"] for v in store.reviews(session_id=r["session_id"])}
            still_open = sum(f["id"] not in reviewed for f in flags)
            if show == "open" and not still_open:
                continue
            shown.append({"session_id": r["session_id"], "client_id": r["client_id"] or "",
                          "date": facts["date"] or t["date_unknown"], "sort": facts["sort"],
                          "age": age_text(facts["age"], lang),
                          "number": numbers[r["client_id"]].get(r["session_id"], "—"),
                          "flags": len(flags), "open": still_open,
                          "warned": _warned(data.get("warnings"))})  # e.g. no speech: not a calm session
        shown.sort(key=lambda r: r["sort"], reverse=True)
        return page("index.html", login=s, rows=shown, show=show)

    @app.api_route("/sessions/{session_id}", methods=["GET", "HEAD"], response_class=HTMLResponse)
    def session_page(request: Request, session_id: str, saved: int = 0, show: str = "all") -> str:
        valid_id(session_id)
        s = login_of(request)
        show_of(show)
        row = own_session(s.user, session_id)
        data = read_session_json(row)
        facts = session_facts(row, data, settings.inbox_dir)
        flags = store.flags(session_id)
        latest = {r["flag_id"]: r for r in store.reviews(session_id=session_id)}
        history: dict[int, list] = {}
        for h in store.review_history(session_id=session_id):
            history.setdefault(h["flag_id"], []).append(h)
        views = [flag_view(f, data=data, flags=flags, latest=latest.get(f["id"]), history=history.get(f["id"], []),
                           language=lang, zone=web.timezone) for f in flags if show == "all" or f["id"] not in latest]
        audio = find_recording(settings.inbox_dir, row) is not None
        return page("session.html", login=s, session_id=session_id, client_id=row["client_id"] or "",
                    saved=saved, audio=audio, show=show, flags=views, verdicts=VERDICTS,
                    n_all=len(flags), n_open=sum(f["id"] not in latest for f in flags),
                    date=facts["date"] or t["date_unknown"],
                    age=t["age_years"].format(age=age_text(facts["age"], lang)) if facts["age"] is not None else "—",
                    number=client_numbers(row["client_id"]).get(session_id, "—"),
                    warnings=[localise(str(w), lang) for w in data.get("warnings") or []], note_max=NOTE_MAX,
                    caveat=caveat_of(row.get("model_version") or data.get("model_version")))

    @app.api_route("/clients/{client_id}/trend", methods=["GET", "HEAD"], response_class=HTMLResponse)
    def trend(request: Request, client_id: str) -> str:
        valid_id(client_id)
        s = login_of(request)
        user = s.user
        rows = store.sessions(client_id=client_id)
        if not rows:
            store.audit("not found", actor=user, outcome="refused", client_id=client_id, detail="no such client")
            raise not_found()
        # the team: every therapist who has treated this client sees the trend; nobody else does, and to
        # anybody else the client is as unknown as a client that does not exist. Only analysed sessions count:
        # a failed delivery's sidecar was never checked against the analysis (4 December trial)
        if not any(r.get("therapist_id") == user and r.get("status") == "analysed" for r in rows):
            store.audit("access refused", actor=user, outcome="refused", client_id=client_id,
                        detail="trend of a client this therapist has not treated")
            raise not_found()
        points = client_trend(rows, store, inbox_dir=settings.inbox_dir)
        store.audit("trend viewed", actor=user, outcome="success", client_id=client_id)
        chart = trend_svg(points, language=lang) if points else ""
        flags = {f["id"]: f for p in points for f in store.flags(p["session_id"])}
        number = {p["session_id"]: p["number"] for p in points}
        history = []
        for h in store.review_history(session_ids=list(number)):
            f = flags.get(h["flag_id"])
            history.append({"session": t["number_short"].format(n=number[h["session_id"]]),
                            "flag": f"{mmss(f['start_s'])}–{mmss(f['end_s'])}" if f else "—",
                            "line": history_rows([h], lang, web.timezone)[0]})
        return page("trend.html", login=s, client_id=client_id, chart=chart, points=points, history=history,
                    caveat=caveat_of(next((r.get("model_version") for r in rows if r.get("model_version")), None)))

    @app.api_route("/sessions/{session_id}/report", methods=["GET", "HEAD"], response_class=HTMLResponse)
    def report(request: Request, session_id: str) -> str:
        valid_id(session_id)
        user = user_of(request)
        row = own_session(user, session_id)
        path = report_file(row["out_dir"] or "", lang)  # the report in this app's language, when it was written
        if not path.is_file():
            raise not_found()
        store.audit("report viewed", actor=user, outcome="success", client_id=row["client_id"], session_id=session_id)
        return path.read_text(encoding="utf-8")

    @app.api_route("/sessions/{session_id}/flags/{flag_id}/clip.wav", methods=["GET", "HEAD"])
    def clip(request: Request, session_id: str, flag_id: int):
        valid_id(session_id)
        user = user_of(request)
        row = own_session(user, session_id)
        flag = next((f for f in store.flags(session_id) if f["id"] == flag_id), None)
        audio = find_recording(settings.inbox_dir, row)
        if flag is None or audio is None:
            raise not_found()  # unknown flag, or the recording is no longer retained
        excerpt = cut_clip(audio, flag["start_s"], flag["end_s"], settings=settings.audio, pad_s=CONTEXT_S)
        store.audit("clip played", actor=user, outcome="success", client_id=row["client_id"], session_id=session_id,
                    detail=f"flag {flag_id}, {excerpt.start_s:.1f}-{excerpt.end_s:.1f} s")
        return Response(excerpt.wav, media_type="audio/wav", headers={"Cache-Control": "no-store"})

    @app.post("/sessions/{session_id}/flags/{flag_id}/review")
    def review(request: Request, session_id: str, flag_id: int, verdict: str = Form(...), note: str = Form(""),
               csrf: str = Form(""), show: str = Form("all")):
        valid_id(session_id)
        s = login_of(request)
        check_csrf(request, s, csrf)
        user = s.user
        row = own_session(user, session_id)
        flag = next((f for f in store.flags(session_id) if f["id"] == flag_id), None)
        if flag is None:
            raise not_found()
        if verdict not in VERDICTS:
            raise HTTPException(status_code=422, detail=f"verdict must be one of {', '.join(VERDICTS)}")
        kept = clean_note(note)
        if len(kept) > NOTE_MAX:  # the form's maxlength stops a browser; a forged request or an old page gets here
            store.audit("flag reviewed", actor=user, outcome="refused", client_id=row["client_id"],
                        session_id=session_id, detail=f"flag {flag_id}: note of {len(kept)} characters, "
                                                      f"longer than {NOTE_MAX}; nothing saved")
            return error_page(422, t["note_too_long"].format(limit=NOTE_MAX))
        store.save_review(session_id=session_id, flag=flag, verdict=verdict, note=kept,
                          therapist_id=user)
        store.audit("flag reviewed", actor=user, outcome="success", client_id=row["client_id"],
                    session_id=session_id, detail=f"flag {flag_id}: {verdict}")
        back = f"/sessions/{session_id}?show=open&saved=1" if show == "open" else f"/sessions/{session_id}?saved=1"
        return RedirectResponse(f"{back}#flag-{flag_id}", status_code=303)

    return app
