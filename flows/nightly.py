"""Prefect flow ``nightly_inbox``: every consented recording in the clinic's inbox gets a report.

For each recording ``NAME.ext`` with its sidecar ``NAME.ext.json`` (or
``NAME.json``) in the inbox:

1. no sidecar, unreadable sidecar or invalid consent → moved with its sidecar
   to ``rejected/`` with a ``.reason.txt``, **never decoded**;
2. the same content (sha256) already analysed → not processed again, moved to
   ``done/``;
3. otherwise ``analyze_session`` runs, up to ``ALLIANCE_NIGHTLY_CONCURRENCY``
   sessions at once in threads that share the loaded models; success →
   recorded and moved to ``done/``; bad input or a failed stage → recorded
   with its reason and moved to ``failed/``; the batch goes on. A second copy
   of the same content in one batch waits for the first and follows it.

Every event is a row in the audit log; the run summary is stored and returned.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prefect import flow, get_run_logger, task

from flows.analyze import analyze_session
from flows.store import Store, now
from pipeline.consent import check_consent
from pipeline.errors import ConsentError, PipelineError
from pipeline.settings import Settings

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".mp4")
ACTOR = "nightly_inbox"


def sidecar_of(audio: Path) -> Path | None:
    """``NAME.ext.json`` next to the recording, else ``NAME.json``; None when neither exists."""
    for candidate in (audio.with_name(audio.name + ".json"), audio.with_suffix(".json")):
        if candidate.is_file():
            return candidate
    return None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _move(files: list[Path], folder: Path) -> list[Path]:
    """Move files into ``folder``; a name already there gets a time stamp instead of being overwritten."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = now().replace(":", "").replace("+", "_")
    moved = []
    for f in files:
        if f is not None and f.exists():
            target = folder / f.name
            if target.exists():
                target = folder / f"{f.name}.{stamp}{f.suffix}"
            shutil.move(str(f), str(target))
            moved.append(target)
    return moved


def _settled(path: Path, seconds: float) -> bool:
    """True when the file has not changed for ``seconds`` (it is not still being copied)."""
    import time

    return time.time() - path.stat().st_mtime >= seconds


def expire_audio(done: Path, days: float, store: Store) -> int:
    """Delete processed recordings in ``done`` older than ``days`` (by modification time); audit each.

    Returns
    -------
    int
        Recordings deleted.
    """
    import time

    if not done.is_dir():
        return 0
    limit = time.time() - days * 86400.0
    n = 0
    for audio in sorted(p for p in done.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES):
        if days == 0 or audio.stat().st_mtime < limit:
            sidecar = sidecar_of(audio)
            client = None
            if sidecar is not None:
                try:
                    client = json.loads(sidecar.read_text(encoding="utf-8")).get("client_id")
                except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                    client = None
            audio.unlink()
            store.audit("deleted", actor=ACTOR, outcome="success", client_id=client,
                        detail=f"raw audio {audio.name} after the retention period ({days:g} days)")
            n += 1
    return n


def _duplicate(job: dict, session_id: str, inbox_dir: Path, store: Store, summary: dict) -> None:
    _move([job["audio"], job["sidecar"]], inbox_dir / "done")
    store.audit("skipped-duplicate", actor=ACTOR, outcome="success", client_id=job["client"],
                session_id=job["session_id"], detail=f"same content as session {session_id}")
    summary["duplicates"].append({"file": job["audio"].name, "session_id": session_id})


