"""Overlapped-speech detection and the second speaker in overlaps, measured on every reference with labels.

For each recording with a reference RTTM: the share of its speech that is
overlapped, the overlap detector's precision, recall and F1 (pyannote.metrics
detection metrics, collar 0, scored over the reference's UEM or the whole
file), and DER with overlapped speech scored before and after
:func:`pipeline.overlap.assign_overlap_speakers` on the project's own
diarization (the configured speaker encoder + spectral clustering + GMM resegmentation, true
speaker count given), at collar 0.5 s (the project's convention, ±0.25 s) and
at collar 0; and the interruptions and successful interruptions
(:func:`pipeline.turns.overlap_events`, all speakers together) on the
reference's turns against those found before and after the overlap stage.

Sources: ``sample_audio/sample.wav`` and ``tests/data/ami/`` (dev00, dev01,
tst00) in the repository; with ``--shared`` (default ``../shared/data/real``
when present) also the other pyannote excerpts (tst01, trn00–trn09) and the
Dutch constructed dialogue. ``--sweep`` also prints the threshold grid the
defaults were chosen on.

Usage::

    .venv/bin/python bench/overlap_eval.py [--shared ../shared/data/real] [--sweep] [--no-der] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def cases(shared: Path | None) -> list[tuple[Path, Path]]:
    """(audio, rttm) pairs whose RTTM has turns for the audio's stem; repository copies first."""
    out = [(ROOT / "sample_audio/sample.wav", ROOT / "sample_audio/sample.rttm"),
           (ROOT / "tests/data/ami/dev00.flac", ROOT / "tests/data/ami/dev.rttm"),
           (ROOT / "tests/data/ami/dev01.flac", ROOT / "tests/data/ami/dev.rttm"),
           (ROOT / "tests/data/ami/tst00.flac", ROOT / "tests/data/ami/tst.rttm")]
    if shared is not None and shared.is_dir():
        p = shared / "pyannote"
        for split in ("test", "train"):
            rttm = p / f"debug.{split}.rttm"
            if rttm.is_file():
                uris = sorted({line.split()[1] for line in rttm.read_text().splitlines() if line.strip()})
                out += [(p / f"{uri}.wav", rttm) for uri in uris]
        d = shared / "dutch/dialogue_constructed"
        out.append((d / "dialogue_nl_2spk_constructed.wav", d / "dialogue_nl_2spk_constructed.rttm"))
    seen, unique = set(), []
    for a, r in out:
        if a.stem not in seen and a.is_file() and r.is_file():
            seen.add(a.stem)
            unique.append((a, r))
    return unique


def overlap_share(ref) -> float:
    """Overlapped share of the reference speech (ratio)."""
    from pipeline.evaluation import reference_overlap

    from pyannote.core import Segment, Timeline

    speech = Timeline([Segment(t.start, t.end) for t in ref if t.end > t.start]).support().duration()
    return sum(b - a for a, b in reference_overlap(ref)) / speech if speech else 0.0


