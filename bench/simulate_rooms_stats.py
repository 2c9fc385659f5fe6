"""Per-session figures of the ``rooms`` generator, measured from the written files (no listening needed).

Writes a few sessions with :func:`models.simulate_rooms.simulate_rooms_session`
and prints, per session: length, active speech level (dBFS over the reference
turns, read back from ``recording.wav``), SNR, RT60 (target and measured on
the impulse responses), noise types, interruptions (attempts / the
interrupted speaker gave way), overlapping turn pairs in the reference, the
share of utterance time that is real speech, whether a parent is there, the
episodes and the rendering time.

Usage::

    .venv/bin/python bench/simulate_rooms_stats.py --out /tmp/rooms [--sessions 2] [--languages nl en]
                                                   [--seed 100] [--minutes 6]
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


def session_stats(folder: Path) -> dict:
    """Figures of one written session folder."""
    from pipeline.annotations import read_rupture_csv
    from pipeline.audio import decode
    from pipeline.rttm import read_rttm

    rec = decode(folder / "recording.wav")
    turns = sorted(read_rttm(folder / "reference.rttm")[folder.name], key=lambda t: t.start)
    mask = np.zeros(rec.samples.size, dtype=bool)
    for t in turns:
        mask[int(t.start * 16000):int(t.end * 16000)] = True
    level = 20 * np.log10(np.sqrt(np.mean(rec.samples[mask].astype(np.float64) ** 2)))
    overlaps = sum(1 for i, a in enumerate(turns) for b in turns[i + 1:]
                   if b.start < a.end and b.speaker != a.speaker)
    meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    sim = meta["simulated"]
    notes = read_rupture_csv(folder / "ruptures.csv", duration_s=rec.duration_s)
    return {"session": folder.name, "duration_s": round(rec.duration_s, 1), "level_dbfs": round(float(level), 1),
            "snr_db": sim["snr_db"], "rt60_s": sim["room"]["rt60_s"], "rt60_measured_s": sim["room"]["rt60_measured_s"],
            "noise": "+".join(sim["noise"]), "interruptions": sim["interruptions"]["attempts"],
            "gave_way": sim["interruptions"]["succeeded"], "overlaps": overlaps,
            "real_share": sim["real_speech_share"], "parent": sim["parent"], "age": meta["participants"][1]["age"],
            "play_s": round(sum(b - a for a, b in sim["play_stretches_s"]), 1),
            "episodes": " ".join(f"{a.label[0].upper()}{a.start:.0f}-{a.end:.0f}" for a in notes) or "-"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="Folder for the sessions (must not hold them yet).")
    ap.add_argument("--sessions", type=int, default=2, help="Sessions per language.")
    ap.add_argument("--languages", nargs="+", default=["nl", "en"])
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--minutes", type=float, default=6.0)
    args = ap.parse_args()

    from models.simulate_rooms import simulate_rooms_session

    rows = []
    for lang in args.languages:
        for i in range(args.sessions):
            seed = args.seed + i
            t0 = time.perf_counter()
            folder = simulate_rooms_session(args.out / f"rooms-{lang}-{seed:05d}", seed=seed, language=lang,
                                            minutes=args.minutes)
            row = session_stats(folder)
            row["render_s"] = round(time.perf_counter() - t0, 1)
            rows.append(row)
    cols = list(rows[0])
    print("\t".join(cols))
    for r in rows:
        print("\t".join(str(r[c]) for c in cols))


if __name__ == "__main__":
    main()
