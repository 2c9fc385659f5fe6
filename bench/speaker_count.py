"""Speaker-count estimation (``--speakers auto``) against the reference counts.

Runs :func:`pipeline.diarization.count_speakers` (VAD, 3 s windows of the configured encoder
windows, eigengap of the pruned affinity) on every recording with a reference
RTTM that :mod:`bench.diarization_eval` uses, plus single-speaker recordings
(the Dutch ``nathalie`` clips joined with 0.25 s pauses, and the short
``jfk.flac`` and CSS10 clips when the shared folder is given). Prints a table
and writes JSON.

Usage::

    .venv/bin/python bench/speaker_count.py [--shared ../shared/data/real] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def single_speaker_inputs(shared: Path | None) -> list[tuple[str, np.ndarray]]:
    """(name, 16 kHz mono samples) of recordings with exactly one speaker."""
    from pipeline.audio import decode

    pause = np.zeros(4000, dtype=np.float32)
    clips = sorted((ROOT / "tests/data/dutch/nathalie").glob("*.flac"))
    out = [("nathalie (joined clips)", np.concatenate([np.concatenate([decode(c).samples, pause]) for c in clips]))]
    if shared is not None:
        for p in (shared / "fw/jfk.flac", shared / "dutch/css10/20000_mijlen_0029.wav"):
            if p.is_file():
                out.append((p.name, decode(p).samples))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared/data/real")
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/speaker_count.json")
    args = parser.parse_args()
    shared = args.shared if args.shared.is_dir() else None

    from bench.diarization_eval import cases
    from pipeline.audio import decode
    from pipeline.diarization import FRAME_S, count_speakers
    from pipeline.embedders import clustering_embedder
    from pipeline.rttm import read_rttm
    from pipeline.settings import Settings
    from pipeline.vad import detect_speech, speech_mask

    settings = Settings()
    embedder = clustering_embedder(settings.diarization)
    inputs = []
    for audio, rttm in cases(shared):
        ref = read_rttm(rttm).get(audio.stem)
        if ref:
            inputs.append((audio.name, len({t.speaker for t in ref}), decode(audio, settings=settings.audio).samples))
    inputs += [(name, 1, x) for name, x in single_speaker_inputs(shared)]

    rows = []
    print(f"{'file':<36} {'speech s':>8} {'true':>4} {'estimated':>9} {'time s':>6}")
    for name, true, x in inputs:
        speech = detect_speech(x, 16000, settings=settings.vad)
        mask = speech_mask(speech, int(round(x.size / 16000 / FRAME_S)), FRAME_S)
        t0 = time.perf_counter()
        count, detail = count_speakers(x, 16000, mask, embedder=embedder,
                                       min_speech_fraction=settings.diarization.min_speech_fraction)
        elapsed = time.perf_counter() - t0
        rows.append(dict(file=name, speech_s=float(mask.sum() * FRAME_S), true=true, estimated=count,
                         right=count == true, detail=detail, seconds=elapsed))
        print(f"{name:<36} {mask.sum() * FRAME_S:>8.1f} {true:>4} {count:>9} {elapsed:>6.1f}")
    right = sum(r["right"] for r in rows)
    print(f"right on {right} of {len(rows)}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"files": rows, "right": right, "total": len(rows)}, indent=1))
    print(f"written {args.json}")


if __name__ == "__main__":
    main()
