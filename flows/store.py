"""Storage: sessions, runs, flags, model versions and the append-only audit log.

SQLite in the data directory by default (``<data dir>/alliance.db``);
``ALLIANCE_DATABASE_URL`` gives any SQLAlchemy URL instead (PostgreSQL for
clinics with several machines). The audit log follows NEN 7513: one row per
event with what happened, when, to which client pseudonym, by which user or
process, and the outcome. Rows are only ever inserted; on SQLite, triggers
refuse UPDATE and DELETE on the audit table.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

import sqlalchemy as sa

from pipeline.ids import one_line

META = sa.MetaData()

SESSIONS = sa.Table(
    "sessions", META,
    sa.Column("session_id", sa.String(128), primary_key=True),
    sa.Column("client_id", sa.String(128), index=True),
    sa.Column("therapist_id", sa.String(128)),
    sa.Column("recording_name", sa.String(512)),
    sa.Column("recording_sha256", sa.String(64), index=True),
    sa.Column("status", sa.String(32)),  # analysed | failed
    sa.Column("reason", sa.Text),
    sa.Column("out_dir", sa.String(1024)),
    sa.Column("model_version", sa.String(128)),
    sa.Column("research_use", sa.Boolean),
    sa.Column("run_id", sa.String(64)),
    sa.Column("updated_at", sa.String(32)),
)
RUNS = sa.Table(
    "runs", META,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("started_at", sa.String(32)),
    sa.Column("finished_at", sa.String(32)),
    sa.Column("summary", sa.Text),
)
FLAGS = sa.Table(
    "flags", META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("session_id", sa.String(128), index=True),
    sa.Column("start_s", sa.Float), sa.Column("end_s", sa.Float),
    sa.Column("marker_type", sa.String(32)), sa.Column("probability", sa.Float),
    sa.Column("model_version", sa.String(128)),
)
MODELS = sa.Table(
    "model_versions", META,
    sa.Column("version", sa.String(128), primary_key=True),
    sa.Column("first_used_at", sa.String(32)),
)
AUDIT = sa.Table(
    "audit", META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("client_id", sa.String(128)),
    sa.Column("session_id", sa.String(128)),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text),
)
AUDIT_FIELDS = ("id", "at", "event", "client_id", "session_id", "actor", "outcome", "detail")
AUDIT_FORMATS = ("tsv", "csv", "json")
# characters that could end or fake a printed audit row, or rewrite it on a terminal (ANSI escapes): C0 and C1
# controls, DEL, the Unicode line and paragraph separators, and the backslash that starts an escape


def escape_field(value: object) -> str:
    """One audit field as text that cannot break its line: ``\\``, tab, newline and other controls escaped.

    The escapes are Python's (``\\t``, ``\\n``, ``\\r``, ``\\\\``, ``\\x1b``, ``\\u2028``), so a reader gets the
    exact value back with ``codecs.decode(field, "unicode_escape")`` on ASCII text.

    Parameters
    ----------
    value : object
        A stored value; None prints as the empty field.

    Returns
    -------
    str
        The value on one line.
    """
    return "" if value is None else one_line(str(value))


def format_audit(rows: Iterable[dict[str, Any]], fmt: str = "tsv") -> Iterator[str]:
    """The audit rows as printed lines, one per row (tsv and csv after a header line), for ``alliance audit``.

    Parameters
    ----------
    rows : iterable of dict
        From :meth:`Store.audit_rows`.
    fmt : {"tsv", "csv", "json"}
        ``tsv``: tab-separated, :data:`AUDIT_FIELDS` as header, fields escaped by :func:`escape_field`;
        ``csv``: the same through the csv module (RFC 4180 quoting of commas and quotes); ``json``: a list of
        objects with the exact stored values, one object per line.

    Returns
    -------
    iterator of str
        Lines without their line ending; no line holds a line break.

    Raises
    ------
    ValueError
        ``fmt`` is not one of :data:`AUDIT_FORMATS`.
    """
    if fmt not in AUDIT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(AUDIT_FORMATS)}. Got {fmt!r} instead.")
    if fmt == "json":
        rows = list(rows)
        yield "["
        for i, r in enumerate(rows):  # ensure_ascii: no raw control or separator character reaches the screen
            yield json.dumps({k: r[k] for k in AUDIT_FIELDS}, ensure_ascii=True) + ("," if i < len(rows) - 1 else "")
        yield "]"
        return
    if fmt == "tsv":
        yield "\t".join(AUDIT_FIELDS)
        for r in rows:
            yield "\t".join(escape_field(r[k]) for k in AUDIT_FIELDS)
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="")  # escaped fields hold no line break, so one row is one line

    def line(values) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    yield line(AUDIT_FIELDS)
    for r in rows:
        yield line([escape_field(r[k]) for k in AUDIT_FIELDS])
THERAPISTS = sa.Table(
    "therapists", META,
    sa.Column("therapist_id", sa.String(128), primary_key=True),
    sa.Column("password_hash", sa.String(256), nullable=False),  # argon2id, never the password
    sa.Column("created_at", sa.String(32)),
    # raised by every password reset and by disabling: the review app ends login sessions of an older generation
    sa.Column("credential_generation", sa.Integer, nullable=False, server_default="0"),
    sa.Column("disabled_at", sa.String(32)),  # set: the login can no longer log in (its data is kept)
)
# columns added to THERAPISTS after data directories existed: (name, SQL type) for ALTER TABLE ... ADD COLUMN
THERAPIST_COLUMNS_ADDED = (("credential_generation", "INTEGER NOT NULL DEFAULT 0"), ("disabled_at", "VARCHAR(32)"))
REVIEWS = sa.Table(
    "reviews", META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("session_id", sa.String(128), index=True, nullable=False),
    sa.Column("flag_id", sa.Integer, nullable=False),
    sa.Column("start_s", sa.Float), sa.Column("end_s", sa.Float),
    sa.Column("marker_type", sa.String(32)),
    sa.Column("verdict", sa.String(32), nullable=False),  # rupture | no_rupture | repaired
    sa.Column("note", sa.Text),  # the therapist's own words; never logged
    sa.Column("therapist_id", sa.String(128), nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
)
VERDICTS = ("rupture", "no_rupture", "repaired")
EXPORTS = sa.Table(
    # every copy of a session that left the data directory as training data (alliance export-reviews),
    # so that purging the client can reach it, or say which copies remain
    "exports", META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("session_id", sa.String(128), index=True, nullable=False),
    sa.Column("client_id", sa.String(128), index=True),
    sa.Column("path", sa.String(1024), nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("removed_at", sa.String(32)),
)


def now() -> str:
    """The current time in UTC, as the database stores times.

    Returns
    -------
    str
        ISO 8601 to the second, with the offset, for example
        ``"2026-03-02T01:15:00+00:00"``.
    """
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Store:
    """The project's database.

    Parameters
    ----------
    url : str
        SQLAlchemy URL, for example ``sqlite:////data/alliance.db`` or
        ``postgresql+psycopg://user@host/alliance``.
    """

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, future=True)
        META.create_all(self.engine)
        if self.engine.dialect.name == "sqlite" and self.engine.url.database not in (None, "", ":memory:"):
            # a database file made before (or copied in) with looser permissions is tightened too (trial, stop 44);
            # new ones are private through the command's umask
            for name in (self.engine.url.database, f"{self.engine.url.database}-wal",
                         f"{self.engine.url.database}-journal"):
                try:
                    os.chmod(name, 0o600)
                except OSError:  # not there, or another user's file: nothing to tighten here
                    pass
        self._add_therapist_columns()
        if self.engine.dialect.name == "sqlite":
            with self.engine.begin() as c:
                for op in ("UPDATE", "DELETE"):
                    c.exec_driver_sql(
                        f"CREATE TRIGGER IF NOT EXISTS audit_no_{op.lower()} BEFORE {op} ON audit "
                        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END")

    @classmethod
    def for_settings(cls, settings) -> "Store":
        """The database the settings name; the data folder is created (private, 0700) when missing.

        Parameters
        ----------
        settings : Settings
            ``data_dir`` and ``database_url`` (empty: SQLite at ``<data dir>/alliance.db``).

        Returns
        -------
        Store

        Raises
        ------
        ConfigError
            ``ALLIANCE_DATA_DIR`` cannot be created or written, or the database cannot be opened; one line that
            names the setting (``ALLIANCE_DATABASE_URL`` when it is set), never the URL's password.
        """
        from pipeline.errors import ConfigError
        from pipeline.settings import ensure_data_dir

        ensure_data_dir(settings)
        url = settings.database_url or f"sqlite:///{(Path(settings.data_dir) / 'alliance.db').resolve()}"
        setting = "ALLIANCE_DATABASE_URL" if settings.database_url else "ALLIANCE_DATA_DIR"
        try:
            return cls(url)
        except (sa.exc.SQLAlchemyError, ImportError, OSError, ValueError) as exc:
            raise ConfigError(f"{setting}: cannot open the database {shown_url(url)} ({_why_unusable(url, exc)})"
                              ) from None

    def audit(self, event: str, *, actor: str, outcome: str, client_id: str | None = None,
              session_id: str | None = None, detail: str | None = None) -> None:
        """Append one audit row. ``detail`` must never hold transcript text."""
        if detail is not None:  # a file name that is not UTF-8 (``\\udcff``) cannot be stored as it is
            detail = detail.encode("utf-8", "backslashreplace").decode("utf-8")
        with self.engine.begin() as c:
            c.execute(AUDIT.insert().values(at=now(), event=event, client_id=client_id, session_id=session_id,
                                            actor=actor, outcome=outcome, detail=detail))

    def audit_rows(self, *, client_id: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(AUDIT).order_by(AUDIT.c.id)
        if client_id is not None:
            q = q.where(AUDIT.c.client_id == client_id)
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def seen(self, sha256: str) -> dict[str, Any] | None:
        """The analysed session with this recording content, if any."""
        q = sa.select(SESSIONS).where(SESSIONS.c.recording_sha256 == sha256, SESSIONS.c.status == "analysed")
        with self.engine.connect() as c:
            row = c.execute(q).first()
        return dict(row._mapping) if row else None

    def save_session(self, **values: Any) -> None:
        values = {**values, "updated_at": now()}
        with self.engine.begin() as c:
            c.execute(SESSIONS.delete().where(SESSIONS.c.session_id == values["session_id"]))
            c.execute(SESSIONS.insert().values(**values))

    def save_flags(self, session_id: str, flags: Iterable[dict[str, Any]], model_version: str) -> None:
        """Replace a session's flags, in one transaction, and record the model version on its first use.

        Parameters
        ----------
        session_id : str
            The session whose earlier flags are deleted.
        flags : iterable of dict
            Each with ``start`` and ``end`` (s), ``marker_type`` and
            ``probability``; may be empty (the session then has no flags).
        model_version : str
            The classifier that made them; added to ``model_versions`` with
            the current time when it is not there yet.

        Returns
        -------
        None

        Raises
        ------
        KeyError
            A flag lacks one of the keys above; nothing is changed.
        """
        with self.engine.begin() as c:
            c.execute(FLAGS.delete().where(FLAGS.c.session_id == session_id))
            rows = [dict(session_id=session_id, start_s=f["start"], end_s=f["end"], marker_type=f["marker_type"],
                         probability=f["probability"], model_version=model_version) for f in flags]
            if rows:
                c.execute(FLAGS.insert(), rows)
            if not c.execute(sa.select(MODELS).where(MODELS.c.version == model_version)).first():
                c.execute(MODELS.insert().values(version=model_version, first_used_at=now()))

    def save_run(self, run_id: str, started_at: str, summary: dict) -> None:
        """Record a finished batch run, with the current time as its end.

        Parameters
        ----------
        run_id : str
            The run's id; must not be in the table yet.
        started_at : str
            When it started, as :func:`now` writes times.
        summary : dict
            What the run did; stored as JSON text.

        Returns
        -------
        None

        Raises
        ------
        TypeError
            ``summary`` holds a value JSON cannot hold.
        sqlalchemy.exc.IntegrityError
            A run with this id is already recorded.
        """
        with self.engine.begin() as c:
            c.execute(RUNS.insert().values(run_id=run_id, started_at=started_at, finished_at=now(),
                                           summary=json.dumps(summary)))

    def sessions(self, *, client_id: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(SESSIONS)
        if client_id is not None:
            q = q.where(SESSIONS.c.client_id == client_id)
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def delete_client(self, client_id: str) -> list[dict[str, Any]]:
        """Delete a client's sessions, flags and reviews (never audit rows); return the deleted session rows."""
        rows = self.sessions(client_id=client_id)
        ids = [r["session_id"] for r in rows]
        with self.engine.begin() as c:
            if ids:
                c.execute(FLAGS.delete().where(FLAGS.c.session_id.in_(ids)))
                c.execute(REVIEWS.delete().where(REVIEWS.c.session_id.in_(ids)))
            c.execute(SESSIONS.delete().where(SESSIONS.c.client_id == client_id))
        return rows

    def flags(self, session_id: str) -> list[dict[str, Any]]:
        """The session's flags in time order, each with its ``id``."""
        q = sa.select(FLAGS).where(FLAGS.c.session_id == session_id).order_by(FLAGS.c.start_s, FLAGS.c.id)
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def _add_therapist_columns(self) -> None:
        """Give a THERAPISTS table from an older data directory the columns added since (in place, data kept)."""
        have = {c["name"] for c in sa.inspect(self.engine).get_columns("therapists")}
        with self.engine.begin() as c:
            for name, sql_type in THERAPIST_COLUMNS_ADDED:
                if name not in have:
                    c.exec_driver_sql(f"ALTER TABLE therapists ADD COLUMN {name} {sql_type}")

    def add_therapist(self, therapist_id: str, password_hash: str) -> bool:
        """Create a therapist's login, or reset its password (``password_hash`` from argon2, never the password).

        A reset raises the login's credential generation, so the review app ends its open sessions, and
        enables a disabled login again.

        Parameters
        ----------
        therapist_id : str
            The login name (the sessions' ``therapist_id``).
        password_hash : str
            From :func:`flows.web.hash_password`.

        Returns
        -------
        bool
            True when the login existed (a reset), False when it was created.
        """
        with self.engine.begin() as c:
            done = c.execute(THERAPISTS.update().where(THERAPISTS.c.therapist_id == therapist_id).values(
                password_hash=password_hash, disabled_at=None,
                credential_generation=THERAPISTS.c.credential_generation + 1)).rowcount
            if not done:
                c.execute(THERAPISTS.insert().values(therapist_id=therapist_id, password_hash=password_hash,
                                                     created_at=now(), credential_generation=0))
        return bool(done)

    def therapist(self, therapist_id: str) -> dict[str, Any] | None:
        """A login's row (``password_hash``, ``credential_generation``, ``disabled_at``, ...), or None."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(THERAPISTS).where(THERAPISTS.c.therapist_id == therapist_id)).first()
        return dict(row._mapping) if row else None

    def disable_therapist(self, therapist_id: str) -> bool:
        """Stop a login from logging in and end its open sessions; its sessions, reviews and audit rows stay.

        Returns
        -------
        bool
            False when there is no such login.
        """
        with self.engine.begin() as c:
            return bool(c.execute(THERAPISTS.update().where(THERAPISTS.c.therapist_id == therapist_id).values(
                disabled_at=sa.func.coalesce(THERAPISTS.c.disabled_at, now()),
                credential_generation=THERAPISTS.c.credential_generation + 1)).rowcount)

    def remove_therapist(self, therapist_id: str) -> bool:
        """Delete a login (its audit rows, sessions and reviews stay).

        Returns
        -------
        bool
            False when there is no such login.
        """
        with self.engine.begin() as c:
            return bool(c.execute(THERAPISTS.delete().where(THERAPISTS.c.therapist_id == therapist_id)).rowcount)

    def password_hash(self, therapist_id: str) -> str | None:
        """The stored argon2id hash of a login's password.

        The password itself is never stored. A disabled login still has its
        hash; the caller checks ``disabled_at`` (:meth:`therapist`).

        Parameters
        ----------
        therapist_id : str
            The login name.

        Returns
        -------
        str or None
            The hash in argon2's encoded form (``$argon2id$...``); None when
            there is no such login.
        """
        with self.engine.connect() as c:
            row = c.execute(sa.select(THERAPISTS.c.password_hash)
                            .where(THERAPISTS.c.therapist_id == therapist_id)).first()
        return row[0] if row else None

    def save_review(self, *, session_id: str, flag: dict[str, Any], verdict: str, note: str | None,
                    therapist_id: str) -> None:
        """Record a therapist's verdict on one flag (the latest verdict per flag counts).

        Raises
        ------
        ValueError
            ``verdict`` is not one of ``VERDICTS``.
        """
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}. Got {verdict!r} instead.")
        with self.engine.begin() as c:
            c.execute(REVIEWS.insert().values(session_id=session_id, flag_id=flag["id"], start_s=flag["start_s"],
                                              end_s=flag["end_s"], marker_type=flag["marker_type"], verdict=verdict,
                                              note=note or None, therapist_id=therapist_id, at=now()))

    def reviews(self, *, session_id: str | None = None) -> list[dict[str, Any]]:
        """Latest review per flag, in time order."""
        q = sa.select(REVIEWS).order_by(REVIEWS.c.id)
        if session_id is not None:
            q = q.where(REVIEWS.c.session_id == session_id)
        with self.engine.connect() as c:
            rows = [dict(r._mapping) for r in c.execute(q)]
        latest = {(r["session_id"], r["flag_id"]): r for r in rows}
        return sorted(latest.values(), key=lambda r: (r["session_id"], r["start_s"]))

    def review_history(self, *, session_id: str | None = None,
                       session_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Every verdict ever recorded (of one session, or of several), oldest first: who chose what, when.

        Parameters
        ----------
        session_id : str, optional
            Only this session's verdicts.
        session_ids : iterable of str, optional
            Only these sessions' verdicts (a client's sessions).

        Returns
        -------
        list of dict
            The review rows (``flag_id``, ``verdict``, ``therapist_id``, ``at``, ``note``, ...), in the order they
            were saved; :meth:`reviews` keeps only the latest per flag.
        """
        q = sa.select(REVIEWS).order_by(REVIEWS.c.id)
        if session_id is not None:
            q = q.where(REVIEWS.c.session_id == session_id)
        if session_ids is not None:
            q = q.where(REVIEWS.c.session_id.in_(list(session_ids)))
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def record_export(self, *, session_id: str, client_id: str | None, path: str | Path) -> None:
        """Remember a copy of a session written outside the data directory (absolute path)."""
        with self.engine.begin() as c:
            c.execute(EXPORTS.insert().values(session_id=session_id, client_id=client_id,
                                              path=str(Path(path).resolve()), at=now()))

    def exports(self, *, client_id: str | None = None, include_removed: bool = False) -> list[dict[str, Any]]:
        """Known exported copies (of one client), oldest first; removed ones only with ``include_removed``."""
        q = sa.select(EXPORTS).order_by(EXPORTS.c.id)
        if client_id is not None:
            q = q.where(EXPORTS.c.client_id == client_id)
        if not include_removed:
            q = q.where(EXPORTS.c.removed_at.is_(None))
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def mark_export_removed(self, export_id: int) -> None:
        """Record that an exported copy was deleted."""
        with self.engine.begin() as c:
            c.execute(EXPORTS.update().where(EXPORTS.c.id == export_id).values(removed_at=now()))

    def session(self, session_id: str) -> dict[str, Any] | None:
        """One session's row.

        Parameters
        ----------
        session_id : str
            The session's id.

        Returns
        -------
        dict or None
            Column name to value; None when the store has no such session.
        """
        with self.engine.connect() as c:
            row = c.execute(sa.select(SESSIONS).where(SESSIONS.c.session_id == session_id)).first()
        return dict(row._mapping) if row else None


