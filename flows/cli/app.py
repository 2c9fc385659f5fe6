"""The ``alliance`` command group, its start-up checks and the helpers its command modules share.

The commands live by concern in the modules beside this one (:mod:`flows.cli.analyze`, :mod:`flows.cli.clinic`,
:mod:`flows.cli.therapists`, :mod:`flows.cli.review`, :mod:`flows.cli.research`); importing :mod:`flows.cli`
registers them all on :data:`app`.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer
import typer.core


def _error(console, message: str, *, label: str = "[red]error:[/red]", **_) -> None:
    """Print ``label message`` on one line: control characters escaped (:func:`pipeline.ids.one_line`, so a file name
    with a line break or a terminal escape cannot forge a line), and rich's markup escaped, so file names and "[nl]"
    are shown as they are."""
    from rich.markup import escape

    from pipeline.ids import display_line

    # a line break, a terminal escape, a right-to-left override are escaped; a repr()'d value keeps one backslash
    console.print(f"{label} {escape(display_line(message))}", soft_wrap=True)


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

        rest = [*getattr(ctx, "_protected_args", ()), *ctx.args]
        rest = rest[:rest.index("--")] if "--" in rest else rest
        ctx.meta["alliance.help_only"] = bool({"--help", "-h"} & set(rest))  # asks for help: write nothing
        try:
            return super().invoke(ctx)
        except ConfigError as exc:  # an unusable data folder or database, found by whichever command needed it
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None


# commands that only read or remove what earlier commands recorded (sessions, exports and Prefect's records live in
# the data folder whatever ALLIANCE_DATABASE_URL says): a missing data folder is a mistyped ALLIANCE_DATA_DIR (or
# nothing recorded yet), said as such instead of creating an empty folder
READS_RECORDED_DATA = frozenset({"audit", "purge", "export-reviews", "web", "disable-therapist", "remove-therapist"})
STOPPED = ("stopped ({how}): the work in progress was not kept (its unfinished files are removed); results "
           "already written are kept")


def stop_at_once_on_ctrl_c() -> None:
    """Make Ctrl-C stop a command within seconds, in one line.

    A terminal sends Ctrl-C to the whole foreground process group, Prefect's temporary API server included; a
    KeyboardInterrupt then left the flow reporting its crash to the stopped server for minutes, with a traceback
    per retry. Instead the scratch folders of the analyses in progress are removed
    (:func:`flows.analyze.discard_unfinished`), this command's child processes are ended (the server, pitch
    helpers, Dask workers) and the process exits with status 130 (128 + SIGINT). SIGTERM (``kill``, ``timeout``, a
    service manager), which reaches the command alone, is handled the same way (status 143). Every output is
    published whole or not at all, so nothing written earlier is lost. The web server keeps its own handling.
    Installed by
    the ``alliance`` program itself (:func:`flows.cli.run`), not when the app is called in-process (tests).
    """
    import signal
    import sys

    def stop(signum, frame) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not interrupt the clean-up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        analysis = sys.modules.get("flows.analyze")  # not imported: no analysis ran, nothing to tidy
        try:
            if analysis is not None:
                analysis.discard_unfinished()
        except Exception:  # noqa: BLE001 - stopping matters more than tidying
            pass
        try:
            import psutil

            children = psutil.Process().children(recursive=True)
            for child in children:
                child.kill()
            psutil.wait_procs(children, timeout=5)
        except Exception:  # noqa: BLE001
            pass
        try:
            sys.stderr.write("\n" + STOPPED.format(how="Ctrl-C" if signum == signal.SIGINT else "SIGTERM") + "\n")
            sys.stderr.flush()
        finally:
            os._exit(128 + signum)

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where Ctrl-C is ignored on purpose
        signal.signal(signal.SIGINT, stop)
    # `kill`, `timeout` or a service manager: the command alone gets SIGTERM, and its children (Prefect's temporary
    # server, answering on its port with the runs' parameters) were left running (trial, stop 44)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, stop)


app = typer.Typer(add_completion=False, no_args_is_help=True, cls=_Commands,
                  help="alliance-monitor: flags possible therapeutic-alliance ruptures for clinician review.")


@app.callback()
def main(ctx: typer.Context) -> None:
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
    from pipeline.ids import display_line
    from pipeline.settings import ensure_data_dir

    if ctx.meta.get("alliance.help_only"):
        return  # `alliance COMMAND --help` creates no data folder where it is run
    folder = Path(settings.data_dir)
    if ctx.invoked_subcommand in READS_RECORDED_DATA and not folder.exists() and not folder.is_symlink():
        # a mistyped ALLIANCE_DATA_DIR made an empty data folder, and `audit` then said no events were recorded
        what = ("nothing was purged (a purge finds the client's sessions there and records itself there)"
                if ctx.invoked_subcommand == "purge" else
                f"so there is nothing recorded for `alliance {ctx.invoked_subcommand}`")
        typer.echo(f"error: ALLIANCE_DATA_DIR: the data folder {display_line(str(folder.absolute()))} does not exist; "
                   f"{what}; check the setting", err=True)
        raise typer.Exit(2)
    try:
        ensure_data_dir(settings)  # every command writes there (Prefect's home too): an unusable one stops here
    except ConfigError as exc:
        typer.echo(f"error: {display_line(str(exc))}", err=True)
        raise typer.Exit(2) from None


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


def _inbox_or_exit(folder: Path | None) -> Path:
    if folder is None:
        typer.echo("error: no inbox folder; give --inbox DIR or set ALLIANCE_INBOX_DIR", err=True)
        raise typer.Exit(2)
    if not Path(folder).is_dir():
        from pipeline.ids import display_line

        what = "is not a folder" if Path(folder).exists() else "not found"
        typer.echo(f"error: inbox folder {display_line(str(folder))} {what}", err=True)
        raise typer.Exit(2)
    return Path(folder)


def _print_metrics(title: str, result: dict) -> None:
    from models.training import format_metrics

    typer.echo(title)
    typer.echo(format_metrics(result))
