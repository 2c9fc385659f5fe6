"""Prefect flow ``nightly_inbox``: every consented recording in the clinic's inbox gets a report.

First, unread (what counts as which: :mod:`flows.inbox`): a recording or
sidecar that is a symbolic link (never followed), a ``NAME.json`` shared by
several recordings, or two sidecars for one recording → the recordings and
sidecars concerned are moved to ``rejected/`` with a ``.reason.txt``; anything
that is no recording or sidecar is listed as ``ignored`` and left in place.
Then, for each recording ``NAME.ext`` with its sidecar ``NAME.ext.json`` (or
``NAME.json``):

0. a file name holding a name given in the sidecar (participants' ``name``,
   ``other_names``) → renamed with its sidecar to ``<session id>.ext`` first,
   so the name reaches no output, database row, audit row or Prefect record;
1. no sidecar, unreadable sidecar, an id that is not a valid id
   (:data:`pipeline.ids.ID_PATTERN`: ``session_id``, ``client_id``,
   ``therapist_id``) or invalid consent → moved with its sidecar to
   ``rejected/`` with a ``.reason.txt``, **never decoded**;
2. the same content (sha256) already analysed, or earlier in this batch, for
   the same client → not processed again, moved to ``done/``; for another
   client → refused as a possible misfiling (``failed/``);
3. a session id already used for another recording, in an earlier run or
   earlier in this batch → refused (``failed/``), the first one stays intact;
4. otherwise ``analyze_session`` runs, up to ``ALLIANCE_NIGHTLY_CONCURRENCY``
   sessions at once in threads that share the loaded models; success →
   recorded and moved to ``done/``; bad input or a failed stage → recorded
   with its reason and moved to ``failed/``; the batch goes on. A second copy
   of the same content in one batch waits for the first and follows it.

Every event about a recording is a row in the audit log; the run summary is
stored and returned. File names in it, in log lines, reason files and audit
rows are on one line (:func:`pipeline.ids.one_line`).
Recordings and sidecars in ``rejected/`` and ``failed/`` are deleted after
``ALLIANCE_REJECTED_RETENTION_DAYS`` / ``ALLIANCE_FAILED_RETENTION_DAYS``
(their ``.reason.txt`` stays), those in ``done/`` after
``ALLIANCE_AUDIO_RETENTION_DAYS`` (the sidecar stays).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from flows import make_prefect_home
from prefect import flow, get_run_logger, task

from flows.analyze import analyze_session
from flows.inbox import (FILING_FOLDERS, Delivery, claim_of, client_of, drop_claim, expire_audio, expire_refused,
                         file_away, is_regular, one_line, scan_inbox, settled, sidecar_of, write_claim)
from flows.store import Store, now
from pipeline.audio import recording_sha256
from pipeline.errors import ConsentError, MetadataError, PipelineError
from pipeline.ids import InvalidIdError, check_id, id_from_name, is_valid_id, private_umask, remove_inside
from pipeline.privacy import names_in
from pipeline.settings import Settings
from pipeline.sidecar import check_consent, read_sidecar
from pipeline.types import SessionReport

make_prefect_home()  # Prefect's temporary server needs it; made here, not when `flows` is imported

ACTOR = "nightly_inbox"
ID_FIELDS = ("session_id", "client_id", "therapist_id")
DEBUG_LOG = logging.getLogger("alliance.nightly")  # full tracebacks of failed sessions (`alliance nightly --debug`)
RENAMED_REASON = ("renamed: its file name held a participant's name given in its sidecar; name recordings by "
                  "pseudonym")


def _load_sidecar(audio: Path, sidecar: Path | None) -> dict:
    """The sidecar's JSON object (:func:`pipeline.sidecar.read_sidecar`).

    Raises
    ------
    ConsentError
        No sidecar: there is no consent record to check.
    MetadataError
        The sidecar cannot be read, is not JSON, or not a JSON object.
    """
    if sidecar is None:
        raise ConsentError(audio, "no sidecar JSON with a consent record next to the recording")
    return read_sidecar(sidecar)


def _check_ids(record: dict, sidecar: Path) -> None:
    """The sidecar's ids must match :data:`pipeline.ids.ID_PATTERN`: they become folders, rows and audit entries.

    ``client_id`` is required: without it a session belongs to no client, so it can be neither purged
    (``alliance purge --client``) nor shown to the client's team. The session and client ids must not hold a
    name given in the sidecar: they are the session folder, the report's title, the RTTM, the database and the
    audit log, which must hold no names (:func:`_names_in`).

    Raises
    ------
    MetadataError
        Names the sidecar and the field, for example ``session_id`` ``'..'``; never the name found.
    """
    if record.get("client_id") is None:
        raise MetadataError(sidecar, "client_id is missing: every recording needs its client's id (a code such as "
                                     "c-017, never a name)")
    for field in ID_FIELDS:
        if record.get(field) is not None:
            try:
                check_id(record[field], field)
            except InvalidIdError as exc:
                raise MetadataError(sidecar, str(exc)) from None
    for field in ("session_id", "client_id"):
        if isinstance(record.get(field), str) and _names_in(record[field], record):
            raise MetadataError(sidecar, f"{field} holds a participant's name given in the sidecar; use a code "
                                         "(the name is not repeated here)")


def _names_in(file_name: str, record: dict) -> dict[str, str]:
    """Parts of the names given in the sidecar that occur in ``file_name`` (:func:`pipeline.privacy.names_in`)."""
    return names_in(file_name, record.get("participants"), record.get("other_names"))


def _neutral_stem(audio: Path, record: dict, names: dict[str, str]) -> str:
    """The sidecar's session id, else the file stem with each name replaced by its role (``Tim_x`` → ``sibling_x``)."""
    sid = record.get("session_id")
    if is_valid_id(sid) and not _names_in(sid, record):
        return sid
    stem = audio.name[: -len(audio.suffix)] if audio.suffix else audio.name
    for part, label in names.items():
        stem = re.sub(re.escape(part), label, stem, flags=re.IGNORECASE)
    stem = id_from_name(stem)
    return stem if not _names_in(stem, record) else "recording"


