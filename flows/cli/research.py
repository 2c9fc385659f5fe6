"""The researcher's commands: `eval-diarization`, `simulate`, `retrain`, `evaluate`, `activate-model`, `convert-model`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from flows.cli.app import _error, _print_metrics, app


@app.command("eval-diarization")
def eval_diarization(
    audio: list[Path] = typer.Argument(..., help="Recordings; each file's id in the RTTM is its stem, else its "
                                       "folder's name (a dataset session), else the only id in the RTTM."),
    reference: Path = typer.Option(..., "--reference", help="Reference RTTM holding every file's turns."),
    speakers: Optional[int] = typer.Option(None, "--speakers", min=1, max=8,
                                           help="Speakers to find (default: the reference's true count)."),
    collar: float = typer.Option(0.5, "--collar", min=0.0, help="DER collar in seconds (0.5 = ±0.25 s)."),
    rttm_out: Optional[Path] = typer.Option(None, "--rttm-out", help="Folder to write each hypothesis RTTM."),
) -> None:
    """Diarize recordings and print DER, missed speech, false alarm and confusion against a reference RTTM."""
    from rich.console import Console
    from rich.table import Table

    from pipeline.embedders import clustering_embedder
    from pipeline.errors import PipelineError
    from pipeline.evaluation import evaluate_diarization_file
    from pipeline.ids import one_line
    from pipeline.rttm import read_rttm, write_rttm
    from pipeline.settings import Settings

    console = Console()
    if rttm_out is not None:  # before any work: a file where the folder or one of its parents should be
        blocked = next((p for p in [rttm_out, *rttm_out.parents] if p.exists() and not p.is_dir()), None)
        if blocked is not None:
            _error(console, f"--rttm-out {one_line(str(rttm_out))}: {one_line(str(blocked))} is a file, not a "
                            "folder; give a folder", soft_wrap=True)
            raise typer.Exit(2)
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
    settings = Settings()
    try:
        embedder = clustering_embedder(settings.diarization)
    except PipelineError as exc:
        _error(console, str(exc), soft_wrap=True)
        raise typer.Exit(1) from None
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
        # the file's id in the RTTM: its stem; else its folder's name (a dataset session: <id>/recording.wav beside
        # <id>/reference.rttm); else the only id of a one-file RTTM
        uri = next((u for u in (path.stem, path.parent.name) if u in refs), next(iter(refs)) if len(refs) == 1 else None)
        if uri is None:
            _error(console, f"{path.name}: no turns for '{path.stem}' or '{path.parent.name}' in {reference.name}")
            failed = True
            continue
        try:
            score, result = evaluate_diarization_file(path, refs[uri], settings=settings, embedder=embedder,
                                                      num_speakers=speakers, collar_s=collar)
        except PipelineError as exc:
            _error(console, f"{exc}", soft_wrap=True)
            failed = True
            continue
        if rttm_out is not None:
            try:
                rttm_out.mkdir(parents=True, exist_ok=True)
                write_rttm(result, rttm_out / f"{path.stem}.rttm", uri=path.stem)
            except OSError as exc:
                _error(console, f"--rttm-out {one_line(str(rttm_out))}: cannot write there "
                                f"({exc.strerror or type(exc).__name__})", soft_wrap=True)
                raise typer.Exit(2) from None
        pct = lambda s: f"{s:.2f} s ({100 * s / score.total_s:.1f} %)" if score.total_s else f"{s:.2f} s"  # noqa: E731
        table.add_row(one_line(path.name), str(len(result.speakers)), f"{100 * score.der:.1f} %", pct(score.missed_s),
                      pct(score.false_alarm_s), pct(score.confusion_s), f"{score.total_s:.2f} s")
    if table.row_count:
        if not console.is_terminal:  # piped or redirected: one line per file, however wide, for whoever reads it
            console = Console(width=max(console.width, console.measure(
                table, options=console.options.update_width(10_000)).maximum))
        console.print(table)
    if failed:
        raise typer.Exit(1)


@app.command()
def simulate(
    sessions: int = typer.Option(..., "--sessions", min=1, help="Number of sessions to write."),
    language: str = typer.Option(..., "--language", help="nl or en."),
    out: Path = typer.Option(..., "--out", help="Dataset folder (one subfolder per session)."),
    seed: int = typer.Option(0, "--seed", help="First seed; session i uses seed + i."),
    min_minutes: float = typer.Option(5.0, "--min-minutes", min=3.0, help="Shortest session, minutes (at least 3: "
                                      "every session holds a withdrawal and a confrontation episode of 45–120 s)."),
    max_minutes: float = typer.Option(20.0, "--max-minutes", min=3.0, help="Longest session, minutes. Each "
                                      "session's length is drawn between the two and is approximate (its stretches "
                                      "of talk vary), so a session can end a little shorter or longer; a short one runs "
                                      "over by a minute or more when its two episodes need it."),
    generator: str = typer.Option("tts", "--generator", help="tts: espeak-ng voices (models/simulate.py); "
                                  "rooms: real and synthetic voices in simulated "
                                  "rooms, other phrasing, timing and rupture rules (models/simulate_rooms.py)."),
) -> None:
    """Write simulated, rupture-annotated sessions in the training format (generator tts or rooms)."""
    from rich.console import Console

    console = Console(stderr=True)
    if generator not in ("tts", "rooms"):
        _error(console, f"--generator must be tts or rooms. Got {generator!r} instead.")
        raise typer.Exit(2)
    if language not in ("nl", "en"):
        _error(console, f"--language must be nl or en. Got {language!r} instead.")
        raise typer.Exit(2)
    if min_minutes > max_minutes:
        _error(console, f"--min-minutes ({min_minutes:g}) is more than --max-minutes ({max_minutes:g})")
        raise typer.Exit(2)
    from models.simulate import espeak_available

    if not espeak_available():
        _error(console, "espeak-ng is not installed; run `make install` (it runs apt-get install espeak-ng)")
        raise typer.Exit(1)
    if generator == "rooms":
        from models.simulate_rooms import simulate_rooms as run
    else:
        from models.simulate import simulate as run
    try:
        paths = run(out, sessions=sessions, language=language, seed=seed, minutes=(min_minutes, max_minutes))
    except (FileExistsError, ValueError, RuntimeError) as exc:
        _error(console, str(exc))
        raise typer.Exit(1) from None
    typer.echo(f"Wrote {len(paths)} sessions to {out}")


@app.command()
def retrain(
    data: list[Path] = typer.Option(..., "--data", help="Dataset folder of annotated sessions (repeatable)."),
    version: str = typer.Option(..., "--version", help="Name of the new model (a folder under <data dir>/models)."),
    target_recall: float = typer.Option(0.8, "--target-recall", min=0.05, max=1.0,
                                        help="Recall the flag thresholds are chosen for."),
    holdout: list[Path] = typer.Option([], "--holdout", help="Sessions never trained on, scored into the card."),
    unannotated: list[Path] = typer.Option([], "--unannotated", help="Folder of real recordings without ruptures "
                                           "(repeatable): the new model's flags per hour on them go in the card."),
    choose_on: list[Path] = typer.Option([], "--choose-on", help="Folder of other real recordings without ruptures "
                                         "(repeatable, not an --unannotated one): the linear and the tree model's "
                                         "flags per hour on them take part in choosing between them."),
    activate: bool = typer.Option(False, "--activate", help="Make the new model the active one."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first session that cannot be used, instead of "
                                "setting it aside (named, and listed in the card) and training on the rest."),
) -> None:
    """Train a classifier on annotated sessions: leave-one-generator-out (else by client) cross-validation,
    a linear and a tree model compared, calibrated probabilities, thresholds, model card."""
    import re

    from rich.console import Console

    from models.artifact import user_models_dir
    from pipeline.errors import PipelineError
    from pipeline.settings import Settings

    console = Console(stderr=True)
    from models.artifact import ARTIFACTS_DIR, MODEL_NAME

    if not re.fullmatch(MODEL_NAME, version):
        _error(console, "--version must be 1 to at most 64 letters, digits, '.', '_' or '-', starting with a letter or "
                        f"digit. Got {version[:40]!r}{'...' if len(version) > 40 else ''} ({len(version)} "
                        "characters) instead.")
        raise typer.Exit(2)
    taken = {"default", *(p.name.lower() for p in ARTIFACTS_DIR.iterdir())}  # in any case: shares may ignore it
    if version.lower() in taken:
        _error(console, f"--version {version!r} is the name of a shipped model (or 'default'); choose another name")
        raise typer.Exit(2)
    settings = Settings()
    if (user_models_dir(settings.data_dir) / version).exists():
        _error(console, f"model {version!r} already exists in {user_models_dir(settings.data_dir)}; models are never "
                        "overwritten, choose a new --version")
        raise typer.Exit(1)
    from models.dataset import discover_sessions
    from models.false_alarms import find_recordings

    _check_settings(console)
    try:
        # every dataset is checked (folders, metadata, research consent) before the flow starts. A session that
        # cannot be used is set aside and named by the flow (or, with --strict, stops the run in one line, before
        # any analysis and without Prefect's traceback); a dataset with no usable session stops it here
        for d in [*data, *holdout]:
            aside: list[dict] = []
            if not discover_sessions(d, set_aside=None if strict else aside):
                from pipeline.ids import one_line

                for entry in aside:
                    _error(console, f"set aside {one_line(entry['session'])}: {entry['why']}")
                _error(console, f"{one_line(str(d))}: no session of the dataset could be used (each is named "
                                "above)")
                raise typer.Exit(1)
        for d in unannotated:
            find_recordings(d)
        for d in choose_on:
            if not d.is_dir():
                from pipeline.ids import one_line

                what = "a file, not a folder" if d.exists() else "not found"
                _error(console, f"--choose-on {one_line(str(d))}: {what}; give a folder of real recordings without "
                                "ruptures")
                raise typer.Exit(1)
            try:
                find_recordings(d)
            except PipelineError as exc:
                _error(console, f"--choose-on: {exc}")
                raise typer.Exit(1) from None
        if choose_on:
            from models.false_alarms import check_choice_apart

            try:
                check_choice_apart([*data, *holdout, *unannotated], choose_on)
            except PipelineError as exc:
                _error(console, f"--choose-on: {exc}")
                raise typer.Exit(2) from None
        if holdout:
            from models.training import check_holdout_apart

            check_holdout_apart(data, holdout, strict=strict)
    except PipelineError as exc:
        _error(console, str(exc))
        raise typer.Exit(1) from None
    from flows.nightly import failures_to_debug
    from flows.retrain import retrain_model

    try:
        with failures_to_debug():  # an input error is one line below, not Prefect's traceback first
            folder = retrain_model([str(d) for d in data], version, target_recall=target_recall,
                                   holdout_dirs=[str(h) for h in holdout],
                                   unannotated_dirs=[str(u) for u in unannotated], activate=activate,
                                   choice_dirs=[str(c) for c in choose_on], strict=strict)
    except PipelineError as exc:
        _error(console, str(exc))
        raise typer.Exit(1) from None
    _print_card(json.loads((Path(folder) / "model_card.json").read_text()))
    typer.echo(f"Model: {folder}" + (" (active)" if activate else
                                     f"\nMake it active with: alliance activate-model {version}"))


def _check_settings(console) -> None:
    """Stop with exit 2 when a setting every session's analysis reads is unusable (the word lists), before any
    session: blamed on each session in turn, it set every one aside (third trial, stop 43)."""
    from flows.analyze import check_lexicon
    from pipeline.errors import PipelineError
    from pipeline.settings import Settings

    try:
        check_lexicon(Settings())
    except PipelineError as exc:
        _error(console, str(exc))
        raise typer.Exit(2) from None


def _print_card(card: dict) -> None:
    """The retrained model's figures (:func:`models.training.format_card_figures`)."""
    from models.training import format_card_figures

    typer.echo(format_card_figures(card))


