"""The ``alliance`` command."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer
import typer.core


def _error(console, message: str, *, label: str = "[red]error:[/red]", **_) -> None:
    """Print ``label message``; the message is escaped, so file names and "[nl]" are shown as they are."""
    from rich.markup import escape

    console.print(f"{label} {escape(message)}", soft_wrap=True)


DEPLOYMENT_HELP = ("Hand each session to this analyze_session deployment on a Prefect work pool (see "
                   "`alliance deploy`), e.g. analyze_session/analyze; needs PREFECT_API_URL.")


ASR_BACKEND_HELP = ("ASR backend: faster-whisper (default) or openai-whisper "
                    "(default: ALLIANCE_ASR__BACKEND).")


def _use_asr_backend(value: str | None) -> None:
    """Set the ASR backend for this run (through the environment, so worker processes see it too)."""
    import os

    if value is None:
        return
    if value not in ("faster-whisper", "openai-whisper"):
        typer.echo(f"error: --asr-backend must be faster-whisper or openai-whisper. Got {value!r} instead.", err=True)
        raise typer.Exit(2)
    os.environ["ALLIANCE_ASR__BACKEND"] = value


class _Commands(typer.core.TyperGroup):
    """The command group: a setting that names something unusable ends any command in one line, exit 2."""

    def invoke(self, ctx):
        from pipeline.errors import ConfigError

        try:
            return super().invoke(ctx)
        except ConfigError as exc:  # an unusable data folder or database, found by whichever command needed it
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None


app = typer.Typer(add_completion=False, no_args_is_help=True, cls=_Commands,
                  help="alliance-monitor: flags possible therapeutic-alliance ruptures for clinician review.")


@app.callback()
def main() -> None:
    """alliance-monitor: flags possible therapeutic-alliance ruptures for clinician review."""
    from pipeline.ids import private_umask
    from pipeline.settings import SettingsError, load_settings

    private_umask()  # every file and folder a command creates (database, sessions, exports) is the service user's
    try:
        settings = load_settings()
    except SettingsError as exc:
        typer.echo(f"error: invalid setting: {exc}", err=True)
        raise typer.Exit(2) from None
    from pipeline.errors import ConfigError
    from pipeline.settings import ensure_data_dir

    try:
        ensure_data_dir(settings)  # every command writes there (Prefect's home too): an unusable one stops here
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def analyze(
    recording: Path = typer.Argument(..., help="Audio file: wav, flac, mp3, ogg/opus or m4a."),
    speakers: Optional[str] = typer.Option(None, "--speakers",
                                           help="Speakers in the room, 1–8, or 'auto' to estimate "
                                                "(default: from --metadata, else 2)."),
    language: Optional[str] = typer.Option(None, "--language", help="nl, en or auto (default: metadata, else auto)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: <data dir>/sessions/<id>)."),
    metadata: Optional[Path] = typer.Option(None, "--metadata", help="Session metadata JSON (participants, roles)."),
    session_id: Optional[str] = typer.Option(None, "--session-id", help="Session id (default: file name)."),
    therapist: Optional[str] = typer.Option(None, "--therapist",
                                            help="Enrolled therapist in this session (voice profile)."),
    asr_backend: Optional[str] = typer.Option(None, "--asr-backend", help=ASR_BACKEND_HELP),
) -> None:
    """Analyse one recording: transcript, speakers, turn metrics, flags and report."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from pipeline.errors import PipelineError

    console = Console(stderr=True)
    _use_asr_backend(asr_backend)
    if language is not None and language not in ("nl", "en", "auto"):
        _error(console, f"--language must be one of nl, en, auto. Got {language!r} instead.")
        raise typer.Exit(2)
    n_speakers: int | str | None = speakers
    if speakers is not None and speakers != "auto":
        if not speakers.isdigit() or not 1 <= int(speakers) <= 8:
            _error(console, f"--speakers must be 1–8 or 'auto'. Got {speakers!r} instead.")
            raise typer.Exit(2)
        n_speakers = int(speakers)
    from pipeline.ids import InvalidIdError, check_id

    # ids name folders: "..", "." or "a/b" would put the session in the data directory itself or outside it
    try:
        if session_id is not None:
            check_id(session_id, "--session-id")
        if therapist is not None:
            check_id(therapist, "--therapist")
    except InvalidIdError as exc:
        _error(console, str(exc))
        raise typer.Exit(2) from None

    from pipeline.audio import probe
    from pipeline.sidecar import Sidecar
    from pipeline.profiles import load_profile
    from pipeline.settings import Settings

    # cheap checks first: a missing, empty or non-audio file, bad metadata or an unusable output folder
    # fails before any work starts
    try:
        probe(recording)
        if metadata is not None:
            Sidecar.load(metadata)
        if therapist:
            load_profile(Settings().data_dir, therapist)
        from pipeline.lexical import load_lexicon

        load_lexicon(Settings().features.lexicon_path)
        from pipeline.asr import check_backend

        check_backend(Settings().asr, model_cache_dir=Settings().model_cache_dir)
    except PipelineError as exc:
        _error(console, f"{exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    taken = _taken_by_another(recording, session_id, metadata, out)
    if taken is not None:
        _error(console, taken, soft_wrap=True)
        raise typer.Exit(1)
    if out is not None:
        blocked = next((p for p in [out, *out.parents] if p.exists() and not p.is_dir()), None)
        if blocked is not None:
            _error(console, f"--out {out}: {blocked} is a file, not a folder; give a folder",
                          soft_wrap=True)
            raise typer.Exit(2)
        if (out / "session.json").exists():
            console.print(f"note: replacing the earlier results in {out}", soft_wrap=True)

    from flows.analyze import STAGES, analyze_session, session_folder_path

    with Progress(TextColumn("{task.description:<12}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        bars = {s: progress.add_task(s, total=1.0) for s in STAGES}
        try:
            report = analyze_session(str(recording), out_dir=str(out) if out else None, num_speakers=n_speakers,
                                     language=language, metadata_path=str(metadata) if metadata else None,
                                     session_id=session_id, therapist=therapist,
                                     hook=lambda stage, frac: progress.update(bars[stage], completed=frac))
        except PipelineError as exc:
            progress.stop()
            _error(console, f"{exc}", soft_wrap=True)
            raise typer.Exit(1) from None
    for warning in report.warnings:
        _error(console, warning, label="[yellow]warning:[/yellow]")
    folder = session_folder_path(Settings().data_dir, report.session_id, out)
    typer.echo(f"Report: {folder / 'report.html'}")
    typer.echo(f"Session data: {folder / 'session.json'}")


def _taken_by_another(recording: Path, session_id: str | None, metadata: Path | None, out: Path | None) -> str | None:
    """Why analysing ``recording`` would replace another recording's session, or None when it would not.

    The session id in force (``--session-id``, the metadata's, or one made from the file name) may already belong
    to a session the nightly run analysed from another recording (the database knows its sha256), and the output
    folder may hold the results of another session; either would be overwritten, mixing two clients' data.
    """
    from flows.store import Store
    from pipeline.audio import recording_sha256
    from pipeline.ids import id_from_name
    from pipeline.settings import Settings
    from pipeline.sidecar import Sidecar

    settings = Settings()
    meta = Sidecar.load(metadata) if metadata is not None else Sidecar()
    sid = session_id or meta.session_id or id_from_name(recording.stem)
    row = Store.for_settings(settings).session(sid)
    if row is not None and row.get("recording_sha256") not in (None, recording_sha256(recording)):
        return (f"{recording.name}: session id {sid!r} is already used for another recording; give this session "
                "its own --session-id")
    folder = out if out is not None else Path(settings.data_dir) / "sessions" / sid
    try:
        earlier = json.loads((folder / "session.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(earlier, dict) and earlier.get("session_id") not in (None, sid):
        return (f"{folder} holds the results of session {earlier.get('session_id')!r}, not {sid!r}; choose another "
                "--out")
    if isinstance(earlier, dict) and meta.client_id and earlier.get("client_id") not in (None, meta.client_id):
        return (f"{folder} holds session {sid!r} of another client; give this session its own --session-id")
    return None


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
    from flows.store import Store

    Store.for_settings(Settings())  # an unusable database stops here in one line, not inside the flow's traceback
    if deployment:
        _server_or_exit()
        _deployment_or_exit(deployment)
    from flows.nightly import dask_runner, nightly_inbox

    if deployment:
        summary = nightly_inbox(str(folder), deployment=deployment)
    elif dask_workers:
        summary = nightly_inbox.with_options(task_runner=dask_runner(dask_workers))(str(folder), use_task_runner=True)
    else:
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


def _server_or_exit() -> None:
    import os

    if not os.environ.get("PREFECT_API_URL"):
        typer.echo("error: PREFECT_API_URL is not set; start a server (`prefect server start --host 127.0.0.1`) "
                   "and export PREFECT_API_URL=http://127.0.0.1:4200/api", err=True)
        raise typer.Exit(2)


def _deployment_or_exit(name: str) -> None:
    """The deployment must exist on a reachable server before the inbox is touched."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            client.read_deployment_by_name(name)
    except ObjectNotFound:
        typer.echo(f"error: no deployment {name!r} on the Prefect server; register it with "
                   "`alliance deploy --pool POOL`", err=True)
        raise typer.Exit(1) from None
    except Exception as exc:  # connection refused, DNS, TLS, HTTP errors: all mean the server is not usable
        typer.echo(f"error: cannot reach the Prefect server at {os.environ.get('PREFECT_API_URL')} "
                   f"({exc.__class__.__name__}: {exc})", err=True)
        raise typer.Exit(1) from None


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


def _inbox_or_exit(folder: Path | None) -> Path:
    if folder is None:
        typer.echo("error: no inbox folder; give --inbox DIR or set ALLIANCE_INBOX_DIR", err=True)
        raise typer.Exit(2)
    if not Path(folder).is_dir():
        what = "is not a folder" if Path(folder).exists() else "not found"
        typer.echo(f"error: inbox folder {folder} {what}", err=True)
        raise typer.Exit(2)
    return Path(folder)


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
    from pipeline.settings import Settings

    if fmt not in AUDIT_FORMATS:
        typer.echo(f"error: --format must be one of {', '.join(AUDIT_FORMATS)}. Got {fmt!r} instead.", err=True)
        raise typer.Exit(2)
    rows = Store.for_settings(Settings()).audit_rows(client_id=client)
    for line in format_audit(rows, fmt):
        typer.echo(line)


@app.command()
def purge(client: str = typer.Argument(..., help="Client pseudonym whose data is removed."),
          inbox: Optional[Path] = typer.Option(None, "--inbox", help="Also remove their files from this inbox.")
          ) -> None:
    """Remove everything about a client (session folders, database rows, inbox files, exported copies, Prefect's
    run records) and record that it was done; say what remains, exit 1 when anything does."""
    from flows.purge import ACTOR, purge_exports, purge_inbox_files, purge_session_folders
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
        typer.echo(f"error: inbox folder {inbox} not found; nothing was purged", err=True)
        raise typer.Exit(2)
    store = Store.for_settings(settings)
    rows = store.sessions(client_id=client)
    # files first, database rows last: a purge stopped half-way (or one that could not reach Prefect) can be run
    # again and still finds the client's session ids
    folders, left = purge_session_folders(rows, settings.data_dir, client)
    files = 0
    if folder is not None and Path(folder).is_dir():
        files, kept = purge_inbox_files(folder, client)
        left += kept
    else:
        recorded = sorted(r["recording_name"] for r in rows if r.get("recording_name"))
        if recorded:
            left.append(f"remains the recordings of {len(recorded)} session{'s' * (len(recorded) != 1)} of client "
                        f"{client} ({', '.join(recorded)}) in the nightly inbox's done/, failed/ or rejected/ folders, "
                        f"if still retained: run `alliance purge {client} --inbox DIR` (or set ALLIANCE_INBOX_DIR)")
    exports, remains = purge_exports(store, client)
    left += remains
    if not rows and not files and not exports and not left:
        typer.echo(f"No data found for client {client}; nothing was purged.")
        return
    import flows.store

    try:
        runs = flows.store.delete_prefect_runs({r["session_id"] for r in rows})
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
    summary = (f"{len(rows)} sessions, {folders} session folders, {files} inbox files, {exports} exported copies, "
               f"{runs} Prefect run records")
    store.audit("deleted", actor=ACTOR, outcome="partial" if left else "success", client_id=client,
                detail=f"purged {summary}" + (f"; {len(left)} items remain" if left else ""))
    typer.echo(f"Purged client {client}: {summary}.")
    if left:
        typer.echo(f"Not everything of client {client} was removed: {len(left)} items above remain.", err=True)
        raise typer.Exit(1)


@app.command("enroll-therapist")
def enroll_therapist(
    name: str = typer.Argument(..., help="Therapist id (letters, digits, '_', '.', '-')."),
    clips: list[Path] = typer.Argument(..., help="A few clean recordings of the therapist alone (5 s of speech or more)."),
    replace: bool = typer.Option(False, "--replace", help="Replace an existing profile of this name."),
) -> None:
    """Store a therapist's voice profile, so sessions naming them recognise the therapist by voice."""
    from rich.console import Console

    from pipeline.audio import decode
    from pipeline.embedders.resemblyzer_backend import ResemblyzerEmbedder
    from pipeline.errors import PipelineError
    from pipeline.profiles import enrol, profile_path
    from pipeline.settings import Settings

    console = Console(stderr=True)
    settings = Settings()
    try:
        if profile_path(settings.data_dir, name).exists() and not replace:
            _error(console, f"a voice profile for {name!r} already exists; "
                          "add --replace to overwrite it", soft_wrap=True)
            raise typer.Exit(1)
        recordings = [decode(c, settings=settings.audio) for c in clips]
        path = enrol(name, recordings, embedder=ResemblyzerEmbedder(), vad_settings=settings.vad,
                     data_dir=settings.data_dir)
    except PipelineError as exc:
        _error(console, f"{exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    typer.echo(f"Voice profile for {name} from {len(clips)} clips: {path}")


@app.command("eval-diarization")
def eval_diarization(
    audio: list[Path] = typer.Argument(..., help="Recordings; each file's stem is its id in the RTTM."),
    reference: Path = typer.Option(..., "--reference", help="Reference RTTM holding every file's turns."),
    speakers: Optional[int] = typer.Option(None, "--speakers", min=1, max=8,
                                           help="Speakers to find (default: the reference's true count)."),
    collar: float = typer.Option(0.5, "--collar", min=0.0, help="DER collar in seconds (0.5 = ±0.25 s)."),
    rttm_out: Optional[Path] = typer.Option(None, "--rttm-out", help="Folder to write each hypothesis RTTM."),
) -> None:
    """Diarize recordings and print DER, missed speech, false alarm and confusion against a reference RTTM."""
    from rich.console import Console
    from rich.table import Table

    from pipeline.embedders.resemblyzer_backend import ResemblyzerEmbedder
    from pipeline.errors import PipelineError
    from pipeline.evaluation import evaluate_diarization_file
    from pipeline.rttm import read_rttm, write_rttm
    from pipeline.settings import Settings

    console = Console()
    if not reference.is_file():
        _error(console, f"{reference.name}: reference RTTM not found (or not a file)", soft_wrap=True)
        raise typer.Exit(1)
    try:
        refs = read_rttm(reference)
    except (PipelineError, OSError, UnicodeDecodeError) as exc:
        _error(console, f"{reference.name}: cannot be read as RTTM ({exc})", soft_wrap=True)
        raise typer.Exit(1) from None
    if not refs:
        _error(console, f"{reference.name}: not an RTTM file (no SPEAKER lines)", soft_wrap=True)
        raise typer.Exit(1)
    settings, embedder = Settings(), ResemblyzerEmbedder()
    table = Table(title=f"Diarization against {reference.name} (pyannote.metrics, collar {collar:g} s = "
                        f"±{collar / 2:g} s, overlap scored)")
    for col in ("file", "speakers", "DER", "missed", "false alarm", "confusion", "scored speech"):
        table.add_column(col, justify="left" if col == "file" else "right", overflow="fold")
    failed = False
    for path in audio:
        if not path.is_file():
            _error(console, f"{path.name}: file not found; check the path")
            failed = True
            continue
        if path.stem not in refs:
            _error(console, f"{path.name}: no turns for '{path.stem}' in {reference.name}")
            failed = True
            continue
        try:
            score, result = evaluate_diarization_file(path, refs[path.stem], settings=settings, embedder=embedder,
                                                      num_speakers=speakers, collar_s=collar)
        except PipelineError as exc:
            _error(console, f"{exc}", soft_wrap=True)
            failed = True
            continue
        if rttm_out is not None:
            rttm_out.mkdir(parents=True, exist_ok=True)
            write_rttm(result, rttm_out / f"{path.stem}.rttm", uri=path.stem)
        pct = lambda s: f"{s:.2f} s ({100 * s / score.total_s:.1f} %)" if score.total_s else f"{s:.2f} s"  # noqa: E731
        table.add_row(path.name, str(len(result.speakers)), f"{100 * score.der:.1f} %", pct(score.missed_s),
                      pct(score.false_alarm_s), pct(score.confusion_s), f"{score.total_s:.2f} s")
    if table.row_count:
        console.print(table)
    if failed:
        raise typer.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    app()


@app.command()
def simulate(
    sessions: int = typer.Option(..., "--sessions", min=1, help="Number of sessions to write."),
    language: str = typer.Option(..., "--language", help="nl or en."),
    out: Path = typer.Option(..., "--out", help="Dataset folder (one subfolder per session)."),
    seed: int = typer.Option(0, "--seed", help="First seed; session i uses seed + i."),
    min_minutes: float = typer.Option(5.0, "--min-minutes", min=3.0, help="Shortest session, minutes (at least 3: "
                                      "every session holds a withdrawal and a confrontation episode of 45–120 s)."),
    max_minutes: float = typer.Option(20.0, "--max-minutes", min=3.0, help="Longest session, minutes."),
) -> None:
    """Write simulated, rupture-annotated sessions (espeak-ng voices) in the training format."""
    from rich.console import Console

    from models.simulate import espeak_available, simulate as run

    console = Console(stderr=True)
    if language not in ("nl", "en"):
        _error(console, f"--language must be nl or en. Got {language!r} instead.")
        raise typer.Exit(2)
    if min_minutes > max_minutes:
        _error(console, f"--min-minutes ({min_minutes:g}) is more than --max-minutes ({max_minutes:g})")
        raise typer.Exit(2)
    if not espeak_available():
        _error(console, "espeak-ng is not installed; run `make install` (it runs apt-get install espeak-ng)")
        raise typer.Exit(1)
    try:
        paths = run(out, sessions=sessions, language=language, seed=seed, minutes=(min_minutes, max_minutes))
    except (FileExistsError, ValueError) as exc:
        _error(console, str(exc))
        raise typer.Exit(1) from None
    typer.echo(f"Wrote {len(paths)} sessions to {out}")


def _print_metrics(title: str, result: dict) -> None:
    from models.training import format_metrics

    typer.echo(title)
    typer.echo(format_metrics(result))


@app.command()
def retrain(
    data: list[Path] = typer.Option(..., "--data", help="Dataset folder of annotated sessions (repeatable)."),
    version: str = typer.Option(..., "--version", help="Name of the new model (a folder under <data dir>/models)."),
    target_recall: float = typer.Option(0.8, "--target-recall", min=0.05, max=1.0,
                                        help="Recall the flag thresholds are chosen for."),
    holdout: list[Path] = typer.Option([], "--holdout", help="Sessions never trained on, scored into the card."),
    activate: bool = typer.Option(False, "--activate", help="Make the new model the active one."),
) -> None:
    """Train a classifier on annotated sessions: grouped cross-validation by client, thresholds, model card."""
    import re

    from rich.console import Console

    from models.artifact import user_models_dir
    from pipeline.errors import PipelineError
    from pipeline.settings import Settings

    console = Console(stderr=True)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", version):
        _error(console, f"--version must be letters, digits, '.', '_' or '-'. Got {version!r} instead.")
        raise typer.Exit(2)
    settings = Settings()
    if (user_models_dir(settings.data_dir) / version).exists():
        _error(console, f"model {version!r} already exists in {user_models_dir(settings.data_dir)}; models are never "
                        "overwritten, choose a new --version")
        raise typer.Exit(1)
    from models.dataset import discover_sessions

    try:
        # every dataset is checked (folders, metadata, research consent) before the flow starts: a refused
        # session stops the run in one line, before any analysis and without Prefect's traceback
        for d in [*data, *holdout]:
            discover_sessions(d)
    except PipelineError as exc:
        _error(console, str(exc))
        raise typer.Exit(1) from None
    from flows.retrain import retrain_model

    try:
        folder = retrain_model([str(d) for d in data], version, target_recall=target_recall,
                               holdout_dirs=[str(h) for h in holdout], activate=activate)
    except PipelineError as exc:
        _error(console, str(exc))
        raise typer.Exit(1) from None
    card = json.loads((Path(folder) / "model_card.json").read_text())
    _print_metrics(f"Cross-validation grouped by client ({card['metrics']['cross_validation']['n_splits']} folds):",
                   card["metrics"]["cross_validation"])
    if "heldout" in card["metrics"]:
        _print_metrics("Held-out sessions:", card["metrics"]["heldout"])
    typer.echo(f"Model: {folder}" + (" (active)" if activate else
                                     f"\nMake it active with: alliance activate-model {version}"))


@app.command()
def evaluate(
    data: list[Path] = typer.Option(..., "--data", help="Dataset folder of annotated sessions (repeatable)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder (default: the active model)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the metrics as JSON here."),
) -> None:
    """Score a saved model on annotated sessions at its own thresholds (AUROC, AUPRC, recall, precision, Brier)."""
    from rich.console import Console

    from models.artifact import active_model_path
    from models.training import evaluate as run, to_json
    from pipeline.errors import PipelineError
    from pipeline.settings import Settings

    console = Console(stderr=True)
    settings = Settings()
    try:
        result = run(model if model is not None else active_model_path(settings), data, settings,
                     progress=lambda m: console.print(m, markup=False))
    except PipelineError as exc:
        _error(console, str(exc))
        raise typer.Exit(1) from None
    _print_metrics(f"Model {result['model']} on {result['n_sessions']} sessions of {result['n_clients']} clients:",
                   result)
    if json_out is not None:
        json_out.write_text(to_json(result) + "\n")


@app.command("activate-model")
def activate_model_cmd(version: str = typer.Argument(..., help="A model in <data dir>/models/.")) -> None:
    """Make a retrained model the one the analysis and the nightly run use."""
    from rich.console import Console

    from models.artifact import activate_model
    from pipeline.errors import PipelineError
    from pipeline.settings import Settings

    try:
        folder = activate_model(Settings(), version)
    except PipelineError as exc:
        _error(Console(stderr=True), str(exc))
        raise typer.Exit(1) from None
    typer.echo(f"Active model: {folder}")


@app.command("add-therapist")
def add_therapist(therapist: str = typer.Argument(..., help="Login name: the therapist_id used in the sessions."),
                  password: str = typer.Option(..., "--password", prompt=True, hide_input=True,
                                               confirmation_prompt=True,
                                               help="At least 10 characters, at least 5 different ones, not only "
                                               "spaces, not containing the login name.")) -> None:
    """Create a therapist's login for `alliance web`, or reset its password (stored as an argon2id hash).

    A reset ends the login's open sessions in a running `alliance web` and enables a disabled login again.
    """
    from flows.store import Store
    from flows.web import hash_password
    from pipeline.ids import check_id
    from pipeline.settings import Settings

    try:
        check_id(therapist, "the login name")
        digest = hash_password(password, login=therapist)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    store = Store.for_settings(Settings())
    before = store.therapist(therapist)
    if not store.add_therapist(therapist, digest):
        store.audit("therapist login set", actor="alliance add-therapist", outcome="success", detail=therapist)
        typer.echo(f"Login for {therapist} saved.")
        return
    store.audit("therapist password reset", actor="alliance add-therapist", outcome="success", detail=therapist)
    if before and before.get("disabled_at"):
        store.audit("therapist login enabled", actor="alliance add-therapist", outcome="success", detail=therapist)
        typer.echo(f"Password of {therapist} reset; the login was disabled and is enabled again.")
    else:
        typer.echo(f"Password of {therapist} reset; its open sessions in alliance web end.")


def _login_or_exit(store, therapist: str) -> dict:
    """The login's row; for an unknown name one line and exit 1."""
    from pipeline.ids import is_valid_id

    row = store.therapist(therapist)
    if row is None:
        hint = f" (add it with `alliance add-therapist {therapist}`)" if is_valid_id(therapist) else ""
        typer.echo(f"error: no login named {therapist!r}{hint}", err=True)
        raise typer.Exit(1)
    return row


@app.command("disable-therapist")
def disable_therapist(therapist: str = typer.Argument(..., help="The login name.")) -> None:
    """Stop a login from logging in to `alliance web`; its open sessions end, its data and audit rows stay.

    `alliance add-therapist NAME` (a new password) enables it again.
    """
    from flows.store import Store
    from pipeline.settings import Settings

    store = Store.for_settings(Settings())
    row = _login_or_exit(store, therapist)
    if row.get("disabled_at"):
        typer.echo(f"{therapist} is already disabled (since {row['disabled_at']}).")
        return
    store.disable_therapist(therapist)
    store.audit("therapist login disabled", actor="alliance disable-therapist", outcome="success", detail=therapist)
    typer.echo(f"Login {therapist} disabled: it can no longer log in and its open sessions end; its sessions, "
               "reviews and audit rows are kept.")


@app.command("remove-therapist")
def remove_therapist(therapist: str = typer.Argument(..., help="The login name.")) -> None:
    """Delete a login of `alliance web`; its open sessions end. Its audit rows, sessions and reviews stay."""
    from flows.store import Store
    from pipeline.settings import Settings

    store = Store.for_settings(Settings())
    _login_or_exit(store, therapist)
    store.remove_therapist(therapist)
    store.audit("therapist login removed", actor="alliance remove-therapist", outcome="success", detail=therapist)
    typer.echo(f"Login {therapist} removed; its open sessions end. Its audit rows, sessions and reviews are kept.")


@app.command()
def web(port: int = typer.Option(8765, "--port", min=1024, max=65535, help="Port on 127.0.0.1."),
        language: Optional[str] = typer.Option(None, "--language", help="Interface language: nl (default) or en."),
        inbox: Optional[Path] = typer.Option(None, "--inbox", help="The nightly inbox, whose done/ folder holds the "
                                             "retained recordings for clips (default: ALLIANCE_INBOX_DIR).")) -> None:
    """Serve the review web app on this machine only (http://127.0.0.1:PORT)."""
    import errno
    import socket

    import uvicorn

    from flows.web import TEXT, create_app
    from pipeline.settings import Settings

    if language is not None and language not in TEXT:
        typer.echo(f"error: --language must be one of {', '.join(TEXT)}. Got {language!r} instead.", err=True)
        raise typer.Exit(2)
    settings = Settings()
    if inbox is not None:
        settings = settings.model_copy(update={"inbox_dir": inbox})
    # bind the port here (and hand the socket to uvicorn), so a busy port is one clear line, not uvicorn's log
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        problem = ("is already in use (another alliance web?); stop that program or choose another port with --port"
                   if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror}); choose another with --port")
        typer.echo(f"error: port {port} on 127.0.0.1 {problem}", err=True)
        raise typer.Exit(1) from None
    if settings.inbox_dir is None:
        typer.echo("note: no inbox given (--inbox or ALLIANCE_INBOX_DIR): flags cannot play their clips", err=True)
    # answer only to this server's own names: a rebound DNS name (DNS rebinding) gets 400
    app_ = create_app(settings, language=language, hosts={f"127.0.0.1:{port}", f"localhost:{port}"})
    typer.echo(f"Review app on http://127.0.0.1:{port}/ (Ctrl+C stops it)")
    # proxy_headers=False: served on loopback only, so an X-Forwarded-For header is never to be believed (it
    # would get around the per-address lockout and fake the audited address)
    uvicorn.Server(uvicorn.Config(app_, log_level="warning", proxy_headers=False)).run(sockets=[sock])


@app.command("export-reviews")
def export_reviews_cmd(out: Path = typer.Option(..., "--out", help="Folder for the annotated sessions."),
                       inbox: Optional[Path] = typer.Option(None, "--inbox", help="The nightly inbox whose done/ "
                                                            "folder holds the recordings (default: "
                                                            "ALLIANCE_INBOX_DIR).")) -> None:
    """Write the therapists' verdicts as annotated sessions that `alliance retrain` accepts.

    Only sessions whose consent allows research use are exported; each other session is named with its reason.
    """
    from flows.export import export_reviews
    from pipeline.settings import Settings

    settings = Settings()
    if inbox is not None:
        settings = settings.model_copy(update={"inbox_dir": inbox})
    if settings.inbox_dir is None:
        typer.echo("error: give the nightly inbox (--inbox DIR or ALLIANCE_INBOX_DIR): its done/ folder holds the "
                   "recordings", err=True)
        raise typer.Exit(2)
    blocked = next((p for p in [out, *out.parents] if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        typer.echo(f"error: --out {out}: {blocked} is a file, not a folder; give a folder", err=True)
        raise typer.Exit(2)
    # an export is data that leaves: inside the inbox or the data directory, purge and retention would take it for
    # their own files (and leave the recording behind)
    for name, owner in (("the nightly inbox", settings.inbox_dir), ("the data directory", settings.data_dir)):
        if Path(owner).resolve() in [out.resolve(), *out.resolve().parents]:
            typer.echo(f"error: --out {out} is inside {name} ({owner}); give a folder outside it", err=True)
            raise typer.Exit(2)
    try:
        result = export_reviews(settings, out)
    except OSError as exc:
        typer.echo(f"error: --out {out}: cannot write the export ({exc.strerror or exc}); sessions exported so "
                   "far are recorded for purge", err=True)
        raise typer.Exit(1) from None
    for line in result["skipped"]:
        typer.echo(f"skipped {line}", err=True)
    typer.echo(f"Exported {len(result['exported'])} reviewed sessions to {out}")


@app.command("convert-model")
def convert_model_cmd(
    model_dir: Optional[Path] = typer.Option(None, "--model-dir", help="A faster-whisper (CTranslate2) model folder "
                                             "(default: ALLIANCE_ASR__MODEL_DIR, else the bundled Whisper base)."),
    out: Optional[Path] = typer.Option(None, "--out", help="The .pt checkpoint to write (default: the one the "
                                       "openai-whisper backend loads, in the model cache)."),
) -> None:
    """Convert the faster-whisper model into an openai-whisper checkpoint (for --asr-backend openai-whisper).

    Always converts, so it also repairs a damaged checkpoint in the cache.
    """
    from pipeline.asr.convert import convert_model
    from pipeline.asr.model_store import resolve_checkpoint, resolve_model_dir
    from pipeline.errors import PipelineError
    from pipeline.settings import Settings

    s = Settings()
    source_dir = model_dir or s.asr.model_dir
    try:
        if out is None:
            # the same file (and the same reuse check) the backend uses, converted now
            target = resolve_checkpoint(None, model_dir=source_dir, cache_dir=s.model_cache_dir, reconvert=True)
        else:
            source = resolve_model_dir(source_dir, cache_dir=s.model_cache_dir)
            target = convert_model(source, out)
    except PipelineError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"openai-whisper checkpoint: {target}")
    if out is not None or (model_dir is not None and model_dir != s.asr.model_dir):
        typer.echo(f"use it with: ALLIANCE_ASR__CHECKPOINT={target.resolve()} alliance analyze ... "
                   "--asr-backend openai-whisper")
