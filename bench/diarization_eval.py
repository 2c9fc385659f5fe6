"""Diarization DER over every reference this project can see.

Runs the diarization stage (VAD + the configured speaker encoder, resemblyzer by default or CAM++, + spectral clustering, true
speaker count given) on each recording that has a reference RTTM, and prints
a table and writes JSON: DER, missed speech, false alarm and confusion with
pyannote.metrics, collar 0.5 s (±0.25 s), overlapped speech scored.

Sources: ``sample_audio/`` and ``tests/data/ami/`` (in the repository), and,
when given, the shared reference folder (``--shared ../shared/data/real``:
``pyannote/`` dev, test and train excerpts with their RTTMs, and the Dutch
constructed dialogue).

Usage::

    .venv/bin/python bench/diarization_eval.py [--shared ../shared/data/real] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cases(shared: Path | None) -> list[tuple[Path, Path]]:
    """(audio, rttm) pairs whose RTTM has turns for the audio's stem."""
    out = [(ROOT / "sample_audio/sample.wav", ROOT / "sample_audio/sample.rttm"),
           (ROOT / "tests/data/ami/dev00.flac", ROOT / "tests/data/ami/dev.rttm"),
           (ROOT / "tests/data/ami/dev01.flac", ROOT / "tests/data/ami/dev.rttm")]
    if shared is not None and shared.is_dir():
        p = shared / "pyannote"
        for split in ("development", "test", "train"):
            rttm = p / f"debug.{split}.rttm"
            lst = p / f"debug.{split}.lst"
            if rttm.is_file() and lst.is_file():
                out += [(p / f"{uri.strip()}.wav", rttm) for uri in lst.read_text().split() if uri.strip()]
        d = shared / "dutch/dialogue_constructed"
        if (d / "dialogue_nl_2spk_constructed.rttm").is_file():
            out.append((d / "dialogue_nl_2spk_constructed.wav", d / "dialogue_nl_2spk_constructed.rttm"))
    seen, unique = set(), []
    for a, r in out:
        if a.stem not in seen and a.is_file():
            seen.add(a.stem)
            unique.append((a, r))
    return unique


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared/data/real")
    parser.add_argument("--collar", type=float, default=0.5)
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/diarization_eval.json")
    args = parser.parse_args()

    from pipeline.embedders import clustering_embedder
    from pipeline.evaluation import evaluate_diarization_file, read_uem
    from pipeline.rttm import read_rttm
    from pipeline.settings import Settings

    settings = Settings()
    embedder = clustering_embedder(settings.diarization)
    rows = []
    print(f"collar {args.collar:g} s (±{args.collar / 2:g} s), overlap scored, true speaker count given")
    print(f"{'file':<36} {'spk':>3} {'DER %':>6} {'miss %':>7} {'FA %':>6} {'conf %':>7} {'speech s':>8} {'time s':>6}")
    for audio, rttm in cases(args.shared):
        ref = read_rttm(rttm).get(audio.stem)
        if not ref:
            continue
        uem_path = rttm.with_suffix(".uem")
        scored = read_uem(uem_path).get(audio.stem) if uem_path.is_file() else None
        t0 = time.perf_counter()
        score, result = evaluate_diarization_file(audio, ref, settings=settings, embedder=embedder,
                                                  collar_s=args.collar, scored=scored)
        elapsed = time.perf_counter() - t0
        pct = (lambda s: 100 * s / score.total_s) if score.total_s else (lambda s: 0.0)
        n_ref = len({t.speaker for t in ref})
        rows.append(dict(file=audio.name, reference=str(rttm.name), speakers=n_ref, der=score.der,
                         missed_s=score.missed_s, false_alarm_s=score.false_alarm_s, confusion_s=score.confusion_s,
                         total_s=score.total_s, seconds=elapsed))
        print(f"{audio.name:<36} {n_ref:>3} {100 * score.der:>6.1f} {pct(score.missed_s):>7.1f} "
              f"{pct(score.false_alarm_s):>6.1f} {pct(score.confusion_s):>7.1f} {score.total_s:>8.1f} {elapsed:>6.1f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"collar_s": args.collar, "settings": settings.public_dict(), "files": rows},
                                    indent=1))
    print(f"written {args.json}")


if __name__ == "__main__":
    main()
