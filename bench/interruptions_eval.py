"""Interruptions found in one-microphone recordings, against the simulator's own ground truth.

Simulated sessions (``models/simulate.py``, or ``models/simulate_rooms.py``
with ``--generator rooms``) are rendered as one mono mix, and
their ``reference.rttm`` holds every utterance's true times with its role, so
the true interruptions are :func:`pipeline.turns.overlap_events` on the
reference turns. The system's are the same function on the turns the
pipeline finds: VAD, voice clustering (true speaker count), then the
``overlap`` stage (:func:`pipeline.session.find_overlap`), once with the
overlapped-speech model and once without it (the state before overlap
detection). Each found speaker takes the role of the reference speaker it
shares most speech with (an oracle role mapping: this measures the turns, not
the role assignment).

Counts are given inside the confrontation episodes of ``ruptures.csv`` (where
the simulator makes the client interrupt) and outside them, per role, with
the successful interruptions (holder stopped within 1 s) apart.

Usage::

    .venv/bin/python bench/interruptions_eval.py [--sessions 4] [--minutes 4] [--seed 900] [--json out.json]
        [--generator tts|rooms] [--real-voices]
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def role_map(system, reference) -> dict[str, str]:
    """Each system speaker → the reference role it shares most speech time with."""
    out = {}
    for s in system.speakers:
        mine = [t for t in system.turns if t.speaker == s]
        shared: dict[str, float] = {}
        for r in reference:
            for t in mine:
                shared[r.speaker] = shared.get(r.speaker, 0.0) + max(0.0, min(t.end, r.end) - max(t.start, r.start))
        out[s] = max(shared, key=shared.get) if shared else "unknown"
    return out


def count(events, episodes, *, speaker_role) -> dict[str, int]:
    """Interruption counts by role, inside and outside confrontation episodes."""
    out: dict[str, int] = {}
    for e in events:
        if e.kind != "interruption":
            continue
        inside = any(a <= e.start < b for a, b, kind in episodes if kind == "confrontation")
        role = speaker_role(e.speaker)
        for key in (f"{role}_{'in' if inside else 'out'}", *([f"{role}_{'in' if inside else 'out'}_successful"]
                                                             if e.successful else [])):
            out[key] = out.get(key, 0) + 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=900)
    ap.add_argument("--generator", choices=("tts", "rooms"), default="tts",
                    help="Session simulator: models/simulate.py (tts) or models/simulate_rooms.py (rooms).")
    ap.add_argument("--real-voices", action="store_true",
                    help="rooms only: every utterance in a real speaker's recorded voice (compose_session(real_voices=True)), "
                         "to tell what the synthetic voices cost from what the room costs.")
    ap.add_argument("--work", type=Path, default=None, help="Keep the simulated sessions here.")
    ap.add_argument("--json", type=Path, default=ROOT / "bench/results/interruptions_eval.json")
    args = ap.parse_args()
    if args.real_voices and args.generator != "rooms":
        ap.error("--real-voices needs --generator rooms")

    from models.simulate import simulate_session
    from models.simulate_rooms import simulate_rooms_session
    from pipeline import session as steps
    from pipeline.embedders import clustering_embedder
    from pipeline.overlap import SegmentationOverlapDetector
    from pipeline.rttm import read_rttm
    from pipeline.settings import Settings
    from pipeline.turns import overlap_events

    work = args.work or Path(tempfile.mkdtemp(prefix="interruptions-"))
    settings = Settings()
    embedder = clustering_embedder(settings.diarization)
    detector = SegmentationOverlapDetector.from_settings(settings.overlap)
    rows, totals = [], {}
    for i in range(args.sessions):
        lang = ("nl", "en")[i % 2]
        folder = work / f"{args.generator}{'-real' if args.real_voices else ''}-{args.seed + i}"
        if not (folder / "recording.wav").exists():
            if args.generator == "tts":
                simulate_session(folder, seed=args.seed + i, language=lang, minutes=args.minutes)
            else:
                simulate_rooms_session(folder, seed=args.seed + i, language=lang, minutes=args.minutes,
                                       real_voices=args.real_voices)
        meta = json.loads((folder / "metadata.json").read_text())
        n_speakers = len(meta["participants"])
        reference = next(iter(read_rttm(folder / "reference.rttm").values()))
        with open(folder / "ruptures.csv", newline="") as f:
            episodes = [(float(r["start_s"]), float(r["end_s"]), r["label"]) for r in csv.DictReader(f)]
        s = settings.model_copy(update={"diarization": settings.diarization.model_copy(
            update={"num_speakers": n_speakers})})
        t0 = time.perf_counter()
        rec = steps.decode_recording(folder / "recording.wav", s)
        speech = steps.find_speech(rec.samples, s, detector=detector)
        dia = steps.diarize_session(rec.samples, speech, s, embedder=embedder)
        t1 = time.perf_counter()
        with_overlap, regions = steps.find_overlap(rec.samples, dia, s, detector=detector)
        t2 = time.perf_counter()
        truth = count(overlap_events(reference), episodes, speaker_role=lambda sp: sp)
        roles_after = role_map(with_overlap, reference)
        found_events = [e for e in overlap_events(with_overlap.turns) if e.kind == "interruption"]
        matched = []  # (true overlap, found overlap) of true interruptions found within 1 s by the same role
        for e in (x for x in overlap_events(reference) if x.kind == "interruption"):
            near = [f for f in found_events if abs(f.start - e.start) <= 1.0 and roles_after.get(f.speaker) == e.speaker]
            if near:
                matched.append((e.overlap_s, min(near, key=lambda f: abs(f.start - e.start)).overlap_s))
        found = {}
        for name, d in (("before", dia), ("after", with_overlap)):
            roles = role_map(d, reference)
            found[name] = count(overlap_events(d.turns), episodes, speaker_role=roles.get)
        row = dict(session=folder.name, language=lang, speakers=n_speakers, duration_s=round(rec.duration_s, 1),
                   overlap_regions=len(regions), overlap_s=round(sum(r.duration for r in regions), 1),
                   overlap_stage_s=round(t2 - t1, 2), diarization_s=round(t1 - t0, 2), truth=truth,
                   matched_overlap_s=matched, **found)
        rows.append(row)
        for name, c in (("truth", truth), ("before", found["before"]), ("after", found["after"])):
            for k, v in c.items():
                totals.setdefault(name, {})[k] = totals.setdefault(name, {}).get(k, 0) + v
        print(f"{folder.name} ({lang}, {n_speakers} speakers, {rec.duration_s:.0f} s): client interruptions in "
              f"confrontation truth {truth.get('client_in', 0)} (successful {truth.get('client_in_successful', 0)}), "
              f"found before {found['before'].get('client_in', 0)}, after {found['after'].get('client_in', 0)} "
              f"(successful {found['after'].get('client_in_successful', 0)}); outside: truth "
              f"{sum(v for k, v in truth.items() if '_out' in k and 'successful' not in k)}, after "
              f"{sum(v for k, v in found['after'].items() if '_out' in k and 'successful' not in k)}", flush=True)
    t, a = totals.get("truth", {}), totals.get("after", {})
    ratio = a.get("client_in", 0) / t["client_in"] if t.get("client_in") else float("nan")
    print(f"\nall sessions: client interruptions in confrontation episodes: truth {t.get('client_in', 0)}, "
          f"found {a.get('client_in', 0)} ({ratio:.2f} of the truth; before overlap detection "
          f"{totals.get('before', {}).get('client_in', 0)}); successful: truth {t.get('client_in_successful', 0)}, "
          f"found {a.get('client_in_successful', 0)}")
    pairs = [p for r in rows for p in r["matched_overlap_s"]]
    if pairs:
        diff = [f - t for t, f in pairs]
        print(f"true interruptions found at the right time by the right role: {len(pairs)}; overlap found minus true: "
              f"median {sorted(diff)[len(diff) // 2]:+.2f} s (found {sum(f for _, f in pairs) / len(pairs):.2f} s, "
              f"true {sum(t for t, _ in pairs) / len(pairs):.2f} s on average)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(dict(sessions=rows, totals=totals, client_in_ratio=ratio), indent=1))


if __name__ == "__main__":
    main()
