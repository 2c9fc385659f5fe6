"""Build the shipped classifier from simulated sessions of both generators, in one command.

Simulates Dutch and English training sessions with both session generators
(``tts``, :mod:`models.simulate`, and ``rooms``, :mod:`models.simulate_rooms`)
and held-out sessions from seeds never used in training; builds the false-alarm
set from the real, rupture-free recordings the project ships (the phone call
``sample_audio/sample.wav``; sessions of the length asked for assembled by
:mod:`models.real_clips` as ``bench/end_to_end.py`` does: the call, the
meeting-room excerpts and the children's read English, the same plus the Dutch
read speech, and the Dutch read speech alone; and the constructed Dutch dialogue
of the shared reference data when it is there); with ``--assembled``, also
trains on rupture-free sessions of real speech those recordings do not use
(generator ``assembled``; measured and not the default, see ``docs/architecture.md``);
builds other real rupture-free recordings from clips those do not use, whose false alarms take part in
choosing the model kind (:func:`choice_set`); analyses everything with the flow the clinic runs; and trains with
leave-one-generator-out cross-validation (:func:`models.training.train`): a linear and a tree model
compared (on transfer across generators and on false alarms on real speech), calibrated probabilities,
thresholds chosen on the generator a fold did not train on. The
held-out sessions (per generator) and the flags per hour on the real recordings
go in the model card, beside a cross-language figure (trained on one language,
scored on the other). The artifact goes to ``models/artifacts/<version>/``
(write its name in ``models/artifacts/DEFAULT`` to ship it as the default); the
simulated sessions, the assembled recordings and the feature cache stay in the
data directory, so a second run only trains.

Usage::

    .venv/bin/python -m models.ship --version sim-v2 [--sessions-per-generator 6] [--holdout-sessions 2]
        [--min-minutes 5 --max-minutes 6] [--false-alarm-minutes 10] [--assembled] [--shared ../shared/data/real]
        [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from models.artifact import ARTIFACTS_DIR

ROOT = Path(__file__).resolve().parent.parent
GENERATORS = ("tts", "rooms")
# seeds per generator and language: training clients and held-out clients never share a seed range
SETS = {"train": {"tts": {"nl": 1000, "en": 2000}, "rooms": {"nl": 3000, "en": 4000}},
        "holdout": {"tts": {"nl": 9000, "en": 9500}, "rooms": {"nl": 8000, "en": 8500}}}
# recordings assembled from the shipped real clips (models/real_clips.py kinds) and the language the flow is given
FALSE_ALARM_SETS = {"conversation": (("en", "meeting"), "en"), "mixed": (("en", "nl", "meeting"), "auto"),
                    "dutch": (("nl",), "nl")}
# rupture-free training sessions of real speech (models/real_clips.py: assembled_sessions; --assembled), from the clips
# the false-alarm recordings do not use (pool-nl, pool-en), seeds from 200: (kinds, language) per session
ASSEMBLED_SEED = 200
ASSEMBLED_MIXES = (((("pool-nl",), "nl"), (("pool-en",), "en"), (("pool-nl", "pool-en"), "auto")) * 5
                   + ((("pool-nl",), "nl"),))
# real rupture-free recordings that take part in choosing the model kind (models/training.py: train, choice_dirs;
# models/transfer.py: choose_model): assembled from the clips the false-alarm recordings do not use, seeds from 300,
# never the recordings whose false alarms the card reports
CHOICE_SEED = 300
# twelve recordings (two hours): with six, two analyses of them that differed only in the ASR's sampled windows gave
# the linear and the tree model 13 and 5 flags, then 11 and 7, so one hour decided the choice on a few flags
CHOICE_MIXES = ((("pool-nl",), "nl"), (("pool-en",), "en"), (("pool-nl", "pool-en"), "auto")) * 4
DIALOGUE = Path("dutch/dialogue_constructed/dialogue_nl_2spk_constructed.wav")  # under the shared data


def simulated_sets(base: Path, *, sessions: int, holdout_sessions: int, minutes: tuple[float, float],
                   progress=print) -> dict[str, list[Path]]:
    """Simulate (if not there yet) the training and held-out sessions of both generators and languages.

    Parameters
    ----------
    base : Path
        Folder of simulated datasets (``<data dir>/simulated``).
    sessions, holdout_sessions : int >= 0
        Sessions per generator and language for training and held out.
    minutes : (float, float)
        Range of session lengths in minutes.

    Returns
    -------
    dict
        ``{"train": [dataset folders], "holdout": [...]}``, one folder per generator and language.

    Raises
    ------
    RuntimeError
        espeak-ng or pyroomacoustics missing (run ``make install``).
    """
    from models.simulate import simulate
    from models.simulate_rooms import simulate_rooms

    run = {"tts": simulate, "rooms": simulate_rooms}
    out: dict[str, list[Path]] = {"train": [], "holdout": []}
    for part, n in (("train", sessions), ("holdout", holdout_sessions)):
        if n < 1:
            continue
        for gen in GENERATORS:
            for lang, seed in SETS[part][gen].items():
                d = base / f"{gen}-{part}-{lang}-{seed}-{n}x{minutes[0]:g}-{minutes[1]:g}min"
                if not d.is_dir() or not any(d.iterdir()):
                    progress(f"simulating {n} {lang} sessions with generator {gen} ({part}) in {d}")
                    run[gen](d, sessions=n, language=lang, seed=seed, minutes=minutes)
                out[part].append(d)
    return out


def false_alarm_set(folder: Path, *, minutes: float, shared: Path | None, progress=print) -> Path:
    """Write the real, rupture-free recordings into ``folder`` (if not there yet), each with its sidecar.

    ``call.wav`` (``sample_audio/sample.wav``, 30 s), ``conversation.wav``, ``mixed.wav`` and ``dutch.wav``
    (about ``minutes`` minutes each, from :func:`models.real_clips.build` with seed 2, as
    ``bench/end_to_end.py`` builds them) and, when ``shared`` holds it, ``dutch-dialogue.wav`` (44 s). Each
    recording's sidecar ``NAME.wav.json`` gives the language the flow is told.

    Parameters
    ----------
    folder : Path
    minutes : float > 0
        Length of each assembled recording.
    shared : Path or None
        The shared reference data (``real/``), for the constructed Dutch dialogue.

    Returns
    -------
    Path
        ``folder``.
    """
    from models.real_clips import build  # reads the real clips from the checkout (test data, not package data)

    folder.mkdir(parents=True, exist_ok=True)

    def sidecar(wav: Path, language: str) -> None:
        wav.with_name(wav.name + ".json").write_text(json.dumps({"language": language}) + "\n", encoding="utf-8")

    call = folder / "call.wav"
    if not call.is_file():
        shutil.copyfile(ROOT / "sample_audio/sample.wav", call)
        sidecar(call, "en")
    for name, (kinds, language) in FALSE_ALARM_SETS.items():
        wav = folder / f"{name}.wav"
        if not wav.is_file():
            progress(f"assembling {minutes:g} minutes of real speech ({', '.join(kinds)}) in {wav}")
            build(minutes, wav, kinds, seed=2)
            sidecar(wav, language)
    if shared is not None and (shared / DIALOGUE).is_file() and not (folder / "dutch-dialogue.wav").is_file():
        shutil.copyfile(shared / DIALOGUE, folder / "dutch-dialogue.wav")
        sidecar(folder / "dutch-dialogue.wav", "nl")
    return folder


def choice_set(folder: Path, *, minutes: float, progress=print) -> Path:
    """Write the real rupture-free recordings that help choose the model kind into ``folder`` (if not there yet).

    One recording of about ``minutes`` minutes per entry of :data:`CHOICE_MIXES` (``choice-<i>.wav``, seed
    ``CHOICE_SEED + i``), assembled by :func:`models.real_clips.build` from the ``pool-nl`` and ``pool-en`` clips,
    which none of the false-alarm recordings (:func:`false_alarm_set`) uses, each with its sidecar giving the
    language. Every flag on them is a false alarm; their flags per hour take part in the choice between the
    linear and the tree model (:func:`models.transfer.choose_model`), so they must never be the recordings the
    card reports.

    Parameters
    ----------
    folder : Path
    minutes : float > 0
        Length of each assembled recording.

    Returns
    -------
    Path
        ``folder``.
    """
    from models.real_clips import build

    folder.mkdir(parents=True, exist_ok=True)
    for i, (kinds, language) in enumerate(CHOICE_MIXES):
        wav = folder / f"choice-{i}.wav"
        if not wav.is_file():
            progress(f"assembling {minutes:g} minutes of real speech ({', '.join(kinds)}) in {wav}")
            build(minutes, wav, kinds, seed=CHOICE_SEED + i)
            wav.with_name(wav.name + ".json").write_text(json.dumps({"language": language}) + "\n", encoding="utf-8")
    return folder


def cross_language(train_dirs: list[Path], settings, *, kind: str = "linear", c: float | None = None,
                   progress=print) -> dict:
    """A model of the shipped kind trained on one language's sessions (both generators), scored on the other's.

    Thresholds and confirmation levels come from the source language's own out-of-fold predictions, as for the
    shipped model.

    Parameters
    ----------
    train_dirs : list of Path
        Dataset folders; the language is read from the folder name (``-nl-``, ``-en-``).
    settings : Settings
    kind : {"linear", "hgb"}
        The model kind (the one :func:`models.training.train` chose for the shipped model).
    c : float > 0, optional
        The linear model's ``C`` (default :data:`models.training.LINEAR_C`); the tree model ignores it.

    Returns
    -------
    dict
        ``{"trained_nl_scored_en": evaluate_bundle(...), "trained_en_scored_nl": ...}``; ``{"skipped": why}``
        for a direction whose source language cannot be cross-validated (a rupture type missing from a generator).
    """
    from models.training import (CONFIRM_RECALL, CONTEXT_WINDOWS, SESSION_BASELINE, TARGET_RECALL,
                                 confirmation_levels, cross_validate, evaluate_bundle, fit_calibrated, load_dataset,
                                 model_inputs, shipped_thresholds, working_bundle)
    from pipeline.features import FEATURE_NAMES, MODEL_FEATURE_NAMES

    by_lang = {lang: [d for d in train_dirs if f"-{lang}-" in d.name] for lang in ("nl", "en")}
    from pipeline.errors import InputError

    out = {}
    for src, dst in (("nl", "en"), ("en", "nl")):
        data = load_dataset(by_lang[src], settings, progress=progress)
        # the shipped model's inputs: its markers, with the session baseline
        X = model_inputs(data["X"][:, [FEATURE_NAMES.index(n) for n in MODEL_FEATURE_NAMES]], data["sessions"],
                         SESSION_BASELINE)
        try:
            cv = cross_validate(X, data["y"], data["groups"], data["generators"], kind=kind,
                                sessions=data["sessions"], context=CONTEXT_WINDOWS, c=c)
        except InputError as exc:  # too few sessions of one language (a tiny build): say why, go on
            out[f"trained_{src}_scored_{dst}"] = {"skipped": str(exc)}
            continue
        model = fit_calibrated(kind, X, data["y"], data["groups"], data["generators"], c=c)
        thresholds, shipped = shipped_thresholds(model, X, data["y"], data["groups"], data["generators"],
                                                 target_recall=TARGET_RECALL, fallback=cv["thresholds"],
                                                 sessions=data["sessions"], context=CONTEXT_WINDOWS)
        confirm = (confirmation_levels(data["y"], shipped, thresholds, CONFIRM_RECALL, TARGET_RECALL)
                   if shipped is not None else {})
        bundle = working_bundle(model, thresholds, confirm, kind=kind, version=f"{src}-only")
        other = load_dataset(by_lang[dst], settings, progress=progress)
        out[f"trained_{src}_scored_{dst}"] = {"model": kind, **evaluate_bundle(bundle, other, by_group=True)}
    return out


def build(version: str, *, sessions_per_generator: int = 6, holdout_sessions: int = 2,
          minutes: tuple[float, float] = (5.0, 6.0), false_alarm_minutes: float = 10.0, shared: Path | None = None,
          assembled: bool = False, root: Path = ARTIFACTS_DIR, progress=print) -> Path:
    """Simulate, assemble, train, evaluate and save the shipped model; returns its folder.

    Parameters
    ----------
    version : str
        Artifact folder name (never overwritten), e.g. ``sim-v2``.
    sessions_per_generator : int >= 1
        Training sessions per generator and language (two sessions per client).
    holdout_sessions : int >= 0
        Held-out sessions per generator and language (seeds never used in training).
    minutes : (float, float)
        Range of simulated session lengths, minutes.
    false_alarm_minutes : float > 0
        Length of each assembled real rupture-free recording, minutes.
    assembled : bool
        Also train on the rupture-free sessions of real speech of :data:`ASSEMBLED_MIXES`
        (:func:`models.real_clips.assembled_sessions`; generator ``assembled``, scored for false positives only;
        clips the false-alarm recordings do not use).
    shared : Path, optional
        The shared reference data (``real/``), for the constructed Dutch dialogue.
    root : Path
        Folder of artifacts.

    Returns
    -------
    Path
        The artifact folder.

    Raises
    ------
    ValueError
        A size out of range.
    """
    from models.training import train
    from pipeline.settings import Settings

    if sessions_per_generator < 1 or holdout_sessions < 0 or false_alarm_minutes <= 0:
        raise ValueError(f"sessions per generator must be >= 1, held-out sessions >= 0 and false-alarm minutes > 0. "
                         f"Got {sessions_per_generator}, {holdout_sessions}, {false_alarm_minutes} instead.")
    settings = Settings()
    data = Path(settings.data_dir)
    sets = simulated_sets(data / "simulated", sessions=sessions_per_generator, holdout_sessions=holdout_sessions,
                          minutes=minutes, progress=progress)
    quiet = false_alarm_set(data / "real-rupture-free" / f"{false_alarm_minutes:g}min", minutes=false_alarm_minutes,
                            shared=shared, progress=progress)
    choice = choice_set(data / "real-rupture-free" / f"choice-{false_alarm_minutes:g}min", minutes=false_alarm_minutes,
                        progress=progress)
    train_dirs = list(sets["train"])
    if assembled:
        from models.real_clips import assembled_sessions

        folder = data / "assembled" / f"{len(ASSEMBLED_MIXES)}x{minutes[0]:g}-{minutes[1]:g}min-{ASSEMBLED_SEED}"
        progress(f"assembling {len(ASSEMBLED_MIXES)} rupture-free sessions of real speech in {folder}")
        assembled_sessions(folder, mixes=ASSEMBLED_MIXES, seed=ASSEMBLED_SEED, minutes=minutes)
        train_dirs.append(folder)
    def extra(kind: str, c: float | None) -> dict:  # measured with the kind (and C) train() chooses
        return {"cross_language": cross_language(sets["train"], settings, kind=kind, c=c, progress=progress)}
    summary = ("Trained on simulated sessions of two independent generators (espeak-ng voices with scripted "
               "ruptures; real and synthetic voices in simulated rooms; Dutch and English)"
               + (" and on rupture-free sessions assembled from public real speech" if assembled else "")
               + ", not on real therapy audio.")
    description = (f"Simulated by models/simulate.py (generator tts) and models/simulate_rooms.py (generator rooms) "
                   f"(models/ship.py: seeds {SETS['train']} for training, {SETS['holdout']} held out; "
                   f"{sessions_per_generator} training and {holdout_sessions} held-out sessions per generator and "
                   f"language, {minutes[0]:g}–{minutes[1]:g} minutes each, two sessions per client)."
                   + (f" Rupture-free: {len(ASSEMBLED_MIXES)} sessions (generator assembled) of the real clips in "
                      f"tests/data/speech_pool/ and tests/data/ami/tst00.flac (models/real_clips.py: "
                      f"assembled_sessions, seeds from {ASSEMBLED_SEED}), every window labelled no rupture."
                      if assembled else "")
                   + f" False alarms: the real recordings in {quiet.name} (models/ship.py: false_alarm_set). Model "
                     f"choice: also the flags per hour on {len(CHOICE_MIXES)} other real rupture-free recordings "
                     f"(models/ship.py: choice_set, the pool clips).")
    return train(train_dirs, version=version, settings=settings, root=root, holdout_dirs=sets["holdout"],
                 unannotated_dirs=[quiet], choice_dirs=[choice], summary=summary, description=description, extra_metrics=extra,
                 progress=progress)


def main() -> None:
    """Command line of ``python -m models.ship``: build the classifier, then print its card figures and folder.

    The options (see the module's text and ``--help``) are passed to
    :func:`build`. ``--shared`` is used only when the folder exists.

    Parameters
    ----------
    None
        Arguments are read from ``sys.argv``.

    Returns
    -------
    None

    Raises
    ------
    SystemExit
        A missing ``--version`` or a malformed option (argparse's message).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", required=True)
    parser.add_argument("--sessions-per-generator", type=int, default=6,
                        help="training sessions per generator and language")
    parser.add_argument("--holdout-sessions", type=int, default=2, help="held-out sessions per generator and language")
    parser.add_argument("--min-minutes", type=float, default=5.0)
    parser.add_argument("--max-minutes", type=float, default=6.0)
    parser.add_argument("--false-alarm-minutes", type=float, default=10.0,
                        help="length of each assembled real rupture-free recording")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared/data/real",
                        help="shared reference data, for the constructed Dutch dialogue (skipped when absent)")
    parser.add_argument("--assembled", action="store_true",
                        help="also train on rupture-free sessions of real speech the false-alarm recordings do not use")
    parser.add_argument("--out", type=Path, default=ARTIFACTS_DIR)
    args = parser.parse_args()
    from models.training import format_card_figures

    folder = build(args.version, sessions_per_generator=args.sessions_per_generator,
                   holdout_sessions=args.holdout_sessions, minutes=(args.min_minutes, args.max_minutes),
                   false_alarm_minutes=args.false_alarm_minutes,
                   shared=args.shared if args.shared.is_dir() else None, assembled=args.assembled,
                   root=args.out)
    print(format_card_figures(json.loads((folder / "model_card.json").read_text())))
    print(folder)


if __name__ == "__main__":
    main()