def shown_url(url: str) -> str:
    """The database URL as it may be printed: the password masked, or only its scheme when it cannot be parsed."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return url.split("://", 1)[0] + "://…"


def _why_unusable(url: str, exc: BaseException) -> str:
    """One line saying why a database URL could not be opened."""
    if isinstance(exc, sa.exc.NoSuchModuleError):
        return (f"SQLAlchemy knows no database kind {url.split('://', 1)[0]!r}; use sqlite:////PATH/alliance.db or "
                "postgresql+psycopg://user@host/alliance")
    if isinstance(exc, sa.exc.ArgumentError):
        return "not a database URL"
    if isinstance(exc, ImportError):
        return f"its database driver is not installed ({exc}); see the README for PostgreSQL"
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    reason = reason[0] if reason else exc.__class__.__name__
    try:
        u = sa.engine.make_url(url)
        if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
            folder = Path(u.database).parent
            if not folder.is_dir():
                reason += f"; the folder {folder} does not exist"
    except (sa.exc.ArgumentError, ValueError):
        pass
    return reason


def delete_prefect_runs(session_ids: set[str]) -> int:
    """Delete Prefect's own records (parameters, logs) of the analyze_session runs of these sessions.

    Returns
    -------
    int
        Flow runs deleted.
    """
    import asyncio

    from prefect.client.orchestration import get_client

    async def run() -> int:
        n = 0
        async with get_client() as client:
            offset = 0
            while True:
                page = await client.read_flow_runs(limit=200, offset=offset)
                if not page:
                    return n
                offset += len(page)
                for r in page:
                    params = r.parameters or {}
                    if params.get("session_id") in session_ids:
                        await client.delete_flow_run(r.id)
                        n += 1
                        offset -= 1

    return asyncio.run(run()) if session_ids else 0
