"""Storage: sessions, runs, flags, model versions and the append-only audit log.

SQLite in the data directory by default (``<data dir>/alliance.db``);
``ALLIANCE_DATABASE_URL`` gives any SQLAlchemy URL instead (PostgreSQL for
clinics with several machines). The audit log follows NEN 7513: one row per
event with what happened, when, to which client pseudonym, by which user or
process, and the outcome. Rows are only ever inserted; on SQLite, triggers
refuse UPDATE and DELETE on the audit table.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Iterable

import sqlalchemy as sa

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
THERAPISTS = sa.Table(
    "therapists", META,
    sa.Column("therapist_id", sa.String(128), primary_key=True),
    sa.Column("password_hash", sa.String(256), nullable=False),  # argon2id, never the password
    sa.Column("created_at", sa.String(32)),
)
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
        if self.engine.dialect.name == "sqlite":
            with self.engine.begin() as c:
                for op in ("UPDATE", "DELETE"):
                    c.exec_driver_sql(
                        f"CREATE TRIGGER IF NOT EXISTS audit_no_{op.lower()} BEFORE {op} ON audit "
                        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END")

    @classmethod
    def for_settings(cls, settings) -> "Store":
        url = settings.database_url or f"sqlite:///{(Path(settings.data_dir) / 'alliance.db').resolve()}"
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        return cls(url)

    def audit(self, event: str, *, actor: str, outcome: str, client_id: str | None = None,
              session_id: str | None = None, detail: str | None = None) -> None:
        """Append one audit row. ``detail`` must never hold transcript text."""
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
        with self.engine.begin() as c:
            c.execute(FLAGS.delete().where(FLAGS.c.session_id == session_id))
            rows = [dict(session_id=session_id, start_s=f["start"], end_s=f["end"], marker_type=f["marker_type"],
                         probability=f["probability"], model_version=model_version) for f in flags]
            if rows:
                c.execute(FLAGS.insert(), rows)
            if not c.execute(sa.select(MODELS).where(MODELS.c.version == model_version)).first():
                c.execute(MODELS.insert().values(version=model_version, first_used_at=now()))

    def save_run(self, run_id: str, started_at: str, summary: dict) -> None:
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

    def add_therapist(self, therapist_id: str, password_hash: str) -> None:
        """Create or replace a therapist's login (``password_hash`` from argon2, never the password)."""
        with self.engine.begin() as c:
            c.execute(THERAPISTS.delete().where(THERAPISTS.c.therapist_id == therapist_id))
            c.execute(THERAPISTS.insert().values(therapist_id=therapist_id, password_hash=password_hash,
                                                 created_at=now()))

    def password_hash(self, therapist_id: str) -> str | None:
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
        with self.engine.connect() as c:
            row = c.execute(sa.select(SESSIONS).where(SESSIONS.c.session_id == session_id)).first()
        return dict(row._mapping) if row else None


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
