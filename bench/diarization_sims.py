"""Diarization DER on simulated sessions, one speaker encoder beside another.

The references in ``bench/diarization_eval.py`` are meetings and a phone call;
clinic sessions are a therapist, a child and sometimes a parent at one table
microphone. This runs the diarization stage (VAD, voice clustering with the true
speaker count, GMM resegmentation) on simulated sessions whose
``reference.rttm`` holds every utterance's true times: ``models/simulate.py``
(``tts``: espeak-ng voices, dry), ``models/simulate_rooms.py`` (``rooms``:
synthetic and real voices in simulated rooms) and the same rooms with every
utterance in a recorded voice (``rooms-real``, ``real_voices=True``). Each
encoder runs at its own window and hop: CAM++ (the default) at 1.5 s every
0.5 s, resemblyzer at 2.0 s every 0.25 s (its measured best). DER with
pyannote.metrics, collar 0.5 s, overlapped speech scored.

Usage::

    .venv/bin/python bench/diarization_sims.py [--sessions 4] [--minutes 4] [--seed 900] [--work DIR]
        [--json bench/results/diarization_sims.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ENCODERS = {"campplus": {"embedder": "campplus", "window_s": 1.5, "hop_s": 0.5},
            "resemblyzer": {"embedder": "resemblyzer", "window_s": 2.0, "hop_s": 0.25}}
KINDS = (("tts", False), ("rooms", False), ("rooms", True))


def session_folder(work: Path, generator: str, real_voices: bool, seed: int, language: str, minutes: float) -> Path:
    """A simulated session (made on first use), named as ``bench/interruptions_eval.py`` names it."""
    from models.simulate import simulate_session
    from models.simulate_rooms import simulate_rooms_session

    folder = work / f"{generator}{'-real' if real_voices else ''}-{seed}"
    if not (folder / "recording.wav").exists():
        if generator == "tts":
            simulate_session(folder, seed=seed, language=language, minutes=minutes)
        else:
            simulate_rooms_session(folder, seed=seed, language=language, minutes=minutes, real_voices=real_voices)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=4, help="sessions per kind (tts, rooms, rooms-real)")
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=900)
    ap.add_argument("--work", type=Path, default=None, help="keep (and reuse) the simulated sessions here")
    ap.add_argument("--json", type=Path, default=ROOT / "bench/results/diarization_sims.json")
    args = ap.parse_args()

    from pipeline import session as steps
    from pipeline.embedders import clustering_embedder
    from pipeline.evaluation import score_diarization
    from pipeline.rttm import read_rttm
    from pipeline.settings import Settings

    work = args.work or Path(tempfile.mkdtemp(prefix="diarization-sims-"))
    base = Settings()
    encoders = {name: clustering_embedder(base.diarization.model_copy(update=cfg)) for name, cfg in ENCODERS.items()}
    from pipeline.overlap import SegmentationOverlapDetector

    detector = SegmentationOverlapDetector.from_settings(base.overlap) if base.vad.method == "segmentation" else None
    rows = []
    print(f"{'session':<18} {'spk':>3} " + " ".join(f"{n + ' DER %':>16} {'conf s':>6}" for n in ENCODERS))
    for generator, real in KINDS:
        for i in range(args.sessions):
            seed, lang = args.seed + i, ("nl", "en")[i % 2]
            folder = session_folder(work, generator, real, seed, lang, args.minutes)
            meta = json.loads((folder / "metadata.json").read_text())
            reference = next(iter(read_rttm(folder / "reference.rttm").values()))
            row = {"session": folder.name, "kind": f"{generator}{'-real' if real else ''}",
                   "speakers": len(meta["participants"])}
            rec = steps.decode_recording(folder / "recording.wav", base)
            speech = steps.find_speech(rec.samples, base, detector=detector)
            for name, cfg in ENCODERS.items():
                s = base.model_copy(update={"diarization": base.diarization.model_copy(
                    update={**cfg, "num_speakers": row["speakers"]})})
                t0 = time.perf_counter()
                dia = steps.diarize_session(rec.samples, speech, s, embedder=encoders[name])
                score = score_diarization(reference, dia.turns, uri=folder.name, collar_s=0.5)
                row[name] = {"der": score.der, "missed_s": score.missed_s, "false_alarm_s": score.false_alarm_s,
                             "confusion_s": score.confusion_s, "seconds": time.perf_counter() - t0}
            rows.append(row)
            print(f"{row['session']:<18} {row['speakers']:>3} " + " ".join(
                f"{100 * row[n]['der']:>16.1f} {row[n]['confusion_s']:>6.1f}" for n in ENCODERS), flush=True)
    summary = {}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        mine = [r for r in rows if r["kind"] == kind]
        summary[kind] = {n: float(np.mean([r[n]["der"] for r in mine])) for n in ENCODERS}
        print(f"mean DER {kind:<10} " + "  ".join(f"{n} {100 * v:.1f} %" for n, v in summary[kind].items()))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"collar_s": 0.5, "encoders": ENCODERS, "minutes": args.minutes,
                                     "rows": rows, "mean_der": summary}, indent=1))


if __name__ == "__main__":
    main()