@app.command()
def evaluate(
    data: list[Path] = typer.Option([], "--data", help="Dataset folder of annotated sessions (repeatable)."),
    unannotated: list[Path] = typer.Option([], "--unannotated", help="Folder of real recordings without ruptures "
                                           "(repeatable): every audio file under it is analysed and its flags per "
                                           "hour printed."),
    by_generator: bool = typer.Option(False, "--by-generator", help="Also print the figures per session generator "
                                      "and per --data folder."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder (default: the active model)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the metrics as JSON here."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first annotated session that cannot be used, "
                                "instead of setting it aside (named) and scoring the rest."),
) -> None:
    """Score a saved model at its own thresholds: AUROC, AUPRC, recall, precision, Brier and calibration on
    annotated sessions; flags per hour on real recordings without ruptures."""
    from rich.console import Console

    from models.artifact import active_model_path
    from models.false_alarms import format_false_alarms
    from models.training import counted, evaluate as run, format_breakdown, to_json
    from pipeline.errors import PipelineError
    from pipeline.settings import Settings

    console = Console(stderr=True)
    if not data and not unannotated:
        _error(console, "give --data or --unannotated (or both): there is nothing to evaluate")
        raise typer.Exit(2)
    if json_out is not None and (json_out.is_dir() or not json_out.parent.is_dir()):
        _error(console, f"--json {json_out}: " + ("is a folder; give a file name" if json_out.is_dir() else
                                                 f"folder {json_out.parent} not found"))
        raise typer.Exit(2)
    if json_out is not None and json_out.exists() and not json_out.is_file():  # a pipe would wait for a reader
        _error(console, f"--json {json_out}: is not a regular file; give a file name")
        raise typer.Exit(2)
    if json_out is not None:  # a place where the file cannot be made (/proc, a read-only folder): say so now
        existed = json_out.exists()
        try:
            with open(json_out, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            _error(console, f"--json {json_out}: cannot be written ({exc.strerror or type(exc).__name__}); give "
                            "another file")
            raise typer.Exit(2) from None
        if not existed:
            json_out.unlink(missing_ok=True)
    settings = Settings()
    _check_settings(console)
    try:
        result = run(model if model is not None else active_model_path(settings), data, settings,
                     unannotated_dirs=unannotated, by_group=by_generator, strict=strict,
                     progress=lambda m: console.print(m, markup=False, soft_wrap=True))  # one line each
    except PipelineError as exc:
        _error(console, str(exc))
        raise typer.Exit(1) from None
    if data:
        _print_metrics(f"Model {result['model']} on {counted(result['n_sessions'], 'session', 'sessions')} of "
                       f"{counted(result['n_clients'], 'client', 'clients')}:", result)
        if by_generator:
            typer.echo(format_breakdown(result))
        if result.get("skipped"):
            typer.echo(f"{counted(len(result['skipped']), 'session', 'sessions')} set aside (named above); the "
                       f"figures are on the other {result['n_sessions']}.")
    if unannotated:
        fa = result["false_alarms"]
        levels = "".join(f"; {k} confirmation level {v:.3f}" for k, v in fa.get("confirm", {}).items()
                         if v > fa["thresholds"].get(k, 0))
        typer.echo(f"Model {result['model']} on real recordings without ruptures (every flag is a false alarm; "
                   f"thresholds {', '.join(f'{k} {v:.3f}' for k, v in fa['thresholds'].items())}{levels}):")
        typer.echo(format_false_alarms(fa))
    if json_out is not None:
        try:
            json_out.write_text(to_json(result) + "\n")
        except OSError as exc:  # removed or made read-only while the evaluation ran
            _error(console, f"--json {json_out}: cannot be written ({exc.strerror or type(exc).__name__}); the "
                            "figures above are complete")
            raise typer.Exit(1) from None
    if unannotated and not result["false_alarms"]["overall"]["files"]:
        # every recording was set aside (each named above): nothing was evaluated, which is not a success
        _error(console, "--unannotated: no recording could be analysed (each was set aside, above); no false-alarm "
                        "figure was measured")
        raise typer.Exit(1)


@app.command("activate-model")
def activate_model_cmd(version: str = typer.Argument(..., help="A model in <data dir>/models/, or 'default' for "
                                                  "the shipped model.")) -> None:
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
