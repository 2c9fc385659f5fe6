"""The review app (`web`) and the export of its verdicts as training data (`export-reviews`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from flows.cli.app import _inbox_or_exit, app


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
    from pipeline.ids import display_line
    from pipeline.settings import Settings

    if language is not None and language not in TEXT:
        typer.echo(f"error: --language must be one of {', '.join(TEXT)}. Got {language!r} instead.", err=True)
        raise typer.Exit(2)
    settings = Settings()
    if inbox is not None:  # a mistyped --inbox started the app without a word (trial, stop 44)
        settings = settings.model_copy(update={"inbox_dir": _inbox_or_exit(inbox)})
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
    elif not Path(settings.inbox_dir).is_dir():
        typer.echo(f"note: the inbox {display_line(str(settings.inbox_dir))} (ALLIANCE_INBOX_DIR) is not a folder: "
                   "flags cannot play their clips", err=True)
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
    from pipeline.ids import one_line
    from pipeline.settings import Settings

    settings = Settings()
    shown = one_line(str(out))  # a path with a line break must not print a line of its own
    if inbox is not None:
        settings = settings.model_copy(update={"inbox_dir": inbox})
    if settings.inbox_dir is None:
        typer.echo("error: give the nightly inbox (--inbox DIR or ALLIANCE_INBOX_DIR): its done/ folder holds the "
                   "recordings", err=True)
        raise typer.Exit(2)
    if not Path(settings.inbox_dir).is_dir():  # a mistyped inbox would look like nothing to export (trial)
        what = "is not a folder" if Path(settings.inbox_dir).exists() else "not found"
        typer.echo(f"error: the nightly inbox {one_line(str(settings.inbox_dir))} {what} (--inbox or "
                   "ALLIANCE_INBOX_DIR); its done/ folder holds the recordings", err=True)
        raise typer.Exit(2)
    done = Path(settings.inbox_dir) / "done"
    if done.exists() and not done.is_dir():  # the retained recordings are there: a file would hide them (trial)
        typer.echo(f"error: {one_line(str(done))} is not a folder; the nightly inbox keeps the analysed recordings "
                   "there", err=True)
        raise typer.Exit(2)
    blocked = next((p for p in [out, *out.parents] if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        typer.echo(f"error: --out {shown}: {one_line(str(blocked))} is a file, not a folder; give a folder", err=True)
        raise typer.Exit(2)
    # an export is data that leaves: inside the inbox or the data directory, purge and retention would take it for
    # their own files (and leave the recording behind)
    for name, owner in (("the nightly inbox", settings.inbox_dir), ("the data directory", settings.data_dir)):
        if Path(owner).resolve() in [out.resolve(), *out.resolve().parents]:
            typer.echo(f"error: --out {shown} is inside {name} ({owner}); give a folder outside it", err=True)
            raise typer.Exit(2)
    try:  # a folder that cannot be made or written (/proc, a read-only disk) is said now, with or without sessions
        import tempfile

        from pipeline.ids import make_private_dir

        if not out.exists():
            make_private_dir(out)  # the folders it makes are 0700 (an existing one keeps its mode)

        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        typer.echo(f"error: --out {shown}: cannot be made or written ({exc.strerror or type(exc).__name__}); give "
                   "another folder", err=True)
        raise typer.Exit(2) from None
    try:
        result = export_reviews(settings, out)
    except OSError as exc:
        typer.echo(f"error: --out {shown}: cannot write the export ({exc.strerror or exc}); sessions exported so "
                   "far are recorded for purge", err=True)
        raise typer.Exit(1) from None
    for line in result["skipped"]:
        typer.echo(f"skipped {line}", err=True)
    for line in result["left_out"]:  # of a session that was exported (5 December trial: it read "skipped")
        typer.echo(f"exported {line}", err=True)
    typer.echo(f"Exported {len(result['exported'])} reviewed sessions to {shown}")
