"""Voice activity detection (VAD) against reference speech: Silero, the segmentation model, and both together.

For every reference recording (those of ``bench/overlap_eval.py``: ``sample_audio/``, ``tests/data/ami/`` and,
when given, the shared pyannote excerpts and the Dutch constructed dialogue) and for simulated sessions given with
``--sims`` (folders holding ``recording.wav``, ``reference.rttm`` and ``ruptures.csv``), it scores:

- ``silero``: Silero VAD as the ``vad`` stage runs it today (:func:`pipeline.vad.detect_speech`);
- ``segmentation``: the speech probability of the overlap stage's segmentation model
  (:func:`pipeline.overlap.speech_regions`, hysteresis 0.5 / 0.5, the same minimum durations and padding);
- ``union``: speech where either finds it.

Scores are pyannote.metrics' detection error rate (collar 0, scored over the reference's UEM when it has one,
else the whole recording), split into missed speech (% of reference speech) and false alarm (% of reference
non-speech). On simulated sessions it also gives each role's speech found, inside withdrawal episodes and outside:
the withdrawn child speaks quietly and turns away from the microphone.

Usage::

    .venv/bin/python bench/vad_eval.py [--shared ../shared/data/real] [--sims DIR ...] [--json out.json]
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

METHODS = ("silero", "segmentation", "union")


def union(a, b):
    """Speech regions of both lists merged (in time order, not overlapping): pyannote.core's ``Timeline.support``."""
    from pyannote.core import Segment, Timeline

    from pipeline.types import SpeechRegion

    return tuple(SpeechRegion(s.start, s.end) for s in Timeline([Segment(r.start, r.end) for r in (*a, *b)]).support())


def score(reference, regions, *, start_s: float, end_s: float) -> dict:
    """Missed speech and false alarm (s and %), pyannote.metrics ``DetectionErrorRate``, collar 0."""
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.detection import DetectionErrorRate

    ref, hyp = Annotation(uri="x"), Annotation(uri="x")
    for i, t in enumerate(reference):
        if t.end > t.start:
            ref[Segment(t.start, t.end), i] = "speech"
    for i, r in enumerate(regions):
        hyp[Segment(r.start, r.end), i] = "speech"
    uem = Timeline([Segment(start_s, end_s)], uri="x")
    c = DetectionErrorRate(collar=0.0, skip_overlap=False).compute_components(ref, hyp, uem=uem)
    speech = c["total"]
    return dict(speech_s=round(speech, 2), missed_s=round(c["miss"], 2), false_alarm_s=round(c["false alarm"], 2),
                missed_pct=round(100 * c["miss"] / speech, 2) if speech else 0.0,
                false_alarm_pct=round(100 * c["false alarm"] / max(end_s - start_s - speech, 1e-9), 2))


def found_by_role(reference, regions, episodes, duration_s: float) -> dict:
    """Share of each role's reference speech found, inside withdrawal episodes and outside (10-ms grid)."""
    n = int(duration_s * 100) + 1
    grid = np.zeros(n, dtype=bool)
    for r in regions:
        grid[int(r.start * 100):int(r.end * 100)] = True
    out: dict[str, list[float]] = {}
    for t in reference:
        a, b = int(t.start * 100), int(t.end * 100)
        inside = any(s <= t.start < e for s, e, kind in episodes if kind == "withdrawal")
        key = f"{t.speaker}_{'withdrawal' if inside else 'other'}"
        found, total = out.setdefault(key, [0.0, 0.0])
        out[key] = [found + grid[a:b].sum() / 100, total + (b - a) / 100]
    return out


