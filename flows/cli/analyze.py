"""`alliance analyze`: one recording, now, with progress bars."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from flows.cli.app import ASR_BACKEND_HELP, _error, _use_asr_backend, app


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

    from pipeline.ids import one_line

    try:  # the name goes into the session's outputs, Prefect's database and the logs, all UTF-8
        str(recording).encode("utf-8")
    except UnicodeEncodeError:
        _error(console, f"{one_line(recording.name)}: the file name is not valid UTF-8; rename the recording "
                        "(letters, digits, '-' and '_') and run again")
        raise typer.Exit(2) from None
    from pipeline.audio import probe
    from pipeline.sidecar import Sidecar, refuse_without_consent
    from pipeline.profiles import load_profile
    from pipeline.settings import Settings

    # cheap checks first: a missing, empty or non-audio file, bad metadata or an unusable output folder
    # fails before any work starts
    try:
        probe(recording, settings=Settings().audio)  # the configured longest recording, not the default
        if metadata is not None:
            Sidecar.load(metadata)
            refuse_without_consent(metadata)
        if therapist:
            load_profile(Settings().data_dir, therapist)
    except PipelineError as exc:
        _error(console, f"{exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    from flows import discard_unused_prefect_home
    from flows.analyze import check_models

    try:  # a missing or damaged model, or unusable weights, before Prefect starts: a bad setting, as in `nightly`
        check_models(Settings())
    except PipelineError as exc:
        discard_unused_prefect_home()
        _error(console, f"{exc}", soft_wrap=True)
        raise typer.Exit(2) from None
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
        unusable = _unusable_out(out, Settings().data_dir, _session_id_in_force(recording, session_id, metadata))
        if unusable is not None:
            _error(console, unusable, soft_wrap=True)
            raise typer.Exit(2)
        if (out / "session.json").exists():
            console.print(f"note: replacing the earlier results in {out}", soft_wrap=True)

    from flows.analyze import STAGES, analyze_session, preload_analysis, session_folder_path
    from flows.nightly import failures_to_debug

    preload_analysis()  # the analysis' imports while Prefect starts the run

    with Progress(TextColumn("{task.description:<12}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        bars = {s: progress.add_task(s, total=1.0) for s in STAGES}
        try:
            with failures_to_debug():  # a bad recording is one line below, not Prefect's two tracebacks
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
    for line in closing_lines(report, session_folder_path(Settings().data_dir, report.session_id, out)):
        typer.echo(line)


def closing_lines(report, folder: Path) -> list[str]:
    """What the command prints when the analysis is done: where the report is, what it found, what next.

    Parameters
    ----------
    report : SessionReport
        The analysis' report (only its flags are read; never what was said).
    folder : Path
        The session folder holding ``report.html`` and ``session.json``.

    Returns
    -------
    list of str
        The report's path and its ``file://`` address to open in a browser, the session data's path, how many
        stretches are to review (or that none is), and how to reach the review app.
    """
    from pipeline.i18n import text
    from pipeline.report import nothing_judged

    html = Path(folder).absolute() / "report.html"
    n = len(report.flags)
    found = ("The model pointed out no stretch: nothing in this session needs review (the report says why "
             "that is not a diagnosis)." if n == 0 else
             f"{n} stretch{'' if n == 1 else 'es'} to review: see the report's summary.")
    unjudged = nothing_judged(report.warnings)
    if unjudged:  # as the report's summary: no speech, or none of it enough to judge
        found = text(f"report.{unjudged}", "en")
    return [f"Report: {html}", f"Open it in a browser: {html.as_uri()}",
            f"Session data: {Path(folder).absolute() / 'session.json'}", found,
            "Review app: create a login once with `alliance add-therapist NAME`, then `alliance web` serves "
            "http://127.0.0.1:8765/. It lists the sessions the nightly inbox analysed for that therapist "
            "(`alliance nightly`), not a single `alliance analyze` like this one; README, 'Review web app'."]


SESSION_OUTPUTS = ("report.html", "report.nl.html", "report.en.html", "transcript.json", "diarization.rttm",
                   "features.csv", "utterance_markers.csv")


def _unusable_out(out: Path, data_dir: Path, session_id: str | None = None) -> str | None:
    """Why ``out`` cannot take a session's results, or None: it is the data folder, holds it or lies in it other than
    as ``sessions/<id>`` (with ``session_id`` given: this session's id); it holds recordings (an inbox's ``done/``);
    it holds files of the names a session writes but no session; or it cannot be created or
    written (``/proc``, a read-only disk). Checked before any work; a folder made here is private."""
    import tempfile

    from pipeline.ids import make_private_dir

    resolved, data = out.resolve(), Path(data_dir).resolve()
    if resolved == data or resolved in data.parents:
        return f"--out {out}: is the service's data folder or holds it; give a folder of its own"
    elsewhere = session_id is not None and resolved.name != session_id  # another session's folder
    if data in resolved.parents and (resolved.parent != data / "sessions" or elsewhere):
        return (f"--out {out}: is a folder in the service's data folder other than sessions/<session id>"
                f"{f' (sessions/{session_id})' if session_id else ''}; leave out --out or give a folder of its own "
                "outside it")
    if out.is_dir():
        from pipeline.audio import AUDIO_SUFFIXES

        recordings = sorted(p.name for p in out.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
        if recordings:  # an inbox's done/ holds other clients' recordings and their consent records
            from pipeline.ids import one_line

            shown = ", ".join(one_line(n) for n in recordings[:3]) + (", ..." if len(recordings) > 3 else "")
            return (f"--out {out}: holds recordings ({shown}); a session's results go in a folder of their own, "
                    "never beside recordings")
    if out.is_dir() and not (out / "session.json").exists():
        theirs = sorted(n for n in SESSION_OUTPUTS if (out / n).exists())
        if theirs:
            return (f"--out {out}: holds {', '.join(theirs)} but no session results; they would be overwritten, "
                    "so give an empty folder or a new one")
    made = [p for p in [out, *out.parents] if not p.exists()]  # what this check creates, deepest first
    try:
        if not out.exists():
            make_private_dir(out)  # a folder the user already has keeps its mode; the files written are 0600
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        return f"--out {out}: cannot write there ({exc.strerror or exc}); give a folder you can write to"
    finally:  # the flow makes the folder itself when it writes; a run refused later then leaves nothing behind
        for p in made:
            try:
                p.rmdir()
            except OSError:
                break
    return None


def _session_id_in_force(recording: Path, session_id: str | None, metadata: Path | None, meta=None) -> str:
    """The session id the analysis will use: ``--session-id``, else the metadata's, else one made from the file name."""
    from pipeline.ids import id_from_name
    from pipeline.sidecar import Sidecar

    if session_id:
        return session_id
    if meta is None:
        meta = Sidecar.load(metadata) if metadata is not None else Sidecar()
    return meta.session_id or id_from_name(recording.stem)


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
    sid = _session_id_in_force(recording, session_id, metadata, meta)
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
    # the results of another recording under the same id (a default id from the file name: sample.mp3 and
    # sample.wav are both 'sample'); analysing the same recording again replaces its own results
    before = (earlier.get("recording") or {}).get("path") if isinstance(earlier, dict) else None
    if isinstance(before, str) and Path(before).name != recording.name:  # the name: the path may be relative
        return (f"{folder} holds the results of session {sid!r} from another recording ({Path(before).name}); give "
                "this session its own --session-id (or --out)")
    return None
