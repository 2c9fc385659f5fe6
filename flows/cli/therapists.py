"""Therapists: their voice profile (`enroll-voice`) and their login to the review app (`add-`, `disable-`,
`remove-therapist`). Two different things: a voice profile lets the analysis recognise the therapist in a
recording; a login lets the therapist open their sessions in `alliance web`. `enroll-therapist` is the old,
hidden name of `enroll-voice`."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli.app import _error, app


def enroll_voice(
    name: str = typer.Argument(..., help="Therapist id (letters, digits, '_', '.', '-')."),
    clips: list[Path] = typer.Argument(..., help="A few clean recordings of the therapist alone (5 s of speech or more)."),
    replace: bool = typer.Option(False, "--replace", help="Replace an existing profile of this name."),
) -> None:
    """Store a therapist's voice profile, so sessions naming them recognise the therapist by voice.

    This is not a login to the review app: that is `alliance add-therapist NAME`.
    """
    from rich.console import Console

    from pipeline.audio import decode, recording_sha256
    from pipeline.embedders.resemblyzer_backend import ResemblyzerEmbedder
    from pipeline.errors import PipelineError
    from pipeline.ids import one_line
    from pipeline.profiles import enrol, profile_path, same_audio
    from pipeline.settings import Settings

    console = Console(stderr=True)
    settings = Settings()
    try:
        if profile_path(settings.data_dir, name).exists() and not replace:
            _error(console, f"a voice profile for {name!r} already exists; "
                          "add --replace to overwrite it", soft_wrap=True)
            raise typer.Exit(1)
        first: dict[str, Path] = {}  # content → the clip that has it: one recording given twice is not more speech
        for c in clips:
            if not c.is_file():
                continue  # decoding names what it is instead
            digest = recording_sha256(c)
            if digest in first:
                _error(console, f"{one_line(c.name)}: the same recording as {one_line(first[digest].name)}; give each "
                                "clip once (the profile needs 5 s of speech over different clips)", soft_wrap=True)
                raise typer.Exit(1)
            first[digest] = c
        recordings = [decode(c, settings=settings.audio, keep_channels=True) for c in clips]
        for j, later in enumerate(recordings):  # the same audio saved again (another format, depth, channels)
            twin = next((r for r in recordings[:j] if same_audio(r.samples, later.samples, r.sample_rate_hz)), None)
            if twin is not None:
                _error(console, f"{one_line(clips[j].name)}: the same recording as "
                                f"{one_line(clips[recordings.index(twin)].name)}; give each clip once (the profile "
                                "needs 5 s of speech over different clips)", soft_wrap=True)
                raise typer.Exit(1)
        path = enrol(name, recordings, embedder=ResemblyzerEmbedder(), vad_settings=settings.vad,
                     data_dir=settings.data_dir)
    except PipelineError as exc:
        _error(console, f"{exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    typer.echo(f"Voice profile for {name} from {len(clips)} clip{'s' * (len(clips) != 1)}: {path}")


app.command("enroll-voice")(enroll_voice)
# the old name, in scripts and earlier READMEs: still works, no longer listed
app.command("enroll-therapist", hidden=True,
            help="Old name of `alliance enroll-voice`: store a therapist's voice profile (not a login).")(enroll_voice)


def read_password(therapist: str) -> str:
    """The new password: asked twice, hidden, on a terminal; otherwise the first line of standard input.

    Without a terminal :func:`getpass.getpass` cannot hide what is typed and prints a ``GetPassWarning``;
    a script pipes the password in instead (``printf '%s\\n' "$PASSWORD" | alliance add-therapist NAME``).

    Parameters
    ----------
    therapist : str
        The login name (for the prompt).

    Returns
    -------
    str
        The password, without the line's end; spaces are kept (the policy judges them).

    Raises
    ------
    typer.Exit
        Code 2 when standard input holds no line at all.
    """
    import sys

    if sys.stdin.isatty():
        return typer.prompt(f"New password for {therapist}", hide_input=True, confirmation_prompt=True)
    line = sys.stdin.readline()
    if not line:
        typer.echo("error: no password on standard input (give it as the first line, or run add-therapist in a "
                   "terminal to be asked for it)", err=True)
        raise typer.Exit(2)
    return line.removesuffix("\n").removesuffix("\r")


@app.command("add-therapist")
def add_therapist(therapist: str = typer.Argument(..., help="Login name: the therapist_id used in the sessions."),
                  password: str | None = typer.Option(None, "--password",
                                                      help="At least 10 characters, at least 5 different ones, not "
                                                      "only spaces, not containing the login name. Better left out "
                                                      "(a command line is visible to other users): on a terminal "
                                                      "it is asked for, hidden, twice; otherwise it is the first "
                                                      "line of standard input.")) -> None:
    """Create a therapist's login for `alliance web`, or reset its password (stored as an argon2id hash).

    A reset ends the login's open sessions in a running `alliance web` and enables a disabled login again.
    This is not a voice profile for the analysis: that is `alliance enroll-voice NAME CLIP...`.
    """
    from flows.store import Store
    from flows.web import hash_password
    from pipeline.ids import check_id
    from pipeline.settings import Settings

    try:
        check_id(therapist, "the login name")
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if password is None:
        password = read_password(therapist)
    try:
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
