"""Who may do what in the review web app: passwords, login sessions, lockouts, CSRF tokens, request checks, headers.

Everything here is in memory (a restart logs everyone out and lifts every lockout) except the logins
themselves, which are rows of :class:`flows.store.Store` and are re-read on every request, so that a change
made by another process (a password reset, ``disable-therapist``, ``remove-therapist``) takes effect at once.
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
import threading
from typing import Callable
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request

from flows.store import Store
from pipeline.ids import is_valid_id

COOKIE = "alliance_session"
LOGIN_COOKIE = "alliance_login"  # binds the login form's CSRF token to the browser that opened the form
LOGIN_FORM_TTL_S = 30 * 60.0  # a login form older than this is refused (reload it)
MAX_LOGIN_FORMS = 10_000  # open login forms kept in memory at most (the oldest go first)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# No script at all. The pages and report.html need only their own <style> blocks and style="" attributes
# (the report's matplotlib SVG is inline and refers only to its own #ids), clips from here ('self', clip.wav)
# and clips embedded in the report (data:audio/wav, ALLIANCE_REPORT_EMBED_CLIPS).
CSP = ("default-src 'none'; style-src 'unsafe-inline'; media-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",  # every page here holds client data, or leads to it
    "Cross-Origin-Resource-Policy": "same-origin",  # a page on another port may not load the report or a clip
    "Cross-Origin-Opener-Policy": "same-origin",
}

PASSWORD_RULE = ("A password needs at least 10 characters, at least 5 different characters, not only spaces, "
                 "and must not contain the login name.")


def password_problem(password: str, login: str) -> str | None:
    """What makes ``password`` too weak for the login ``login`` (see ``PASSWORD_RULE``), or None.

    Parameters
    ----------
    password : str
        The password as typed.
    login : str
        The login name, which the password must not contain (case ignored).

    Returns
    -------
    str or None
        For example ``"it has 6 characters"``.
    """
    if not password:
        return "it is empty"
    if not password.strip():
        return "it is only spaces"
    if len(password) < 10:
        return f"it has {len(password)} characters"
    if len(set(password)) < 5:
        n = len(set(password))
        return f"it has only {n} different character{'s' * (n != 1)}"
    if login and login.casefold() in password.casefold():
        return "it contains the login name"
    return None


def hash_password(password: str, *, login: str) -> str:
    """argon2id hash of a password (argon2-cffi's defaults, RFC 9106), after checking the password policy.

    Parameters
    ----------
    password : str
        The new password.
    login : str
        The login it is for (the password must not contain it).

    Returns
    -------
    str
        The argon2id hash, for :meth:`flows.store.Store.add_therapist`.

    Raises
    ------
    ValueError
        The password breaks the policy; the one-line message says how and what is required.
    """
    from argon2 import PasswordHasher

    problem = password_problem(password, login)
    if problem:
        raise ValueError(f"password refused: {problem}. {PASSWORD_RULE}")
    return PasswordHasher().hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash`` (False for an unknown user, without revealing which).

    Parameters
    ----------
    stored_hash : str or None
        The login's argon2id hash; None for an unknown login (a hash is still computed, so that the answer
        takes as long).
    password : str
        The password as typed.

    Returns
    -------
    bool
        True only for the right password of an existing login (a damaged hash never matches).
    """
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    if stored_hash is None:
        PasswordHasher().hash("timing-equaliser")  # same cost whether or not the user exists
        return False
    try:
        return PasswordHasher().verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def printable(text: str, limit: int = 120) -> str:
    """``text`` for an audit row: control and non-ASCII characters escaped (no fake rows), at most ``limit``.

    Parameters
    ----------
    text : str
        Anything a client sent (a path, a login name, a header).
    limit : int > 3, optional
        The most characters shown; a longer text is cut and ends in ``...``.

    Returns
    -------
    str
        Printable ASCII only.
    """
    shown = ascii(text)[1:-1]
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


def request_problem(request: Request, *, hosts: set[str] | None) -> tuple[int, str] | None:
    """Why a request is refused before it reaches a page: (status, reason), or None.

    Parameters
    ----------
    request : Request
        Any request to the app.
    hosts : set of str or None
        ``Host`` headers the server answers to (DNS rebinding); None: any.

    Returns
    -------
    tuple of (int, str) or None
        400 for an unknown host; 403 for a state-changing request whose ``Origin`` (else ``Referer``) is not
        this server's own or unknown, and for anything but a top-level GET navigation from another site
        (fetch metadata). The reason is one line for the audit log.
    """
    host = request.headers.get("host", "")
    if hosts is not None and host.lower() not in hosts:
        return 400, f"unknown host {printable(host, 80)} (this server answers to {', '.join(sorted(hosts))})"
    own = f"{request.url.scheme}://{host}".lower()
    if request.method not in SAFE_METHODS:
        origin = request.headers.get("origin")
        if origin is None:
            referer = request.headers.get("referer")
            if referer is None:
                return 403, "no Origin or Referer header: the request's origin is unknown"
            parts = urlsplit(referer)
            origin = f"{parts.scheme}://{parts.netloc}"
        if origin.lower() != own:
            return 403, f"foreign origin {printable(origin, 80)} (this server is {printable(own, 80)})"
    site = request.headers.get("sec-fetch-site")
    if site in ("same-site", "cross-site"):
        # another site's page may link here (a top-level GET), but not embed, frame or fetch anything
        mode, dest = request.headers.get("sec-fetch-mode"), request.headers.get("sec-fetch-dest")
        if not (request.method == "GET" and mode == "navigate" and dest == "document"):
            return 403, f"embedded or fetched by another site ({site}, {printable(dest or '?', 20)})"
    return None


class SecurityHeaders:
    """ASGI middleware: :data:`SECURITY_HEADERS` on every HTTP response (pages, redirects, errors, files)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclasses.dataclass
class LoginSession:
    """One login of one browser (in memory only)."""

    user: str
    generation: int  # the login's credential generation at login; a reset or disabling raises it
    csrf: str  # this session's CSRF token, in every form it is shown
    started: float  # clock time of the login
    last_seen: float  # clock time of its latest request

    def csrf_matches(self, token: str) -> bool:
        """Whether ``token`` (from a submitted form) is this session's CSRF token (compared in constant time)."""
        return hmac.compare_digest(self.csrf.encode(), token.encode())


class LoginThrottle:
    """Failed logins per key (a login name, or a client address) in a sliding window; too many lock the key.

    Parameters
    ----------
    limit : int
        Failures within ``window_s`` that lock the key.
    window_s, lockout_s : float
        The counting window and how long a lock lasts, seconds.
    clock : callable
        Monotonic seconds (tests move it by hand).
    """

    def __init__(self, limit: int, window_s: float, lockout_s: float, clock: Callable[[], float]) -> None:
        self.limit, self.window_s, self.lockout_s, self.clock = limit, window_s, lockout_s, clock
        self._failures: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def locked(self, key: str) -> bool:
        """Whether ``key`` is locked now."""
        with self._lock:
            until = self._locked_until.get(key)
            if until is not None and self.clock() >= until:
                del self._locked_until[key]
                until = None
            return until is not None

    def failed(self, key: str) -> bool:
        """Count a failure of ``key``; return True when this failure locks it."""
        now = self.clock()
        with self._lock:
            recent = [t for t in self._failures.get(key, []) if now - t < self.window_s] + [now]
            if len(recent) >= self.limit:
                self._locked_until[key] = now + self.lockout_s
                self._failures.pop(key, None)
                return True
            self._failures[key] = recent
            if len(self._failures) > 10_000:  # bounded memory under a spray of names: forget stale keys
                self._failures = {k: v for k, v in self._failures.items() if now - v[-1] < self.window_s}
            return False

    def clear(self, key: str) -> None:
        """Forget the failures of ``key`` (after a successful login of that name)."""
        with self._lock:
            self._failures.pop(key, None)


class LoginRefused(Exception):
    """A login attempt was refused (already audited); ``locked`` tells a lockout from a wrong password."""

    def __init__(self, *, locked: bool) -> None:
        super().__init__("login refused")
        self.locked = locked


class Logins:
    """The app's logins in memory: open login forms and their CSRF tokens, login sessions, lockouts.

    Every login, logout and ended session is written to the audit log.

    Parameters
    ----------
    store : Store
        The logins (re-read on every request) and the audit log.
    web : WebSettings
        Lockout limits, idle timeout and lifetime of login sessions.
    clock : callable
        Monotonic seconds (tests pass a clock they move).
    """

    def __init__(self, store: Store, web, clock: Callable[[], float]) -> None:
        self.store, self.web, self.clock = store, web, clock
        self._sessions: dict[str, LoginSession] = {}  # session cookie → login
        self._forms: dict[str, tuple[str, float]] = {}  # login-form cookie → (its CSRF token, expiry)
        self._lock = threading.Lock()
        self.by_name = LoginThrottle(web.max_failures_per_name, web.failure_window_min * 60, web.lockout_min * 60,
                                     clock)
        self.by_address = LoginThrottle(web.max_failures_per_address, web.failure_window_min * 60,
                                        web.lockout_min * 60, clock)

    def open_form(self) -> tuple[str, str]:
        """A new login form: (its cookie value, its CSRF token), valid for ``LOGIN_FORM_TTL_S`` and used once."""
        form_id, token, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), self.clock()
        with self._lock:
            for key in [k for k, (_, expiry) in self._forms.items() if expiry <= now]:
                del self._forms[key]
            while len(self._forms) >= MAX_LOGIN_FORMS:
                del self._forms[next(iter(self._forms))]
            self._forms[form_id] = (token, now + LOGIN_FORM_TTL_S)
        return form_id, token

    def form_token_matches(self, form_id: str, token: str) -> bool:
        """Whether ``token`` is the CSRF token of the open, unexpired login form of the cookie ``form_id``."""
        with self._lock:
            expected, expiry = self._forms.get(form_id, ("", 0.0))
        return bool(expected) and expiry > self.clock() and hmac.compare_digest(expected.encode(), token.encode())

    def log_in(self, name: str, password: str, *, address: str, form_id: str) -> str:
        """Check a login attempt against the lockouts and the stored hash; on success start a login session.

        A failure counts against the name and the client address; a success clears only the name's count
        (one's own good login must not reset a guesser's count) and uses up the login form.

        Parameters
        ----------
        name, password : str
            As typed in the login form.
        address : str
            The client's address.
        form_id : str
            The login form's cookie value.

        Returns
        -------
        str
            The new login session's cookie value.

        Raises
        ------
        LoginRefused
            The name or the address is locked, the password is wrong, the name unknown or the login disabled.
        """
        web = self.web
        actor = name if is_valid_id(name) else f"invalid login name {printable(name, 80)}"
        if self.by_name.locked(name) or self.by_address.locked(address):
            which = (f"{web.max_failures_per_name} failed logins for this name" if self.by_name.locked(name) else
                     f"{web.max_failures_per_address} failed logins from this address")
            self.store.audit("login", actor=actor, outcome="refused",
                             detail=f"from {address}: locked: {which} within {web.failure_window_min:g} min")
            raise LoginRefused(locked=True)
        row = self.store.therapist(name)
        right = verify_password(row["password_hash"] if row else None, password)
        if not right or row.get("disabled_at"):
            reason = "the login is disabled" if right else "wrong password or unknown name"
            if self.by_name.failed(name):
                reason += f"; this name is now locked for {web.lockout_min:g} min"
            if self.by_address.failed(address):
                reason += f"; this address is now locked for {web.lockout_min:g} min"
            self.store.audit("login", actor=actor, outcome="refused", detail=f"from {address}: {reason}")
            raise LoginRefused(locked=False)
        self.by_name.clear(name)
        session_token, now = secrets.token_urlsafe(32), self.clock()
        with self._lock:
            self._forms.pop(form_id, None)  # a login form is used once
            for key in [k for k, v in self._sessions.items() if now - v.last_seen >= web.idle_timeout_min * 60]:
                del self._sessions[key]  # forget abandoned sessions
            self._sessions[session_token] = LoginSession(name, row.get("credential_generation") or 0,
                                                         secrets.token_urlsafe(32), now, now)
        self.store.audit("login", actor=name, outcome="success", detail=f"from {address}")
        return session_token

    def peek(self, cookie: str) -> LoginSession | None:
        """The login session of a session cookie, without checking whether it is still valid."""
        with self._lock:
            return self._sessions.get(cookie)

    def end_reason(self, s: LoginSession) -> str | None:
        """Why a login session is over (lifetime, idle timeout, login removed, disabled or reset), or None."""
        web, now = self.web, self.clock()
        if now - s.started >= web.session_lifetime_h * 3600:
            return f"the session lifetime of {web.session_lifetime_h:g} h was reached"
        if now - s.last_seen >= web.idle_timeout_min * 60:
            return f"idle for {web.idle_timeout_min:g} min"
        row = self.store.therapist(s.user)  # read on every request: another process may have changed the login
        if row is None:
            return "the login was removed"
        if row.get("disabled_at"):
            return "the login was disabled"
        if (row.get("credential_generation") or 0) != s.generation:
            return "the password was reset"
        return None

    def current(self, cookie: str) -> LoginSession | None:
        """The valid login session of a session cookie, marked as seen now; None when there is none.

        A session that is over (:meth:`end_reason`) is forgotten and its end audited.
        """
        s = self.peek(cookie)
        if s is None:
            return None
        reason = self.end_reason(s)
        if reason is not None:
            with self._lock:
                self._sessions.pop(cookie, None)
            self.store.audit("session ended", actor=s.user, outcome="success", detail=reason)
            return None
        s.last_seen = self.clock()
        return s

    def log_out(self, cookie: str, s: LoginSession) -> None:
        """End the login session ``s`` of the cookie ``cookie`` (audited)."""
        with self._lock:
            self._sessions.pop(cookie, None)
        self.store.audit("logout", actor=s.user, outcome="success")