def interruption_counts(turns) -> dict[str, int]:
    """Interruptions and successful ones (:func:`pipeline.turns.overlap_events`), all speakers together.

    A speaker's own turns are merged first (reference RTTMs may overlap a speaker with itself).
    """
    from pipeline.turns import overlap_events
    from pipeline.types import SpeakerTurn

    merged = []
    for spk in sorted({t.speaker for t in turns}):
        spans = sorted((t.start, t.end) for t in turns if t.speaker == spk and t.end > t.start)
        for a, b in spans:
            if merged and merged[-1].speaker == spk and a <= merged[-1].end:
                merged[-1] = SpeakerTurn(merged[-1].start, max(b, merged[-1].end), spk)
            else:
                merged.append(SpeakerTurn(a, b, spk))
    events = [e for e in overlap_events(merged) if e.kind == "interruption"]
    return {"interruptions": len(events), "successful": sum(e.successful for e in events)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared/data/real")
    parser.add_argument("--sweep", action="store_true", help="print the onset/offset/min-duration grid")
    parser.add_argument("--no-der", action="store_true", help="skip diarization (detection figures only)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/overlap_eval.json")
    args = parser.parse_args()

    from pipeline.audio import decode
    from pipeline.evaluation import read_uem, score_diarization, score_overlap_detection
    from pipeline.overlap import SegmentationOverlapDetector, assign_overlap_speakers, overlap_regions
    from pipeline.rttm import read_rttm
    from pipeline.settings import Settings

    settings = Settings()
    ov = settings.overlap
    detector = SegmentationOverlapDetector.from_settings(ov)
    embedder = None
    if not args.no_der:
        from pipeline.diarization import diarize
        from pipeline.embedders import clustering_embedder
        from pipeline.vad import detect_speech

        embedder = clustering_embedder(settings.diarization)
    print(f"detector {detector.name}, hop {ov.hop_s:g} s, onset {ov.onset:g}, offset {ov.offset:g}, "
          f"min {ov.min_duration_s:g} s; detection collar 0; DER overlap scored, true speaker count")
    head = f"{'file':<32} {'spk':>3} {'ovl %':>6} {'P':>5} {'R':>5} {'F1':>5} {'det s':>6}"
    if not args.no_der:
        head += f" | {'DER .5 %':>8} {'-> %':>6} {'miss s':>6} {'-> s':>5} | {'DER 0 %':>7} {'-> %':>6}"
    print(head)
    rows, stored = [], []
    for audio, rttm in cases(args.shared):
        ref = read_rttm(rttm).get(audio.stem)
        if not ref:
            continue
        uem_path = rttm.with_suffix(".uem")
        rec = decode(audio, settings=settings.audio)
        start, end = (read_uem(uem_path).get(audio.stem) if uem_path.is_file() else None) or (0.0, rec.duration_s)
        t0 = time.perf_counter()
        frames = detector.detect(rec.samples, rec.sample_rate_hz)
        detect_s = time.perf_counter() - t0
        regions = overlap_regions(frames, onset=ov.onset, offset=ov.offset, min_duration_s=ov.min_duration_s,
                                  duration_s=rec.duration_s)
        det = score_overlap_detection(ref, regions, uri=audio.stem, start_s=start, end_s=end)
        n_spk = len({t.speaker for t in ref})
        row = dict(file=audio.name, reference=rttm.name, speakers=n_spk, overlap_share=overlap_share(ref),
                   overlap_reference_s=det.reference_s, precision=det.precision, recall=det.recall, f1=det.f1,
                   detected_s=det.detected_s, detect_time_s=detect_s)
        line = (f"{audio.name:<32} {n_spk:>3} {100 * row['overlap_share']:>6.1f} {det.precision:>5.2f} "
                f"{det.recall:>5.2f} {det.f1:>5.2f} {det.detected_s:>6.2f}")
        if embedder is not None:
            speech = detect_speech(rec.samples, rec.sample_rate_hz, settings=settings.vad)
            before = diarize(rec.samples, rec.sample_rate_hz, speech, num_speakers=n_spk,
                             settings=settings.diarization, embedder=embedder)
            after = assign_overlap_speakers(before, frames, ov, duration_s=rec.duration_s)
            for name, turns in (("reference", ref), ("before", before.turns), ("after", after.turns)):
                row.update({f"{k}_{name}": v for k, v in interruption_counts(turns).items()})
            for collar in (0.5, 0.0):
                for name, d in (("before", before), ("after", after)):
                    s = score_diarization(ref, d.turns, uri=audio.stem, collar_s=collar, start_s=start, end_s=end)
                    tag = f"{name}_c{collar:g}"
                    row.update({f"der_{tag}": s.der, f"missed_s_{tag}": s.missed_s,
                                f"false_alarm_s_{tag}": s.false_alarm_s, f"confusion_s_{tag}": s.confusion_s})
            line += (f" | {100 * row['der_before_c0.5']:>8.1f} {100 * row['der_after_c0.5']:>6.1f} "
                     f"{row['missed_s_before_c0.5']:>6.2f} {row['missed_s_after_c0.5']:>5.2f} | "
                     f"{100 * row['der_before_c0']:>7.1f} {100 * row['der_after_c0']:>6.1f}")
        print(line)
        rows.append(row)
        stored.append((audio.stem, ref, frames, rec.duration_s, start, end))

    high = [r for r in rows if r["overlap_share"] >= 0.10]
    with_overlap = [r for r in rows if r["overlap_reference_s"] > 0]
    summary = {
        "mean_f1_overlap_ge_10pct": float(np.mean([r["f1"] for r in high])) if high else None,
        "files_overlap_ge_10pct": [r["file"] for r in high],
        "pooled_precision": (sum(r["precision"] * r["detected_s"] for r in with_overlap)
                             / max(1e-9, sum(r["detected_s"] for r in with_overlap))),
        "pooled_recall": (sum(r["recall"] * r["overlap_reference_s"] for r in with_overlap)
                          / max(1e-9, sum(r["overlap_reference_s"] for r in with_overlap))),
    }
    if embedder is not None:
        for k in ("interruptions", "successful"):
            summary[f"{k}_reference"] = sum(r[f"{k}_reference"] for r in rows)
            summary[f"{k}_before"] = sum(r[f"{k}_before"] for r in rows)
            summary[f"{k}_after"] = sum(r[f"{k}_after"] for r in rows)
            print(f"{k} (all speakers): reference {summary[f'{k}_reference']}, found before the overlap stage "
                  f"{summary[f'{k}_before']}, after {summary[f'{k}_after']}")
    print(f"mean F1 on the {len(high)} references with >= 10 % overlap: {summary['mean_f1_overlap_ge_10pct']}")
    print(f"pooled over {len(with_overlap)} references with overlap: precision {summary['pooled_precision']:.2f}, "
          f"recall {summary['pooled_recall']:.2f}")

    sweep = []
    if args.sweep:
        print("\nonset offset min_s  meanF1(>=10%)  pooled P / R / F1")
        for onset, offset, min_s in itertools.product((0.2, 0.25, 0.3, 0.4, 0.5), (0.1, 0.15, 0.2, 0.3, 0.5),
                                                      (0.05, 0.1, 0.2)):
            if offset > onset:
                continue
            tp = got = rel = 0.0
            f1s = []
            for stem, ref, frames, dur, start, end in stored:
                regs = overlap_regions(frames, onset=onset, offset=offset, min_duration_s=min_s, duration_s=dur)
                s = score_overlap_detection(ref, regs, uri=stem, start_s=start, end_s=end)
                tp, got, rel = tp + s.correct_s, got + s.detected_s, rel + s.reference_s
                if overlap_share(ref) >= 0.10:
                    f1s.append(s.f1)
            p, r = tp / max(got, 1e-9), tp / max(rel, 1e-9)
            f = 2 * p * r / (p + r) if p + r else 0.0
            sweep.append(dict(onset=onset, offset=offset, min_duration_s=min_s, mean_f1_ge_10pct=float(np.mean(f1s)),
                              pooled_precision=p, pooled_recall=r, pooled_f1=f))
            print(f"{onset:>5.2f} {offset:>6.2f} {min_s:>5.2f}  {np.mean(f1s):>13.3f}  {p:.2f} / {r:.2f} / {f:.2f}")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"detector": detector.name, "settings": settings.overlap.model_dump(mode="json"),
                                     "summary": summary, "files": rows, "sweep": sweep}, indent=2))
    print(f"written {args.json}")


if __name__ == "__main__":
    main()
