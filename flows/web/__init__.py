"""The review web app: therapists log in, open their clients' reports, hear flagged moments, record verdicts.

Served by ``alliance web`` on loopback only. Each therapist sees only the
sessions whose ``therapist_id`` is their own login; another therapist's session, report, clip or flag, and the
trend of a client they never treated, answer HTTP 404 with the same page as an id that does not exist (so ids
cannot be probed), and the refusal is audited (``access refused``; an unknown id too, as ``not found``).
Passwords are stored as argon2id hashes (``argon2-cffi``). Every report view,
clip play, review and failed login is written to the append-only audit log;
review notes are stored, never logged. Audio is never copied: a flag's clip
is cut on request from the recording while the clinic still retains it
(``<inbox>/done/``, ``ALLIANCE_AUDIO_RETENTION_DAYS``).

Protections (issue 14; settings in ``ALLIANCE_WEB__*``, :class:`pipeline.settings.WebSettings`):

- every state-changing request (any method but GET, HEAD, OPTIONS) must come from this server's own origin
  (``Origin``, else ``Referer``; neither: refused) and carry the CSRF token of its login session (the login
  form: a token bound to a short-lived cookie of that form); refusals answer 403 and are audited. SameSite
  cookies do not separate ports of one host, so this is the protection against a page on another port;
- fetch metadata: another site's page may link to a page here, but not embed, frame or fetch it;
- with ``hosts`` (``alliance web``), only this server's own host names are answered (DNS rebinding);
- headers on every response: a Content-Security-Policy with no script at all, no framing, no caching;
- ids from the URL must match :data:`pipeline.ids.ID_PATTERN` (404 otherwise) before any lookup;
- errors (404, 405, 422, 500, any other) answer a small page in the app's language (``templates/error.html``,
  ``web.error_*``), never a field name, a value or a stack; a 500's type and code location go to the log;
- logins: lockout of a name and of a client address after repeated failures, an idle timeout and an absolute
  lifetime of login sessions, and a password reset, disabling or removal of a login (``alliance
  add-therapist`` / ``disable-therapist`` / ``remove-therapist``, from any process) ends its open sessions on
  their next request. Login sessions and lockouts are in memory: a restart ends them.

What a therapist sees: their sessions by session date with the client's age and session number, a filter for
flags not yet reviewed, per flag its reasons, the 3RS markers it resembles, the transcript around it with roles,
its clip with 5 s either side, a small timeline, the probability band and the model caveat, three verdict buttons
and the verdict history; a client's trend, shown to every therapist who has treated that client.

Modules: :mod:`~flows.web.app` (:func:`create_app` and the routes), :mod:`~flows.web.auth` (passwords, login
sessions, lockouts, CSRF, request checks, headers), ``templates/`` (the pages, jinja2 with autoescape),
:mod:`~flows.web.review` (what the pages show of a session and its flags), :mod:`~flows.web.text` (the
catalogue's ``web.*`` texts), :mod:`~flows.web.charts` (a client's trend) and :mod:`~flows.web.clips` (clips cut
from retained recordings). The export of reviews is :mod:`flows.export`.
"""

from flows.web.app import create_app
from flows.web.auth import PASSWORD_RULE, hash_password, password_problem, verify_password
from flows.web.charts import client_trend, trend_svg
from flows.inbox import find_recording
from flows.web.text import TEXT

__all__ = ["PASSWORD_RULE", "TEXT", "client_trend", "create_app", "find_recording", "hash_password",
           "password_problem", "trend_svg", "verify_password"]