def _record(job: dict, report: str | None, error: Exception | None, inbox_dir: Path, store: Store, summary: dict,
            run_id: str, log) -> None:
    """Store one analysis outcome, move the files, write the audit row."""
    base = dict(session_id=job["session_id"], client_id=job["client"], therapist_id=job["record"].get("therapist_id"),
                recording_name=job["audio"].name, recording_sha256=job["digest"],
                research_use=job["consent"].research_use, run_id=run_id)
    if error is not None:
        moved = _move([job["audio"], job["sidecar"]], inbox_dir / "failed")
        moved[0].with_name(moved[0].name + ".reason.txt").write_text(str(error) + "\n", encoding="utf-8")
        store.save_session(**base, status="failed", reason=str(error), out_dir=None, model_version=None)
        store.audit("analysed", actor=ACTOR, outcome="failed", client_id=job["client"], session_id=job["session_id"],
                    detail=str(error))
        summary["failed"].append({"file": job["audio"].name, "session_id": job["session_id"], "reason": str(error)})
        log.warning("nightly run %s: session %s failed (%s)", run_id, job["session_id"], type(error).__name__)
        return
    result = json.loads(Path(report).with_name("session.json").read_text(encoding="utf-8"))
    store.save_session(**base, status="analysed", reason=None, out_dir=str(Path(report).parent),
                       model_version=result["model_version"])
    store.save_flags(job["session_id"], result["flags"], result["model_version"])
    _move([job["audio"], job["sidecar"]], inbox_dir / "done")
    store.audit("analysed", actor=ACTOR, outcome="success", client_id=job["client"], session_id=job["session_id"],
                detail=f"{len(result['flags'])} flags, model {result['model_version']}")
    summary["processed"].append({"file": job["audio"].name, "session_id": job["session_id"],
                                 **{k: job[k] for k in ("worker_pid", "flow_run") if k in job}})


@task(name="analyse-recording", persist_result=False, retries=0)
def analyse_recording(audio: str, out_dir: str, metadata_path: str, session_id: str) -> dict:
    """One recording through ``analyze_session``, on whichever worker the flow's task runner chose.

    Returns ``{"report": path or None, "error": message or None}``: a pipeline error travels back as its
    message (exceptions with extra constructor arguments do not survive pickling between processes).
    """
    import os

    try:
        return {"report": analyze_session(audio, out_dir=out_dir, metadata_path=metadata_path, session_id=session_id),
                "error": None, "pid": os.getpid()}
    except PipelineError as exc:
        return {"report": None, "error": str(exc), "pid": os.getpid()}


def dask_runner(workers: int):
    """A ``prefect-dask`` task runner on a local Dask cluster of ``workers`` single-threaded processes.

    Each worker process loads the models once (they are cached per process) and analyses one session at a time.
    For several machines, point ``DaskTaskRunner(address=...)`` at a running Dask scheduler instead.
    """
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})


POOL_POLL_S = 2.0