def _rename_named(audio: Path, sidecar: Path, record: dict) -> tuple[Path, Path] | None:
    """Rename a recording whose file name holds a name from its sidecar, and its sidecar, to a neutral name.

    Done before anything else, so the name never reaches a report, the database, the audit log or Prefect's
    records (flow run parameters hold the recording's path).

    Returns
    -------
    (Path, Path) or None
        The new recording and sidecar paths; None when the file name holds no name.

    Raises
    ------
    OSError
        The files could not be renamed.
    """
    names = _names_in(audio.name, record)
    if not names:
        return None
    stem = _neutral_stem(audio, record, names)
    for n in range(1, 1000):
        target = audio.with_name(f"{stem}{audio.suffix}" if n == 1 else f"{stem}-{n}{audio.suffix}")
        target_sidecar = target.with_name(target.name + ".json")
        if not target.exists() and not target_sidecar.exists():
            break
    else:
        raise FileExistsError(f"no free name for {stem}{audio.suffix} in the inbox")
    audio.rename(target)
    sidecar.rename(target_sidecar)
    return target, target_sidecar


def _shown_name(path: Path) -> str:
    """A file name as the summary may show it: on one line, and not when it holds a name from its sidecar.

    For a recording its sidecar (:func:`flows.inbox.sidecar_of`) is read, for a sidecar the file itself, when it
    is a regular file and readable.
    """
    is_sidecar = path.suffix.lower() == ".json"
    if is_sidecar:
        source = path if is_regular(path) else None
    else:
        source = sidecar_of(path)
    try:
        record = _load_sidecar(path, source)
    except (ConsentError, MetadataError):
        return one_line(path.name)
    if _names_in(path.name, record):
        if is_sidecar:
            return "a .json sidecar whose file name holds a participant's name"
        return f"a {one_line(path.suffix)} recording whose file name holds a participant's name (renamed once it is " \
               "processed)"
    return one_line(path.name)


def _expire_refused(inbox_dir: Path, settings: Settings, store: Store) -> None:
    expire_refused(inbox_dir / "rejected", settings.rejected_retention_days, store, actor=ACTOR)
    expire_refused(inbox_dir / "failed", settings.failed_retention_days, store, actor=ACTOR)


def _duplicate(job: dict, session_id: str, inbox_dir: Path, store: Store, summary: dict) -> None:
    file_away([job["audio"], job["sidecar"]], inbox_dir / "done")
    store.audit("skipped-duplicate", actor=ACTOR, outcome="success", client_id=job["client"],
                session_id=job["session_id"], detail=f"same content as session {session_id}")
    summary["duplicates"].append({"file": one_line(job["audio"].name), "session_id": session_id})


def id_taken_reason(file_name: str, session_id: str, *, from_file_name: bool) -> str:
    """Why a recording is refused when its session id belongs to another recording, in one line.

    Parameters
    ----------
    file_name : str
        The recording's name in the inbox.
    session_id : str
        The id in force.
    from_file_name : bool
        The sidecar gives no ``session_id``, so the id was made from the file name
        (:func:`pipeline.ids.id_from_name`): the message says so, or the clinic reads an id it never gave.

    Returns
    -------
    str
    """
    if from_file_name:
        return (f"{one_line(file_name)}: session id {session_id!r} (made from the file name: the sidecar gives no "
                "session_id) is already used for another recording; give this session its own session_id in its "
                "sidecar")
    return (f"{one_line(file_name)}: session id {session_id!r} is already used for another recording; give this "
            "session its own id")