def regions_of(audio: Path, settings, detector) -> tuple[dict, float, float]:
    """The three methods' speech regions for one recording, its duration, and the seconds they took."""
    from pipeline.overlap import speech_regions
    from pipeline.session import decode_recording
    from pipeline.vad import detect_speech

    rec = decode_recording(audio, settings)
    t0 = time.perf_counter()
    silero = detect_speech(rec.samples, rec.sample_rate_hz, settings=settings.vad)
    frames = detector.detect(rec.samples, rec.sample_rate_hz)
    vad = settings.vad
    seg = speech_regions(frames, min_speech_s=vad.min_speech_duration_ms / 1000,
                         min_silence_s=vad.min_silence_duration_ms / 1000, pad_s=vad.speech_pad_ms / 1000,
                         duration_s=rec.duration_s)
    return dict(silero=silero, segmentation=seg, union=union(silero, seg)), rec.duration_s, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared/data/real")
    parser.add_argument("--sims", type=Path, nargs="*", default=[], help="simulated session folders")
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/vad_eval.json")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "bench"))
    from overlap_eval import cases

    from pipeline.evaluation import read_uem
    from pipeline.overlap import SegmentationOverlapDetector
    from pipeline.rttm import read_rttm
    from pipeline.settings import Settings

    if not args.shared.is_dir():
        print(f"note: {args.shared} is not a folder; only the repository's references are scored")
    settings = Settings()
    detector = SegmentationOverlapDetector.from_settings(settings.overlap)
    rows, sims = [], []
    print(f"{'file':<36} {'speech s':>8}  " + "  ".join(f"{m + ' miss/FA %':>22}" for m in METHODS))
    for audio, rttm in cases(args.shared):
        ref = read_rttm(rttm).get(audio.stem)
        if not ref:
            continue
        found, duration, _ = regions_of(audio, settings, detector)
        uem_path = rttm.with_suffix(".uem")
        start, end = (read_uem(uem_path).get(audio.stem) if uem_path.is_file() else None) or (0.0, duration)
        row = dict(file=audio.name, **{m: score(ref, found[m], start_s=start, end_s=end) for m in METHODS})
        rows.append(row)
        print(f"{audio.name:<36} {row['silero']['speech_s']:>8.1f}  " + "  ".join(
            f"{row[m]['missed_pct']:>11.1f} / {row[m]['false_alarm_pct']:>7.1f}" for m in METHODS))
    for folder in args.sims:
        ref = next(iter(read_rttm(folder / "reference.rttm").values()))
        lines = (folder / "ruptures.csv").read_text().splitlines()[1:]
        episodes = [(float(x[0]), float(x[1]), x[2]) for x in (line.split(",") for line in lines) if len(x) >= 3]
        found, duration, _ = regions_of(folder / "recording.wav", settings, detector)
        sims.append(dict(session=folder.name, **{m: dict(score(ref, found[m], start_s=0.0, end_s=duration),
                                                         by_role=found_by_role(ref, found[m], episodes, duration))
                                                 for m in METHODS}))
        print(f"{folder.name:<36} {sims[-1]['silero']['speech_s']:>8.1f}  " + "  ".join(
            f"{sims[-1][m]['missed_pct']:>11.1f} / {sims[-1][m]['false_alarm_pct']:>7.1f}" for m in METHODS))

    def pooled(items, m):
        speech = sum(r[m]["speech_s"] for r in items)
        miss = sum(r[m]["missed_s"] for r in items)
        fa = sum(r[m]["false_alarm_s"] for r in items)
        return speech, miss, fa

    summary = {}
    for name, items in (("references", rows), ("simulated", sims)):
        if not items:
            continue
        summary[name] = {}
        for m in METHODS:
            speech, miss, fa = pooled(items, m)
            summary[name][m] = dict(missed_pct=round(100 * miss / speech, 2), false_alarm_s=round(fa, 1),
                                    detection_error_pct=round(100 * (miss + fa) / speech, 2))
            print(f"{name} pooled, {m}: missed {100 * miss / speech:.1f} % of {speech:.0f} s speech, false alarm "
                  f"{fa:.1f} s, detection error rate {100 * (miss + fa) / speech:.1f} %")
    if sims:
        summary["simulated_by_role"] = {}
        for m in METHODS:
            acc: dict[str, list[float]] = {}
            for s in sims:
                for key, (f, t) in s[m]["by_role"].items():
                    acc[key] = [acc.get(key, [0, 0])[0] + f, acc.get(key, [0, 0])[1] + t]
            summary["simulated_by_role"][m] = {k: round(f / t, 3) for k, (f, t) in sorted(acc.items()) if t}
            print(f"speech found by role, {m}: " + ", ".join(
                f"{k} {v:.2f}" for k, v in summary["simulated_by_role"][m].items()))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"settings": settings.public_dict(), "summary": summary, "files": rows,
                                     "simulated": sims}, indent=1))
    print(f"written {args.json}")


if __name__ == "__main__":
    main()