def deploy_analyze(pool: str, *, name: str = "analyze", source: Path | None = None) -> str:
    """Register ``analyze_session`` as a deployment on a Prefect work pool; return its full name.

    Workers of that pool (``prefect worker start --pool POOL``, one or more per machine) then run the
    sessions that ``nightly_inbox(..., deployment=...)`` hands out. The flow code is loaded from ``source``
    (default: this checkout), which must exist at the same path on every worker machine, as must the inbox
    and the data directory (shared storage, see the README).

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


def _run_on_pool(jobs: list[dict], deployment: str, settings: Settings) -> list[tuple[str | None, PipelineError | None]]:
    """Hand every job to ``deployment`` as its own flow run, all at once, and wait for them all."""
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
                results.append((str(out_dir / "report.html"), None))
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
        ``processed``, ``rejected``, ``failed``, ``duplicates``: lists of
        ``{"file", "session_id", "reason"}``; ``run_id``.
    """
    log = get_run_logger()
    settings = Settings()
    store = Store.for_settings(settings)
    inbox_dir = Path(inbox)
    run_id, started = uuid.uuid4().hex[:12], now()
    summary: dict = {"run_id": run_id, "processed": [], "rejected": [], "failed": [], "duplicates": []}
    expire_audio(inbox_dir / "done", settings.audio_retention_days, store)
    found = sorted(p for p in inbox_dir.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    recordings = [p for p in found if _settled(p, settings.inbox_settle_s)]
    summary["waiting"] = [{"file": p.name, "reason": "still being written; left for the next run"}
                          for p in found if p not in recordings]
    log.info("nightly run %s: %d recordings in the inbox, %d still being written", run_id, len(recordings),
             len(summary["waiting"]))
    jobs: list[dict] = []
    batch: dict[str, dict] = {}  # sha256 → the job analysing that content in this run
    later_copies: list[tuple[dict, dict]] = []
    for audio in recordings:
        sidecar = sidecar_of(audio)
        record: dict = {}
        try:
            if sidecar is None:
                raise ConsentError(audio, "no sidecar JSON with a consent record next to the recording")
            try:
                loaded = json.loads(sidecar.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ConsentError(sidecar, f"sidecar is not valid JSON ({exc})") from exc
            if not isinstance(loaded, dict):
                raise ConsentError(sidecar, "sidecar must be a JSON object")
            record = loaded
            consent = check_consent(record, source=sidecar)
        except ConsentError as exc:
            moved = _move([audio, sidecar], inbox_dir / "rejected")
            moved[0].with_name(moved[0].name + ".reason.txt").write_text(str(exc) + "\n", encoding="utf-8")
            store.audit("rejected", actor=ACTOR, outcome="refused", client_id=record.get("client_id"), detail=str(exc))
            summary["rejected"].append({"file": audio.name, "reason": str(exc)})
            log.warning("nightly run %s: rejected %s: %s", run_id, audio.name, exc.problem)
            continue
        job = dict(audio=audio, sidecar=sidecar, record=record, consent=consent, digest=sha256_file(audio),
                   session_id=str(record.get("session_id") or audio.stem), client=record.get("client_id"))
        earlier = store.seen(job["digest"])
        taken = store.session(job["session_id"])
        if earlier is None and taken is not None and taken["recording_sha256"] != job["digest"]:
            error = PipelineError(f"{audio.name}: session id {job['session_id']!r} is already used for another "
                                  "recording; give this session its own id")
            moved = _move([audio, sidecar], inbox_dir / "failed")
            moved[0].with_name(moved[0].name + ".reason.txt").write_text(str(error) + "\n", encoding="utf-8")
            # the session id belongs to another client's session: it is not written into this client's audit row
            store.audit("rejected", actor=ACTOR, outcome="refused", client_id=job["client"], detail=str(error))
            summary["failed"].append({"file": audio.name, "session_id": job["session_id"], "reason": str(error)})
            continue
        if earlier is not None:
            _duplicate(job, earlier["session_id"], inbox_dir, store, summary)
        elif job["digest"] in batch:
            later_copies.append((job, batch[job["digest"]]))
        else:
            batch[job["digest"]] = job
            jobs.append(job)

    def run(job: dict) -> tuple[str | None, PipelineError | None]:
        out_dir = settings.data_dir / "sessions" / job["session_id"]
        try:
            return analyze_session(str(job["audio"]), out_dir=str(out_dir), metadata_path=str(job["sidecar"]),
                                   session_id=job["session_id"]), None
        except PipelineError as exc:
            return None, exc

    if deployment and jobs:
        results = _run_on_pool(jobs, deployment, settings)
    elif use_task_runner and jobs:
        futures = [analyse_recording.submit(str(job["audio"]), str(settings.data_dir / "sessions" / job["session_id"]),
                                            str(job["sidecar"]), job["session_id"]) for job in jobs]
        outcomes = [f.result() for f in futures]
        results = [(o["report"], PipelineError(o["error"]) if o["error"] else None) for o in outcomes]
        for job, o in zip(jobs, outcomes):
            job["worker_pid"] = o["pid"]
    else:
        workers = max(1, min(settings.nightly_concurrency, len(jobs)))
        with ThreadPoolExecutor(max_workers=workers) as pool:  # models are loaded once and shared by the threads
            results = list(pool.map(run, jobs))
    for job, (report, error) in zip(jobs, results):
        job["ok"] = error is None
        _record(job, report, error, inbox_dir, store, summary, run_id, log)
        if job["ok"] and settings.audio_retention_days == 0:
            expire_audio(inbox_dir / "done", 0, store)
    for copy, original in later_copies:
        if original["ok"]:
            _duplicate(copy, original["session_id"], inbox_dir, store, summary)
        else:
            _record(copy, None, PipelineError(f"{copy['audio'].name}: same content as {original['audio'].name}, "
                                              "which failed"), inbox_dir, store, summary, run_id, log)
    store.save_run(run_id, started, summary)
    counts = {k: len(v) for k, v in summary.items() if isinstance(v, list)}
    store.audit("nightly-run", actor=ACTOR, outcome="partial" if summary["failed"] else "success",
                detail=json.dumps({"run_id": run_id, **counts}))
    log.info("nightly run %s: %s", run_id, counts)
    return summary