def _refuse(job: dict, error: PipelineError, inbox_dir: Path, store: Store, summary: dict, run_id: str, log) -> None:
    """Refuse a recording before analysis: to ``failed/`` with its reason, an audit row, one line in the log.

    The audit row carries no session id: the refusals (a session id or a recording that belongs to another
    session) concern another session, maybe another client's, which is not written into this client's row.
    """
    file_away([job["audio"], job["sidecar"]], inbox_dir / "failed", reason=str(error))
    reason = one_line(str(error))
    store.audit("rejected", actor=ACTOR, outcome="refused", client_id=job["client"], detail=reason)
    summary["failed"].append({"file": one_line(job["audio"].name), "session_id": job["session_id"], "reason": reason})
    log.warning("nightly run %s: refused %s (session %s): %s", run_id, one_line(job["audio"].name), job["session_id"],
                reason)


def _without_names(text: str, records: list[dict]) -> str:
    """``text`` with every name given in ``records`` (see :func:`_names_in`) replaced by its role."""
    for record in records:
        for part, label in _names_in(text, record).items():
            text = re.sub(re.escape(part), label, text, flags=re.IGNORECASE)
    return text


def _refuse_unread(delivery: Delivery, inbox_dir: Path, store: Store, summary: dict, run_id: str, log,
                   read: dict[Path, dict | None]) -> None:
    """Refuse a recording whose consent record cannot be told (a link, a shared or ambiguous sidecar).

    The recording and all its sidecars go to ``rejected/`` with the reason (:func:`flows.inbox.scan_inbox`);
    the audit row names the client only when every sidecar that is a readable regular file names the same one.
    Names given in those sidecars are replaced by their roles in what is shown; links are never read. ``read``
    keeps each sidecar's record for the run: a shared sidecar is filed away with the first of its recordings.
    """
    for sidecar in delivery.sidecars:
        if sidecar not in read:
            read[sidecar] = None
            if is_regular(sidecar):
                with contextlib.suppress(MetadataError):
                    read[sidecar] = read_sidecar(sidecar)
    records = [read[s] for s in delivery.sidecars if read[s] is not None]
    clients = {client_of(r) for r in records}
    problem = _without_names(delivery.problem or "", records)
    reason, shown = one_line(problem), one_line(_without_names(delivery.audio.name, records))
    file_away([delivery.audio, *delivery.sidecars], inbox_dir / "rejected", reason=problem)
    store.audit("rejected", actor=ACTOR, outcome="refused", client_id=clients.pop() if len(clients) == 1 else None,
                detail=reason)
    summary["rejected"].append({"file": shown, "reason": reason})
    log.warning("nightly run %s: rejected %s", run_id, reason)


def _misfiled(job: dict, owner_client: str | None, owner_session: str, inbox_dir: Path, store: Store, summary: dict,
              run_id: str, log) -> None:
    """Refuse a recording whose content is another client's session: one of the two is probably misfiled.

    Neither client's id is written into the other's reason file or audit row; the other client's audit log gets
    a row on its own session, so whoever reviews either client sees that something needs checking.
    """
    error = PipelineError(f"{job['audio'].name}: possible misfiling: it is the same recording as a session of "
                          "another client (identical content); it was not analysed. Check which client it belongs "
                          "to and correct its sidecar")
    _refuse(job, error, inbox_dir, store, summary, run_id, log)
    store.audit("possible-misfiling", actor=ACTOR, outcome="refused", client_id=owner_client, session_id=owner_session,
                detail="a recording with the same content as this session was delivered under another client and "
                       "refused; check that this session is filed under the right client")


def _one_failed(summary: dict, store: Store, log, run_id: str, *, file: str, reason: str, client: str | None,
                session_id: str | None = None, event: str = "rejected", exc: BaseException | None = None) -> None:
    """Report one recording that failed outside its analysis: one line in the summary, the log and the audit.

    The traceback, when there is one, goes to the debug log only. A store that fails too is not allowed to stop
    the batch: the summary and the log still say it.
    """
    if exc is not None:
        DEBUG_LOG.debug("%s", one_line(file), exc_info=exc)
    with contextlib.suppress(Exception):
        store.audit(event, actor=ACTOR, outcome="failed", client_id=client, session_id=session_id, detail=reason)
    entry = {"file": one_line(file), **({"session_id": session_id} if session_id else {}), "reason": reason}
    summary["failed"].append(entry)
    log.warning("nightly run %s: %s", run_id, reason)


def _why(exc: BaseException) -> str:
    """An error's short cause for a one-line message: the OS's words, else the exception's name."""
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__


