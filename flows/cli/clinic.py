"""The clinic's nightly work: `nightly`, `deploy`, `serve`, `audit`, `purge`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from flows.cli.app import ASR_BACKEND_HELP, DEPLOYMENT_HELP, _deployment_or_exit, _inbox_or_exit, _server_or_exit, _use_asr_backend, app


@app.command()
def nightly(inbox: Optional[Path] = typer.Option(None, "--inbox", help="Inbox folder (default: ALLIANCE_INBOX_DIR)."),
            dask_workers: int = typer.Option(0, "--dask-workers", min=0, max=64,
                                             help="Run the sessions on a local Dask cluster of this many worker "
                                                  "processes (prefect-dask); 0: threads in this process."),
            asr_backend: Optional[str] = typer.Option(None, "--asr-backend", help=ASR_BACKEND_HELP),
            deployment: Optional[str] = typer.Option(None, "--deployment", help=DEPLOYMENT_HELP),
            debug: bool = typer.Option(False, "--debug", help="Also print the full traceback of each failed "
                                       "session (the debug log); without it a failure is one line."),
            ) -> None:
    """Run the nightly inbox flow once, now: every consented recording gets a report."""
    import logging

    from pipeline.settings import Settings

    if debug:
        logging.getLogger("alliance").setLevel(logging.DEBUG)

    if deployment is not None:
        if not deployment.strip() or "/" not in deployment:
            typer.echo(f"error: --deployment must name a deployment as FLOW/NAME, e.g. analyze_session/analyze. "
                       f"Got {deployment!r} instead.", err=True)
            raise typer.Exit(2)
        if dask_workers:
            typer.echo("error: give --deployment or --dask-workers, not both", err=True)
            raise typer.Exit(2)
        if asr_backend:
            typer.echo("error: --asr-backend has no effect with --deployment: the sessions run on the pool's "
                       "workers, whose environment decides (set ALLIANCE_ASR__BACKEND where they run)", err=True)
            raise typer.Exit(2)
    _use_asr_backend(asr_backend)

    folder = _inbox_or_exit(inbox or Settings().inbox_dir)
    from flows.nightly import check_filing_folders
    from pipeline.errors import PipelineError
    from pipeline.ids import one_line

    try:  # a linked done/ would receive the recordings and lose its own files to retention: before any flow starts
        check_filing_folders(folder)
    except PipelineError as exc:
        typer.echo(f"error: {one_line(str(exc))}", err=True)
        raise typer.Exit(2) from None
    if not deployment:  # the models this process (or its Dask workers, on this machine) will load: a missing or
        # unusable one stops the night here, before any recording is decoded or filed away as failed
        from flows.analyze import check_models

        try:
            check_models(Settings())
        except PipelineError as exc:
            from flows import discard_unused_prefect_home

            discard_unused_prefect_home()
            typer.echo(f"error: {one_line(str(exc))}; nothing in the inbox was touched", err=True)
            raise typer.Exit(2) from None
    from flows.store import Store

    Store.for_settings(Settings())  # an unusable database stops here in one line, not inside the flow's traceback
    if deployment:
        _server_or_exit()
        _deployment_or_exit(deployment)
    from flows.nightly import dask_runner, nightly_inbox

    if deployment:
        summary = nightly_inbox(str(folder), deployment=deployment)
    elif dask_workers:  # each Dask worker process loads its own models
        summary = nightly_inbox.with_options(task_runner=dask_runner(dask_workers))(str(folder), use_task_runner=True)
    else:
        from flows.analyze import preload_analysis

        preload_analysis()  # the analysis' imports while Prefect starts the nightly run
        summary = nightly_inbox(str(folder))
    for kind in ("processed", "duplicates", "renamed", "rejected", "failed", "waiting", "ignored"):
        typer.echo(f"{kind}: {len(summary[kind])}")
        for item in summary[kind]:
            # a failure is one line: file, session id, reason (the traceback only with --debug)
            session = f" (session {item['session_id']})" if kind == "failed" and item.get("session_id") else ""
            reason = " ".join(str(item["reason"]).split()) if item.get("reason") else ""
            typer.echo(f"  {item['file']}{session}" + (f": {reason}" if reason else ""))
    if summary["failed"]:
        raise typer.Exit(1)  # a scheduler or operator sees that something needs attention


@app.command()
def deploy(pool: str = typer.Option(..., "--pool", help="The Prefect work pool (create it with `prefect work-pool "
                                    "create POOL --type process`)."),
           name: str = typer.Option("analyze", "--name", help="Deployment name.")) -> None:
    """Register analyze_session on a work pool, so workers on any machine run the nightly sessions."""
    _server_or_exit()
    import httpx
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    from flows.nightly import deploy_analyze

    try:
        full = deploy_analyze(pool, name=name)
    except (ObjectNotFound, PrefectHTTPStatusError, ValueError) as exc:
        # Prefect reports a missing pool as a ValueError ("Could not find work pool ...")
        typer.echo(f"error: cannot deploy to work pool {pool!r} ({str(exc) or exc.__class__.__name__}); create it "
                   f"first: prefect work-pool create {pool} --type process", err=True)
        raise typer.Exit(1) from None
    except (httpx.HTTPError, OSError) as exc:
        typer.echo(f"error: cannot reach the Prefect server ({exc})", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"deployment {full} on work pool {pool!r}")
    typer.echo(f"start workers: prefect worker start --pool {pool} --limit 1   (on each machine, one or more)")
    typer.echo(f"run the inbox: alliance nightly --inbox DIR --deployment {full}")


@app.command()
def serve(inbox: Optional[Path] = typer.Option(None, "--inbox", help="Inbox folder (default: ALLIANCE_INBOX_DIR)."),
          cron: Optional[str] = typer.Option(None, "--cron", help="Schedule (default: ALLIANCE_NIGHTLY_CRON, 02:00)."),
          deployment: Optional[str] = typer.Option(None, "--deployment", help=DEPLOYMENT_HELP),
          ) -> None:
    """Register the nightly deployment with its cron schedule and serve it (needs a Prefect server, see README)."""
    import os

    from pipeline.settings import Settings, validate_cron

    settings = Settings()
    folder = _inbox_or_exit(inbox or settings.inbox_dir)
    from flows.store import Store

    Store.for_settings(settings)  # every scheduled run needs the database: refuse an unusable one now, in one line
    if cron is not None:
        try:
            settings = settings.model_copy(update={"nightly_cron": validate_cron(cron)})
        except ValueError as exc:
            typer.echo(f"error: --cron {exc}", err=True)
            raise typer.Exit(2) from None
    if not os.environ.get("PREFECT_API_URL"):
        typer.echo("error: PREFECT_API_URL is not set; start a server (`prefect server start --host 127.0.0.1`) "
                   "and export PREFECT_API_URL=http://127.0.0.1:4200/api", err=True)
        raise typer.Exit(2)
    from prefect.schedules import Cron

    from flows.nightly import nightly_inbox

    import httpx

    try:
        nightly_inbox.serve(name="nightly", schedules=[Cron(settings.nightly_cron, timezone=settings.nightly_timezone)],
                            parameters={"inbox": str(Path(folder).resolve()),
                                        **({"deployment": deployment} if deployment else {})},
                            description="Every consented recording in the inbox gets a report.")
    except (httpx.HTTPError, OSError) as exc:
        typer.echo(f"error: cannot reach the Prefect server at {os.environ['PREFECT_API_URL']} ({exc}); "
                   "start it with `prefect server start --host 127.0.0.1`", err=True)
        raise typer.Exit(1) from None


@app.command()
def audit(client: Optional[str] = typer.Option(None, "--client", help="Only this client pseudonym."),
          fmt: str = typer.Option("tsv", "--format", help="tsv (default), csv or json. In tsv and csv every row is "
                                  "one line: tabs, line breaks, backslashes and other control characters in a "
                                  "field are escaped (\\t, \\n, \\\\, \\x1b); json holds the exact values.")
          ) -> None:
    """List the audit log (NEN 7513): what, when, which client, who, outcome."""
    from flows.store import AUDIT_FORMATS, Store, format_audit
    from pipeline.ids import InvalidIdError, check_id
    from pipeline.settings import Settings

    if fmt not in AUDIT_FORMATS:
        typer.echo(f"error: --format must be one of {', '.join(AUDIT_FORMATS)}. Got {fmt!r} instead.", err=True)
        raise typer.Exit(2)
    if client is not None:
        try:
            check_id(client, "--client")
        except InvalidIdError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    settings = Settings()
    rows = Store.for_settings(settings).audit_rows(client_id=client)
    for line in format_audit(rows, fmt):
        typer.echo(line)
    if not rows:  # run from another folder, the default data directory is another one (trial): say which was read
        from flows.store import shown_url
        from pipeline.ids import one_line

        where = (f"the database {one_line(shown_url(settings.database_url))} (ALLIANCE_DATABASE_URL)"
                 if settings.database_url else
                 f"the data directory {one_line(str(Path(settings.data_dir).resolve()))} (ALLIANCE_DATA_DIR)")
        typer.echo(f"note: no audit events{f' for client {client}' if client else ''} in {where}", err=True)


@app.command()
def purge(client: str = typer.Argument(..., help="Client pseudonym whose data is removed."),
          inbox: Optional[Path] = typer.Option(None, "--inbox", help="Also remove their files from this inbox.")
          ) -> None:
    """Remove everything about a client (session folders, database rows, inbox files, exported copies, Prefect's
    run records) and record that it was done; say what remains, exit 1 when anything does."""
    from flows.purge import (ACTOR, purge_exports, purge_feature_cache, purge_inbox_files, purge_session_folders,
                             unrecorded_session_rows)
    from flows.store import Store
    from pipeline.ids import InvalidIdError, check_id
    from pipeline.settings import Settings

    settings = Settings()
    try:
        check_id(client, "CLIENT")
    except InvalidIdError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    folder = inbox or settings.inbox_dir
    if inbox is not None and not inbox.is_dir():
        from pipeline.ids import display_line

        what = "is not a folder" if inbox.exists() else "not found"
        typer.echo(f"error: inbox folder {display_line(str(inbox))} {what}; nothing was purged", err=True)
        raise typer.Exit(2)
    store = Store.for_settings(settings)
    rows = store.sessions(client_id=client)
    # files first, database rows last: a purge stopped half-way (or one that could not reach Prefect) can be run
    # again and still finds the client's session ids
    # and the folders `alliance analyze` wrote for this client, which have no database row
    direct = unrecorded_session_rows(settings.data_dir, client, (r["session_id"] for r in rows))
    folders, left = purge_session_folders([*rows, *direct], settings.data_dir, client)
    files = 0
    if folder is not None and Path(folder).is_dir():
        files, kept = purge_inbox_files(folder, client, rows)
        left += kept
    else:
        recorded = sorted(r["recording_name"] for r in rows if r.get("recording_name"))
        if recorded:
            left.append(f"remains the recordings of {len(recorded)} session{'s' * (len(recorded) != 1)} of client "
                        f"{client} ({', '.join(recorded)}) in the nightly inbox's done/, failed/ or rejected/ folders, "
                        f"if still retained: run `alliance purge {client} --inbox DIR` (or set ALLIANCE_INBOX_DIR)")
    exports, remains = purge_exports(store, client)
    left += remains
    cached, remains = purge_feature_cache(settings.data_dir, rows)
    left += remains
    from flows.inbox import purge_claims

    claims = purge_claims(settings.data_dir, client)  # a stopped nightly run's notes of sessions it was analysing
    if not rows and not direct and not files and not exports and not cached and not claims and not left:
        typer.echo(f"No data found for client {client}; nothing was purged.")
        return
    import flows.store

    try:
        runs = flows.store.delete_prefect_runs({r["session_id"] for r in [*rows, *direct]})
    except Exception as exc:  # the Prefect server may be down; the rest of the purge stands and is recorded
        runs = None
        left.append(f"remains Prefect's run records of sessions {', '.join(sorted(r['session_id'] for r in rows))}: "
                    f"cannot reach Prefect ({exc.__class__.__name__}); the database rows are kept so that running "
                    "this purge again finds them")
    if runs is not None:
        store.delete_client(client)
    runs = runs or 0
    for line in left:
        typer.echo(line, err=True)
    summary = (f"{len(rows) + len(direct)} sessions, {folders} session folders, {files} inbox files, {exports} exported copies, "
               f"{cached} cached feature sets, {runs} Prefect run records")
    store.audit("deleted", actor=ACTOR, outcome="partial" if left else "success", client_id=client,
                detail=f"purged {summary}" + (f"; {len(left)} items remain" if left else ""))
    typer.echo(f"Purged client {client}: {summary}.")
    if left:
        typer.echo(f"Not everything of client {client} was removed: {len(left)} items above remain.", err=True)
        raise typer.Exit(1)
