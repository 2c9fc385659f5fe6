"""Where detected overlap starts and ends, against exact truth, on real voices and on espeak-ng voices.

A cut-in is mixed from two single-speaker recordings: the holder talks, the
newcomer starts while the holder is speaking (0–6 dB louder, as in a raised
voice), and the holder stops 0.3–1.5 s later (a 30 ms fade). Each speaker's
dry signal is known, so the true overlap runs from the newcomer's first
active 10-ms frame to the holder's last (frame RMS within 30 dB of the
speaker's loudest frame): exact, not a hand-set boundary. The overlap model
(:class:`pipeline.overlap.SegmentationOverlapDetector`) runs on the mix, and
the regions the second-speaker stage uses (``second_speaker_onset`` /
``_offset``) are compared with the truth: start and end error (s; negative is
early), duration error, and how many true overlaps of at most 1 s (a
successful interruption, :func:`pipeline.turns.overlap_events`) are found at
most 1 s long.

The same protocol runs on two kinds of voice:

- **real**: the read Dutch speech, CSS10, the JFK excerpt and the children's
  speech (speechocean762) in ``tests/data`` (attribution in
  ``tests/data/ATTRIBUTION.md``);
- **espeak**: espeak-ng voices (Dutch and English, several variants) reading
  short sentences, as both session simulators use.

So a difference between the two is the voices', not the protocol's. With
``--room``, each cut-in is also put in a simulated room (the ``rooms``
session generator's rooms: 3×3 to 6×5 m, RT60 from its range, the microphone
on a table, the holder where a therapist sits and the newcomer where a client
sits; image sources with a stochastic late tail) with pink noise 20–30 dB below
the speech; the truth stays the dry signals'. Written
for issue 16: on the simulated sessions the regions ran long (about +0.14 s
at each end), on the AMI references about 0.07 s short, and it was open
whether the model's edges or the hand-set reference boundaries were the
cause.

Usage::

    .venv/bin/python bench/overlap_edges.py [--mixtures 120] [--seed 7] [--room] [--json out.json]
"""

from __future__ import annotations

import argparse
import glob
import json
import subprocess
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SR = 16000
REAL = {"nathalie": ("tests/data/dutch/nathalie/*.flac", "tests/data/speech_pool/nathalie/*.flac"),
        "rdh": ("tests/data/dutch/rdh/*.flac",), "css10": ("tests/data/speech_pool/css10/*.flac",),
        "jfk": ("tests/data/speech_pool/jfk/*.flac",), "children": ("tests/data/speechocean762/*.wav",)}
ESPEAK = {"nl-f": ("nl+f3", 60), "nl-m": ("nl+m3", 35), "en-f": ("en-gb+f4", 65), "en-m": ("en-us+m7", 30),
          "en-child": ("en-gb+f5", 90)}
SENTENCES = ("Ik wil hier niet over praten, dat heb ik toch al gezegd.",
             "Waarom moet ik dit elke week weer opnieuw uitleggen aan jou?",
             "Dat is helemaal niet waar, je luistert gewoon nooit naar mij.",
             "I told you already, I do not want to talk about school today.",
             "Can we please just stop doing this, it is so boring and stupid.",
             "You always ask the same questions and it never helps at all.")


def _level(x: np.ndarray) -> np.ndarray:
    """Scale to an active RMS of 0.05 (about -26 dBFS)."""
    loud = x[np.abs(x) > 1e-4]
    return (x / (np.sqrt(np.mean(loud ** 2)) + 1e-9) * 0.05).astype(np.float32) if loud.size else x


def real_voices() -> dict[str, list[np.ndarray]]:
    """Each real speaker's recordings, 16 kHz mono, levelled."""
    from pipeline.audio import decode

    out = {}
    for name, patterns in REAL.items():
        clips = [_level(decode(p).samples) for pat in patterns for p in sorted(glob.glob(str(ROOT / pat)))]
        if clips:
            out[name] = clips
    return out