def _record(job: dict, report: SessionReport | None, error: Exception | None, inbox_dir: Path, store: Store,
            summary: dict, run_id: str, log, *, out_dir: Path | None = None) -> None:
    """Store one analysis outcome (the report, written into ``out_dir``, or the error), audit it, move the files.

    The database row and the audit row come first: if the files cannot be moved (a full disk, a filing folder
    replaced during the run), the session's outcome is kept and :func:`_record_safely` reports the move.
    """
    base = dict(session_id=job["session_id"], client_id=job["client"], therapist_id=job["record"].get("therapist_id"),
                recording_name=job["audio"].name, recording_sha256=job["digest"],
                research_use=job["consent"].research_use, run_id=run_id)
    if error is not None:
        reason = one_line(str(error))
        store.save_session(**base, status="failed", reason=reason, out_dir=None, model_version=None)
        store.audit("analysed", actor=ACTOR, outcome="failed", client_id=job["client"], session_id=job["session_id"],
                    detail=reason)
        summary["failed"].append({"file": one_line(job["audio"].name), "session_id": job["session_id"],
                                  "reason": reason})
        # the one line a failed session gets (Prefect's traceback goes to the debug log, see _FailuresToDebug)
        log.warning("nightly run %s: %s (session %s) failed: %s", run_id, one_line(job["audio"].name),
                    job["session_id"], reason)
        file_away([job["audio"], job["sidecar"]], inbox_dir / "failed", reason=str(error))
        return
    store.save_session(**base, status="analysed", reason=None, out_dir=str(out_dir),
                       model_version=report.model_version)
    store.save_flags(job["session_id"], [f.to_dict() for f in report.flags], report.model_version)
    store.audit("analysed", actor=ACTOR, outcome="success", client_id=job["client"], session_id=job["session_id"],
                detail=f"{len(report.flags)} flags, model {report.model_version}")
    file_away([job["audio"], job["sidecar"]], inbox_dir / "done")
    summary["processed"].append({"file": one_line(job["audio"].name), "session_id": job["session_id"],
                                 **{k: job[k] for k in ("worker_pid", "flow_run") if k in job}})


def _record_safely(job: dict, report: SessionReport | None, error: Exception | None, inbox_dir: Path, store: Store,
                   summary: dict, run_id: str, log, *, out_dir: Path | None = None) -> None:
    """:func:`_record`, with any error while storing or filing reported in one line: the batch goes on.

    A recording that could not be moved stays in the inbox; the next run finds its content already analysed
    (a duplicate) or failed, and files it away then.
    """
    try:
        _record(job, report, error, inbox_dir, store, summary, run_id, log, out_dir=out_dir)
    except Exception as exc:  # noqa: BLE001 - one session's filing must not stop the others' (5 December trial)
        folder = "done" if error is None else "failed"
        reason = one_line(f"{job['audio'].name}: {'analysed' if error is None else 'failed'} (session "
                          f"{job['session_id']}), but could not be moved to {folder}/ ({_why(exc)}); it stays in "
                          "the inbox and is filed at the next run")
        listed = [f for f in summary["failed"] if f.get("session_id") == job["session_id"]
                  and f.get("file") == one_line(job["audio"].name)]
        if listed:  # the failure itself is reported already: say the move beside it
            listed[0]["reason"] += f"; {reason}"
            DEBUG_LOG.debug("filing %s", one_line(job["audio"].name), exc_info=exc)
            log.warning("nightly run %s: %s", run_id, reason)
        else:
            _one_failed(summary, store, log, run_id, file=job["audio"].name, reason=reason, client=job["client"],
                        session_id=job["session_id"], event="filed", exc=exc)


_ENGINE_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
# Prefect's own lines about a failed run: "Finished in state Failed('Task run encountered an exception X: ...')",
# "Flow run encountered an exception: X: ...", "Task run failed with exception: X(...) - Retry 1/1 ..."
_ENGINE_FAILURE = re.compile(r"(?:encountered an exception:?|failed with exception:) (\w+)[(:]")


