"""Diarization of a long session: peak memory, real-time factor, label stability.

Builds a long recording from the real two-speaker clip ``sample_audio/sample.wav``
(repeated with random silences of 0–10 s and gains of ±6 dB between copies,
so the same two voices recur for the whole session), with its reference RTTM
shifted to each copy. Each configuration runs in a fresh process that decodes
the file, runs VAD and diarizes it with 2 speakers; peak memory is that
process's maximum resident set size (``VmHWM``, :func:`peak_memory.peak_rss_mb`).

Configurations, side by side:

* ``subsample`` (this project's default): spectral clustering on at most 3000
  windows spread over the session, every window then joins the nearest
  speaker centroid;
* ``all-windows`` (the alternative): spectral clustering on every window, run
  on a shorter session because its affinity matrix grows with the square of
  the session length.

Usage::

    .venv/bin/python bench/long_session_diarization.py [--minutes 90] [--alt-minutes 20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build(minutes: float, out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write ``long.wav`` (16-bit) and ``long.rttm`` of about ``minutes`` minutes."""
    from pipeline.audio import decode, save_wav
    from pipeline.rttm import read_rttm

    clip = decode(ROOT / "sample_audio/sample.wav").samples
    ref = read_rttm(ROOT / "sample_audio/sample.rttm")["sample"]
    rng = np.random.default_rng(seed)
    parts, lines, t = [], [], 0.0
    while t < minutes * 60:
        gap = rng.uniform(0, 10)
        parts.append(np.zeros(int(gap * 16000), np.float32))
        t += gap
        parts.append(clip * 10 ** (rng.uniform(-6, 6) / 20))
        lines += [f"SPEAKER long 1 {t + r.start:.3f} {r.end - r.start:.3f} <NA> <NA> {r.speaker} <NA> <NA>\n"
                  for r in ref]
        t += clip.size / 16000
    wav = save_wav(out_dir / "long.wav", np.clip(np.concatenate(parts), -1, 1), 16000)
    rttm = out_dir / "long.rttm"
    rttm.write_text("".join(lines))
    return wav, rttm


CHILD = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, {root!r})
sys.path.insert(0, {root!r} + "/bench")
from peak_memory import peak_rss_mb
from pipeline.audio import decode
from pipeline.diarization import diarize
from pipeline.embedders import clustering_embedder
from pipeline.evaluation import score_diarization
from pipeline.rttm import read_rttm
from pipeline.settings import Settings
from pipeline.vad import detect_speech
s = Settings()
dia = s.diarization.model_copy(update={{"max_cluster_windows": {max_windows}}})
embedder = clustering_embedder(s.diarization)
t0 = time.perf_counter()
rec = decode({wav!r})
t1 = time.perf_counter()
speech = detect_speech(rec.samples, 16000, settings=s.vad)
t2 = time.perf_counter()
d = diarize(rec.samples, 16000, speech, num_speakers=2, settings=dia, embedder=embedder)
t3 = time.perf_counter()
score = score_diarization(read_rttm({rttm!r})["long"], d.turns, uri="long", collar_s=0.5)
print(json.dumps(dict(duration_s=rec.duration_s, decode_s=t1 - t0, vad_s=t2 - t1, diarize_s=t3 - t2,
                      der=score.der, speakers=len(d.speakers),
                      peak_rss_mb=peak_rss_mb())))
"""


def run(wav: Path, rttm: Path, max_windows: int) -> dict:
    code = CHILD.format(root=str(ROOT), wav=str(wav), rttm=str(rttm), max_windows=max_windows)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=90.0)
    parser.add_argument("--alt-minutes", type=float, default=20.0)
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/long_session_diarization.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, minutes, max_windows in (("subsample", args.minutes, 3000),
                                           ("all-windows", args.alt_minutes, 10 ** 9)):
            folder = Path(tmp) / name
            folder.mkdir()
            wav, rttm = build(minutes, folder)
            r = run(wav, rttm, max_windows)
            r.update(config=name, rtf_diarize=r["diarize_s"] / r["duration_s"])
            rows.append(r)
            print(f"{name:<12} {r['duration_s'] / 60:6.1f} min  decode {r['decode_s']:6.1f} s  VAD {r['vad_s']:6.1f} s  "
                  f"diarize {r['diarize_s']:6.1f} s (RTF {r['rtf_diarize']:.3f})  peak RSS {r['peak_rss_mb']:7.0f} MB  "
                  f"DER {100 * r['der']:.1f} %  speakers {r['speakers']}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=1))
    print(f"written {args.json}")


if __name__ == "__main__":
    main()