def espeak_voices() -> dict[str, list[np.ndarray]]:
    """Each espeak-ng voice reading every sentence, 16 kHz mono, levelled (empty without espeak-ng)."""
    import shutil

    from scipy.signal import resample_poly

    if shutil.which("espeak-ng") is None:
        return {}
    out = {}
    for name, (voice, pitch) in ESPEAK.items():
        clips = []
        for text in SENTENCES:
            wav = subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "--stdout", text], check=True,
                                 capture_output=True).stdout
            rate = int.from_bytes(wav[24:28], "little")
            x = np.frombuffer(wav[44:44 + (len(wav) - 44) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
            clips.append(_level(resample_poly(x, SR, rate).astype(np.float32)))
        out[name] = clips
    return out


def active(x: np.ndarray, hop: int = 160) -> np.ndarray:
    """Per-sample activity: the 10-ms frame's RMS within 30 dB of the loudest frame."""
    n = x.size // hop
    if n == 0:
        return np.zeros(x.size, dtype=bool)
    db = 10 * np.log10(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    out = np.zeros(x.size, dtype=bool)
    out[: n * hop] = np.repeat(db > db.max() - 30, hop)
    return out


def cut_in(rng: np.random.Generator, holder: list[np.ndarray], newcomer: list[np.ndarray], *, room: bool = False):
    """One mixture: (mix, true overlap start s, true overlap end s), or None when no overlap of >= 0.2 s results.

    With ``room``, both speakers are heard through a simulated room's impulse responses, with pink noise.
    """
    a_talk = np.concatenate([holder[i] for i in rng.permutation(len(holder))[:3]])
    b_talk = np.concatenate([newcomer[i] for i in rng.permutation(len(newcomer))[:2]])
    talking = np.flatnonzero(active(a_talk)[2 * SR: max(2 * SR + 1, a_talk.size - 2 * SR)]) + 2 * SR
    if talking.size == 0:
        return None
    onset = int(rng.choice(talking))
    stop = min(a_talk.size, onset + int(rng.uniform(0.3, 1.5) * SR))
    a_said = a_talk[:stop].copy()
    a_said[-480:] *= np.linspace(1.0, 0.0, min(480, a_said.size), dtype=np.float32)
    lead = SR
    n = lead + max(stop, onset + b_talk.size) + SR
    a, b = np.zeros(n, np.float32), np.zeros(n, np.float32)
    a[lead:lead + stop] = a_said
    b[lead + onset:lead + onset + b_talk.size] = b_talk * 10 ** (rng.uniform(0.0, 6.0) / 20)
    t0, t1 = np.flatnonzero(active(b))[0], np.flatnonzero(active(a))[-1]
    if t1 - t0 < 0.2 * SR:
        return None
    if room:
        from scipy.signal import oaconvolve

        from models.simulate_rooms import _pink, _room, _room_responses

        rirs, _ = _room_responses(_room(rng), rng, ["therapist", "client"])
        a = oaconvolve(a, rirs["therapist"])[:n].astype(np.float32)
        b = oaconvolve(b, rirs["client"])[:n].astype(np.float32)
        speech = a + b
        noise = _pink(rng, n).astype(np.float32)
        level = np.sqrt(np.mean(speech[speech != 0] ** 2))
        noise *= level / np.sqrt(np.mean(noise ** 2)) * 10 ** (-rng.uniform(20.0, 30.0) / 20)
        return speech + noise, t0 / SR, t1 / SR
    return a + b + rng.normal(0.0, 1e-4, n).astype(np.float32), t0 / SR, t1 / SR


def measure(voices: dict[str, list[np.ndarray]], n: int, seed: int, detector, settings, *, room: bool = False) -> dict:
    """Region edge errors over ``n`` cut-ins between two different voices of ``voices``."""
    from pipeline.overlap import overlap_regions

    rng = np.random.default_rng(seed)
    names = sorted(voices)
    rows = []
    while len(rows) < n:
        ka, kb = rng.choice(names, 2, replace=False)
        made = cut_in(rng, voices[ka], voices[kb], room=room)
        if made is None:
            continue
        mix, t0, t1 = made
        frames = detector.detect(mix, SR)
        regions = overlap_regions(frames, onset=settings.second_speaker_onset, offset=settings.second_speaker_offset,
                                  min_duration_s=settings.min_duration_s, duration_s=mix.size / SR)
        hit = [r for r in regions if r.end > t0 and r.start < t1]
        rows.append(dict(true_s=t1 - t0, start_err_s=min(r.start for r in hit) - t0 if hit else None,
                         end_err_s=max(r.end for r in hit) - t1 if hit else None))
    found = [r for r in rows if r["start_err_s"] is not None]

    def q(key):
        v = np.array([r[key] for r in found])
        return {"median": round(float(np.median(v)), 3), "q25": round(float(np.percentile(v, 25)), 3),
                "q75": round(float(np.percentile(v, 75)), 3)} if v.size else None

    short = [r for r in rows if r["true_s"] <= 1.0]
    kept = [r for r in short if r["start_err_s"] is not None
            and r["true_s"] + r["end_err_s"] - r["start_err_s"] <= 1.0]
    dur = [r["end_err_s"] - r["start_err_s"] for r in found]
    return {"mixtures": len(rows), "found": len(found), "true_overlap_median_s": round(float(np.median(
        [r["true_s"] for r in rows])), 3), "start_error_s": q("start_err_s"), "end_error_s": q("end_err_s"),
            "duration_error_median_s": round(float(np.median(dur)), 3) if dur else None,
            "true_at_most_1s": len(short), "found_at_most_1s": len(kept)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mixtures", type=int, default=120, help="cut-ins per kind of voice")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--room", action="store_true", help="put each cut-in in a simulated room, with noise")
    ap.add_argument("--json", type=Path, default=None,
                    help="default bench/results/overlap_edges.json (overlap_edges_room.json with --room)")
    args = ap.parse_args()
    args.json = args.json or ROOT / f"bench/results/overlap_edges{'_room' if args.room else ''}.json"

    from pipeline.overlap import SegmentationOverlapDetector
    from pipeline.settings import Settings

    settings = Settings().overlap
    detector = SegmentationOverlapDetector.from_settings(settings)
    out = {"room": args.room, "regions": f"second-speaker regions, onset {settings.second_speaker_onset:g} / offset "
                      f"{settings.second_speaker_offset:g}, at least {settings.min_duration_s:g} s"}
    for kind, voices in (("real", real_voices()), ("espeak", espeak_voices())):
        if len(voices) < 2:
            print(f"{kind}: fewer than two voices, skipped")
            continue
        r = measure(voices, args.mixtures, args.seed, detector, settings, room=args.room)
        out[kind] = dict(voices=sorted(voices), **r)
        s, e = r["start_error_s"] or {}, r["end_error_s"] or {}
        print(f"{kind:<7} {r['mixtures']} cut-ins, overlap found in {r['found']} (true overlap median "
              f"{r['true_overlap_median_s']:.2f} s): start {s.get('median', float('nan')):+.3f} s "
              f"(IQR {s.get('q25', float('nan')):+.2f} to {s.get('q75', float('nan')):+.2f}), end "
              f"{e.get('median', float('nan')):+.3f} s (IQR {e.get('q25', float('nan')):+.2f} to "
              f"{e.get('q75', float('nan')):+.2f}); true overlaps <= 1 s found <= 1 s: "
              f"{r['found_at_most_1s']} of {r['true_at_most_1s']}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