def _pipeline_error_names() -> set[str]:
    names, todo = set(), [PipelineError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names


class _FailuresToDebug(logging.Filter):
    """Send Prefect's records of a session that failed on purpose (a :class:`PipelineError`) to the debug log.

    Prefect's flow and task engines log a failed task run and the failed ``analyze_session`` subflow each with
    the full traceback (about 30 lines per session) and repeat the error in their final-state lines. The nightly
    run reports the failure itself in one line (file, session id, reason); these records go, traceback included,
    to the ``alliance.nightly`` logger at DEBUG level instead (shown with ``alliance nightly --debug``). Other
    exceptions, which are bugs, keep Prefect's traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            ours = isinstance(exc, PipelineError)
        else:
            found = _ENGINE_FAILURE.search(record.getMessage())
            ours = found is not None and found.group(1) in _pipeline_error_names()
        if not ours:
            return True
        DEBUG_LOG.debug("%s", record.getMessage(), exc_info=record.exc_info)
        return False


_FAILURES_TO_DEBUG = _FailuresToDebug()
_FILTER_LOCK = threading.Lock()
_filter_users = 0


@contextlib.contextmanager
def failures_to_debug():
    """While sessions run (in threads, on a Dask worker, or one from ``alliance analyze``), Prefect's tracebacks
    of a session that failed with a :class:`PipelineError` go to the debug log; the caller says it in one line."""
    global _filter_users
    with _FILTER_LOCK:
        if _filter_users == 0:
            for name in _ENGINE_LOGGERS:
                logging.getLogger(name).addFilter(_FAILURES_TO_DEBUG)
        _filter_users += 1
    try:
        yield
    finally:
        with _FILTER_LOCK:
            _filter_users -= 1
            if _filter_users == 0:
                for name in _ENGINE_LOGGERS:
                    logging.getLogger(name).removeFilter(_FAILURES_TO_DEBUG)


@task(name="analyse-recording", persist_result=False, retries=0)
def analyse_recording(audio: str, out_dir: str, metadata_path: str, session_id: str) -> dict:
    """One recording through ``analyze_session``, on whichever worker the flow's task runner chose.

    Returns ``{"report": SessionReport or None, "error": message or None, "pid"}``: a pipeline error travels back
    as its message (exceptions with extra constructor arguments do not survive pickling between processes).
    """
    import os

    try:
        with failures_to_debug():
            return {"report": analyze_session(audio, out_dir=out_dir, metadata_path=metadata_path,
                                              session_id=session_id), "error": None, "pid": os.getpid()}
    except PipelineError as exc:
        return {"report": None, "error": str(exc), "pid": os.getpid()}
    except Exception as exc:  # a bug in one session must not stop the batch
        return {"report": None, "error": str(_internal_error(Path(audio), exc)), "pid": os.getpid()}


def check_filing_folders(inbox_dir: Path) -> None:
    """Refuse the run, before anything is moved or deleted, when ``done/``, ``rejected/`` or ``failed/`` is not a
    folder of the inbox's own (a link to another folder would receive the recordings and lose its files to the
    retention periods).

    A filing folder that does not exist yet is fine: it is created when
    the first file is filed.

    Parameters
    ----------
    inbox_dir : Path
        The inbox folder.

    Returns
    -------
    None

    Raises
    ------
    PipelineError
        One line naming the entry and what it is.
    """
    for name in FILING_FOLDERS:
        entry = inbox_dir / name
        if entry.is_symlink() or (os.path.lexists(entry) and not entry.is_dir()):
            what = "a link" if entry.is_symlink() else "not a folder"
            raise PipelineError(f"{entry}: is {what}; the inbox's {name}/ must be a folder of its own (links are not "
                                "followed). Nothing was moved or deleted; replace it with a folder and run again")


def _internal_error(audio: Path, exc: Exception) -> PipelineError:
    """An unexpected exception in one session, as a one-line failure; the traceback goes to the debug log."""
    logging.getLogger("alliance.nightly").debug("internal error analysing %s", one_line(audio.name), exc_info=exc)
    return PipelineError(f"{audio.name}: internal error in the analysis ({type(exc).__name__}); see the debug log")


def dask_runner(workers: int):
    """A ``prefect-dask`` task runner on a local Dask cluster of ``workers`` single-threaded processes.

    Each worker process loads the models once (they are cached per process) and analyses one session at a time.
    For several machines, point ``DaskTaskRunner(address=...)`` at a running Dask scheduler instead.

    Dask starts its workers with ``OMP_NUM_THREADS=1`` (and MKL/OpenBLAS alike); the numeric libraries then sum
    in another order than in this process, and Whisper's int8 decoding can choose other words. The workers get
    this process's thread settings instead, so a batch gives the same outputs on the cluster as in threads.
    (Where this process has no such variable set, the workers get the machine's core count.) This changes
    Dask's global configuration for the process.

    Parameters
    ----------
    workers : int >= 1
        Worker processes to start.

    Returns
    -------
    prefect_dask.DaskTaskRunner
        Not started yet; the cluster starts with the flow run that uses it.
    """
    import os

    import dask
    from prefect_dask import DaskTaskRunner

    threads = {name: os.environ.get(name) or str(os.cpu_count() or 1)
               for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    dask.config.set({"distributed.nanny.pre-spawn-environ": {**environ, **threads}})
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})


POOL_POLL_S = 2.0


def deploy_analyze(pool: str, *, name: str = "analyze", source: Path | None = None) -> str:
    """Register ``analyze_session`` as a deployment on a Prefect work pool; return its full name.

    Workers of that pool (``prefect worker start --pool POOL``, one or more per machine) then run the
    sessions that ``nightly_inbox(..., deployment=...)`` hands out. The flow code is loaded from ``source``
    (default: this checkout), which must exist at the same path on every worker machine, as must the inbox
    and the data directory (shared storage, see the README).

    Parameters
    ----------
    pool : str
        Name of an existing Prefect work pool.
    name : str
        The deployment's name.
    source : Path, optional
        Folder holding ``flows/analyze.py``; default this checkout.

    Returns
    -------
    str
        ``"analyze_session/<name>"``, as ``run_deployment`` takes it.

    Raises
    ------
    prefect.exceptions.ObjectNotFound
        The work pool does not exist.
    """
    from flows.analyze import analyze_session

    root = Path(source) if source else Path(__file__).resolve().parent.parent
    analyze_session.from_source(source=str(root), entrypoint="flows/analyze.py:analyze_session").deploy(
        name=name, work_pool_name=pool, build=False, push=False, print_next_steps=False,
        description="One recording in, report and session.json out (dispatched by nightly_inbox).")
    return f"analyze_session/{name}"


def _run_on_pool(jobs: list[dict], deployment: str,
                 settings: Settings) -> list[tuple[SessionReport | None, PipelineError | None]]:
    """Hand every job to ``deployment`` as its own flow run, all at once, and wait for them all.

    A finished run's report is read back from the ``session.json`` it wrote: flow results are not persisted, as
    they hold client data.
    """
    import time

    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.states import Cancelling

    runs = []
    for job in jobs:
        out_dir = settings.data_dir / "sessions" / job["session_id"]
        runs.append((out_dir, run_deployment(deployment, timeout=0, parameters=dict(
            recording=str(job["audio"]), out_dir=str(out_dir), metadata_path=str(job["sidecar"]),
            session_id=job["session_id"]))))
    results = []
    deadline = time.monotonic() + settings.nightly_pool_timeout_s
    with get_client(sync_client=True) as client:
        for job, (out_dir, run) in zip(jobs, runs):
            final = client.read_flow_run(run.id)
            while (final.state is None or not final.state.is_final()) and time.monotonic() < deadline:
                time.sleep(POOL_POLL_S)
                final = client.read_flow_run(run.id)
            job["flow_run"] = str(final.id)
            if final.state is not None and final.state.is_completed():
                session = json.loads((out_dir / "session.json").read_text(encoding="utf-8"))
                results.append((SessionReport.from_dict(session), None))
            elif final.state is None or not final.state.is_final():
                # cancel it, so no worker picks it up later, after the recording was moved to failed/
                client.set_flow_run_state(run.id, Cancelling(message="the nightly run stopped waiting"), force=True)
                results.append((None, PipelineError(
                    f"{job['audio'].name}: its flow run on the work pool did not finish within "
                    f"{settings.nightly_pool_timeout_s:.0f} s (ALLIANCE_NIGHTLY_POOL_TIMEOUT_S); is a worker running?")))
            else:
                results.append((None, PipelineError(f"{job['audio'].name}: the flow run on the work pool ended "
                                                    f"{final.state.name}: {final.state.message or 'no message'}")))
    return results


@flow(name="nightly_inbox", persist_result=False, log_prints=False)
def nightly_inbox(inbox: str, use_task_runner: bool = False, deployment: str | None = None) -> dict:
    """Process every new recording in ``inbox``; return the run summary.

    By default sessions run in up to ``ALLIANCE_NIGHTLY_CONCURRENCY`` threads of this process, sharing the
    loaded models. With ``use_task_runner`` they are submitted as ``analyse-recording`` tasks to the flow's
    task runner instead, for example ``nightly_inbox.with_options(task_runner=dask_runner(2))`` (see
    :func:`dask_runner`). With ``deployment`` (an ``analyze_session`` deployment on a work pool, see
    :func:`deploy_analyze`) each session becomes its own flow run, picked up by the pool's workers on any
    machine; screening, the database and the inbox moves stay in this flow.

    Returns
    -------
    dict
        ``processed``, ``rejected``, ``failed``, ``duplicates``, ``renamed``, ``waiting``, ``ignored``: lists of
        ``{"file", "session_id", "reason"}`` (the keys that apply; every value on one line, control characters
        in file names escaped); ``run_id``.
    """
    private_umask()  # a Prefect worker may start this flow without the CLI: the inbox and data hold client data
    log = get_run_logger()
    settings = Settings()
    store = Store.for_settings(settings)
    inbox_dir = Path(inbox)
    run_id, started = uuid.uuid4().hex[:12], now()
    check_filing_folders(inbox_dir)  # before anything is moved or deleted
    summary: dict = {"run_id": run_id, "processed": [], "rejected": [], "failed": [], "duplicates": [],
                     "renamed": [], "ignored": []}
    expire_audio(inbox_dir / "done", settings.audio_retention_days, store, actor=ACTOR)
    _expire_refused(inbox_dir, settings, store)
    deliveries, ignored = scan_inbox(inbox_dir)
    # a link is refused at once; recordings that share a sidecar wait for each other, so none is half-filed
    fresh = {d.audio for d in deliveries if not d.audio.is_symlink() and not settled(d.audio, settings.inbox_settle_s)}
    ready = [d for d in deliveries if not fresh.intersection(d.group)]
    summary["waiting"] = [{"file": _shown_name(d.audio), "reason": "still being written; left for the next run"
                           if d.audio in fresh else "shares its sidecar with a recording still being written; left "
                           "for the next run"} for d in deliveries if d not in ready]
    summary["ignored"] = [{"file": _shown_name(p), "reason": why} for p, why in ignored]
    log.info("nightly run %s: %d recordings in the inbox, %d still being written, %d other entries ignored", run_id,
             len(ready), len(summary["waiting"]), len(ignored))
    jobs: list[dict] = []
    batch: dict[str, dict] = {}  # sha256 → the job analysing that content in this run
    claimed: dict[str, dict] = {}  # session id → the job that will write that session's row in this run
    later_copies: list[tuple[dict, dict]] = []
    refused_sidecars: dict[Path, dict | None] = {}  # sidecars of recordings refused unread: read once, no link
    for delivery in ready:
        if delivery.problem is not None:
            _refuse_unread(delivery, inbox_dir, store, summary, run_id, log, refused_sidecars)
            continue
        audio, sidecar = delivery.audio, delivery.sidecar
        record: dict = {}
        try:
            record = _load_sidecar(audio, sidecar)
            # before anything else: a participant's name in the file name must reach no output, row or log
            try:
                renamed = _rename_named(audio, sidecar, record)
            except OSError as exc:  # the recording stays in the inbox, its name shown nowhere
                summary["waiting"].append({"file": f"a {audio.suffix} recording whose file name holds a "
                                           "participant's name", "reason": f"could not be renamed "
                                           f"({exc.strerror or type(exc).__name__}); left in the inbox"})
                log.warning("nightly run %s: a recording whose file name holds a participant's name could not be "
                            "renamed (%s)", run_id, exc.strerror or type(exc).__name__)
                continue
            if renamed is not None:
                audio, sidecar = renamed
                summary["renamed"].append({"file": one_line(audio.name), "reason": RENAMED_REASON})
                store.audit("renamed", actor=ACTOR, outcome="success", client_id=client_of(record),
                            detail=f"recording renamed to {one_line(audio.name)}: {RENAMED_REASON}")
                log.warning("nightly run %s: %s %s", run_id, one_line(audio.name), RENAMED_REASON)
            _check_ids(record, sidecar)
            consent = check_consent(record, source=sidecar)
        except (ConsentError, MetadataError) as exc:
            file_away([audio, sidecar], inbox_dir / "rejected", reason=str(exc))
            reason = one_line(str(exc))
            store.audit("rejected", actor=ACTOR, outcome="refused", client_id=client_of(record), detail=reason)
            summary["rejected"].append({"file": one_line(audio.name), "reason": reason})
            log.warning("nightly run %s: rejected %s: %s", run_id, one_line(audio.name), one_line(exc.problem))
            continue
        except Exception as exc:  # a sidecar no check foresaw must not stop the batch (nor every later night's)
            reason = one_line(f"{audio.name}: internal error while reading its sidecar ({type(exc).__name__}); "
                              "see the debug log")
            with contextlib.suppress(OSError):
                file_away([audio, sidecar], inbox_dir / "failed", reason=reason)
            _one_failed(summary, store, log, run_id, file=audio.name, reason=reason, client=None, exc=exc)
            continue
        try:
            digest = recording_sha256(audio)
        except OSError as exc:  # gone since the scan, or not readable by the service user: this one, not the batch
            reason = one_line(f"{audio.name}: could not be read ({_why(exc)}); deliver it again")
            with contextlib.suppress(OSError):
                file_away([audio, sidecar], inbox_dir / "failed", reason=reason)
            _one_failed(summary, store, log, run_id, file=audio.name, reason=reason, client=client_of(record))
            continue
        job = dict(audio=audio, sidecar=sidecar, record=record, consent=consent, digest=digest,
                   session_id=record.get("session_id") or id_from_name(audio.stem), client=record.get("client_id"))
        try:
            earlier = store.seen(job["digest"])  # the same content, analysed in an earlier run
            first = batch.get(job["digest"])  # the same content, earlier in this run
            taken = store.session(job["session_id"])
            claimant = claimed.get(job["session_id"])
            left = settings.data_dir / "sessions" / job["session_id"]
            if (taken is None and claimant is None and (left / "session.json").exists()
                    and claim_of(settings.data_dir, job["session_id"]) == {"sha256": job["digest"],
                                                                           "client_id": job["client"]}):
                # what a stopped run analysed this very recording into and never recorded: analysed again
                remove_inside(left, settings.data_dir / "sessions")
                drop_claim(settings.data_dir, job["session_id"])
            if earlier is not None and earlier["client_id"] != job["client"]:
                _misfiled(job, earlier["client_id"], earlier["session_id"], inbox_dir, store, summary, run_id, log)
            elif first is not None and (first["client"] != job["client"] or first.get("misfiled")):
                _misfiled(job, first["client"], first["session_id"], inbox_dir, store, summary, run_id, log)
                if not first.get("misfiled"):
                    # which client it belongs to is not known: the first holder is not analysed either, nor its
                    # same-client copies (the first was analysed and shown to its therapist: trial, stop 44)
                    first["misfiled"] = True
                    jobs.remove(first)
                    claimed.pop(first["session_id"], None)
                    _misfiled(first, job["client"], job["session_id"], inbox_dir, store, summary, run_id, log)
                    for pair in [p for p in later_copies if p[1] is first]:
                        later_copies.remove(pair)
                        _misfiled(pair[0], job["client"], job["session_id"], inbox_dir, store, summary, run_id,
                                  log)
            elif earlier is not None:
                _duplicate(job, earlier["session_id"], inbox_dir, store, summary)
            elif ((taken is not None and taken["recording_sha256"] != job["digest"]
                   and not (taken["status"] == "failed" and taken["client_id"] == job["client"]))
                  or (claimant is not None and claimant["digest"] != job["digest"])
                  or (taken is None and claimant is None
                      and (settings.data_dir / "sessions" / job["session_id"] / "session.json").exists())):
                # (the last: a session folder with results but no row is what `alliance analyze` leaves; the nightly
                # run replaced it silently: fresh-user trial; a failed session of the same client kept nothing, so the
                # clinic may deliver the recording again under its id)
                # another recording has (or gets, in this run) this session id: analysing this one would replace it
                _refuse(job, PipelineError(id_taken_reason(audio.name, job["session_id"],
                                                           from_file_name=not record.get("session_id"))),
                        inbox_dir, store, summary, run_id, log)
            elif first is not None:
                claimed.setdefault(job["session_id"], job)
                later_copies.append((job, first))
            else:
                claimed[job["session_id"]] = job
                batch[job["digest"]] = job
                jobs.append(job)
        except Exception as exc:  # noqa: BLE001 - filing one recording away must not stop the batch
            _one_failed(summary, store, log, run_id, file=audio.name, client=job["client"], exc=exc,
                        reason=one_line(f"{audio.name}: could not be screened or filed ({_why(exc)}); it stays in "
                                        "the inbox for the next run"))

    def run(job: dict) -> tuple[SessionReport | None, PipelineError | None]:
        out_dir = settings.data_dir / "sessions" / job["session_id"]
        try:
            return analyze_session(str(job["audio"]), out_dir=str(out_dir), metadata_path=str(job["sidecar"]),
                                   session_id=job["session_id"]), None
        except PipelineError as exc:
            return None, exc
        except Exception as exc:  # a bug in one session must not stop the batch
            return None, _internal_error(job["audio"], exc)

    def record(job: dict, report: SessionReport | None, error: PipelineError | None) -> None:
        job["ok"] = error is None
        _record_safely(job, report, error, inbox_dir, store, summary, run_id, log,
                       out_dir=settings.data_dir / "sessions" / job["session_id"])
        drop_claim(settings.data_dir, job["session_id"])
        if job["ok"] and settings.audio_retention_days == 0:
            expire_audio(inbox_dir / "done", 0, store, actor=ACTOR)

    for job in jobs:  # a run stopped before recording a session leaves its claim for the next run (write_claim)
        try:
            write_claim(settings.data_dir, job["session_id"], digest=job["digest"], client=job["client"])
        except OSError as exc:  # the analysis does not need it: the next run would refuse the id if stopped now
            log.warning("nightly run %s: could not note session %s before analysing it (%s)", run_id,
                        job["session_id"], _why(exc))
    # each session is recorded (database row, audit row, recording filed) as soon as it and the ones before it are
    # done, not when the whole batch is: a run stopped half-way (Ctrl-C, SIGTERM) kept reports that no row pointed
    # at, and the next run refused their recordings (trial, stop 44)
    if deployment and jobs:
        for job, (report, error) in zip(jobs, _run_on_pool(jobs, deployment, settings)):
            record(job, report, error)
    elif use_task_runner and jobs:
        futures = [analyse_recording.submit(str(job["audio"]), str(settings.data_dir / "sessions" / job["session_id"]),
                                            str(job["sidecar"]), job["session_id"]) for job in jobs]
        for job, future in zip(jobs, futures):
            o = future.result()
            job["worker_pid"] = o["pid"]
            record(job, o["report"], PipelineError(o["error"]) if o["error"] else None)
    else:
        workers = max(1, min(settings.nightly_concurrency, len(jobs)))
        # models are loaded once and shared by the threads; a failed session is reported in one line by _record
        with failures_to_debug(), ThreadPoolExecutor(max_workers=workers) as pool:
            for job, (report, error) in zip(jobs, pool.map(run, jobs)):
                record(job, report, error)
    for copy, original in later_copies:
        if original["ok"]:
            try:
                _duplicate(copy, original["session_id"], inbox_dir, store, summary)
            except OSError as exc:  # it stays in the inbox; the next run finds it analysed and files it then
                _one_failed(summary, store, log, run_id, file=copy["audio"].name, client=copy["client"],
                            event="filed", exc=exc,
                            reason=one_line(f"{copy['audio'].name}: same content as session "
                                            f"{original['session_id']}, but could not be moved to done/ "
                                            f"({_why(exc)}); it stays in the inbox and is filed at the next run"))
        else:
            _record_safely(copy, None, PipelineError(f"{copy['audio'].name}: same content as "
                                                     f"{original['audio'].name}, which failed"),
                           inbox_dir, store, summary, run_id, log)
    _expire_refused(inbox_dir, settings, store)  # a retention of 0 deletes what this run refused
    store.save_run(run_id, started, summary)
    counts = {k: len(v) for k, v in summary.items() if isinstance(v, list)}
    store.audit("nightly-run", actor=ACTOR, outcome="partial" if summary["failed"] else "success",
                detail=json.dumps({"run_id": run_id, **counts}))
    log.info("nightly run %s: %s", run_id, counts)
    return summary
