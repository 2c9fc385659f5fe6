"""Build the shipped classifier from simulated sessions, in one command.

Simulates Dutch and English training sessions and held-out sessions from seeds
never used in training (:mod:`models.simulate`), analyses them with the same
flow the clinic runs, trains with grouped cross-validation by client
(:mod:`models.training`), scores the held-out sessions into the model card,
and measures the cross-language transfer (a model trained on the Dutch
sessions only, scored on the English ones, and the other way round). The
artifact goes to ``models/artifacts/<version>/`` (write its name in
``models/artifacts/DEFAULT`` to ship it as the default); the simulated
sessions and the feature cache stay in the data directory.

Usage::

    .venv/bin/python -m models.ship --version sim-v1 [--train-sessions 6] [--holdout-sessions 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.artifact import ARTIFACTS_DIR

# seeds: training clients and held-out clients never share a seed range
SETS = {"train": {"nl": 1000, "en": 2000}, "holdout": {"nl": 9000, "en": 9500}}


def build(version: str, *, train_sessions: int = 6, holdout_sessions: int = 3, minutes: tuple[float, float] = (5.0, 6.0),
          root: Path = ARTIFACTS_DIR, progress=print) -> Path:
    """Simulate (if not there yet), train, evaluate and save the shipped model; returns its folder."""
    from models.artifact import ModelBundle
    from models.simulate import simulate
    from models.training import cross_validate, evaluate_bundle, load_dataset, make_pipeline, train
    from pipeline.features import FEATURE_NAMES
    from pipeline.settings import Settings

    settings = Settings()
    base = Path(settings.data_dir) / "simulated"
    dirs: dict[str, dict[str, Path]] = {}
    for part, langs in SETS.items():
        n = train_sessions if part == "train" else holdout_sessions
        for lang, seed in langs.items():
            d = base / f"{part}-{lang}-{seed}-{n}x{minutes[0]:g}-{minutes[1]:g}min"
            if not d.is_dir() or not any(d.iterdir()):
                progress(f"simulating {n} {lang} sessions ({part}) in {d}")
                simulate(d, sessions=n, language=lang, seed=seed, minutes=minutes)
            dirs.setdefault(part, {})[lang] = d
    # cross-language transfer: train on one language, score the other's training and held-out sessions
    cross = {}
    for src, dst in (("nl", "en"), ("en", "nl")):
        data = load_dataset([dirs["train"][src]], settings, progress=progress)
        model = make_pipeline().fit(data["X"], data["y"])
        cv = cross_validate(data["X"], data["y"], data["groups"])  # thresholds chosen on the source language
        card = {"threshold": {"value": min(cv["thresholds"].values()), "per_class": cv["thresholds"]},
                "feature_names": list(FEATURE_NAMES), "version": f"{src}-only"}
        other = load_dataset([dirs["train"][dst], dirs["holdout"][dst]], settings, progress=progress)
        cross[f"trained_{src}_scored_{dst}"] = evaluate_bundle(ModelBundle(model, card, Path(".")), other)
    summary = ("Trained on simulated sessions (espeak-ng voices, scripted rupture episodes; Dutch and English), "
               "not on real therapy audio.")
    description = (f"Simulated by models/simulate.py (models/ship.py: seeds {SETS['train']} for training, "
                   f"{SETS['holdout']} held out; {train_sessions} training and {holdout_sessions} held-out sessions "
                   f"per language, {minutes[0]:g}–{minutes[1]:g} minutes each, two sessions per client).")
    return train([dirs["train"]["nl"], dirs["train"]["en"]], version=version, settings=settings, root=root,
                 holdout_dirs=[dirs["holdout"]["nl"], dirs["holdout"]["en"]], summary=summary,
                 description=description, extra_metrics={"cross_language": cross}, progress=progress)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", required=True)
    parser.add_argument("--train-sessions", type=int, default=6)
    parser.add_argument("--holdout-sessions", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ARTIFACTS_DIR)
    args = parser.parse_args()
    print(build(args.version, train_sessions=args.train_sessions, holdout_sessions=args.holdout_sessions,
                root=args.out))


if __name__ == "__main__":
    main()
