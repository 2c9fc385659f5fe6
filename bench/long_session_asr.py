"""ASR of a long session: peak memory, real-time factor, and agreement with shorter pieces.

Builds a long recording (default 90 minutes) from the real two-speaker clip
``sample_audio/sample.wav`` with :func:`bench.long_session_diarization.build`,
decodes it and transcribes it in one call, in a fresh process whose peak
resident memory (``VmHWM``, :func:`peak_memory.peak_rss_mb`) is reported. Then it transcribes the first
10 minutes on their own and compares the two transcripts over those minutes
(WER of one against the other, and the start-time difference of matched
words): a long session must give what shorter pieces would.

Usage::

    .venv/bin/python bench/long_session_asr.py [--minutes 90] [--piece-minutes 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, {root!r})
sys.path.insert(0, {root!r} + "/bench")
from peak_memory import peak_rss_mb
from pipeline.asr import load_backend, transcribe
from pipeline.audio import decode
from pipeline.settings import Settings
s = Settings()
backend = load_backend(s.asr, model_cache_dir=s.model_cache_dir, vad_settings=s.vad)
t0 = time.perf_counter()
rec = decode({wav!r}, settings=s.audio)
x = rec.samples[: int({limit_s} * 16000)]
t1 = time.perf_counter()
t = transcribe(x, 16000, settings=s.asr, backend=backend, language="en")
t2 = time.perf_counter()
json.dump([[w.start, w.end, w.text] for w in t.words], open({out!r}, "w"))
print(json.dumps(dict(duration_s=x.size / 16000, decode_s=t1 - t0, asr_s=t2 - t1, words=len(t.words),
                      peak_rss_mb=peak_rss_mb())))
"""


def run(wav: Path, limit_s: float, out: Path) -> dict:
    code = CHILD.format(root=str(ROOT), wav=str(wav), limit_s=limit_s, out=str(out))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def compare(long_words: list, piece_words: list, until_s: float) -> dict:
    """WER of the long run's words against the piece's, and start-time differences of matched words, before ``until_s``."""
    import numpy as np

    from pipeline.evaluation import normalise_text, word_error_rate

    a = [w for w in piece_words if w[1] <= until_s - 5]
    b = [w for w in long_words if w[1] <= until_s - 5]
    wer = word_error_rate(" ".join(w[2] for w in a), " ".join(w[2] for w in b))
    # the built session repeats one clip, so words are matched by text within 2 s, not by sequence alone
    diffs = []
    for start, _, text in a:
        same = [abs(start - s2) for s2, _, t2 in b if normalise_text(t2) == normalise_text(text) and abs(start - s2) < 2]
        if same:
            diffs.append(min(same))
    return dict(wer_long_vs_piece=wer, matched_words=len(diffs), words_in_piece=len(a),
                median_start_diff_s=float(np.median(diffs)) if diffs else None,
                p95_start_diff_s=float(np.percentile(diffs, 95)) if diffs else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=90.0)
    parser.add_argument("--piece-minutes", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/long_session_asr.json")
    args = parser.parse_args()
    from bench.long_session_diarization import build

    with tempfile.TemporaryDirectory() as tmp:
        wav, _ = build(args.minutes, Path(tmp))
        long_out, piece_out = Path(tmp) / "long.json", Path(tmp) / "piece.json"
        whole = run(wav, args.minutes * 60, long_out)
        piece = run(wav, args.piece_minutes * 60, piece_out)
        agreement = compare(json.loads(long_out.read_text()), json.loads(piece_out.read_text()),
                            args.piece_minutes * 60)
    rows = {"whole": {**whole, "rtf": whole["asr_s"] / whole["duration_s"]},
            "piece": {**piece, "rtf": piece["asr_s"] / piece["duration_s"]}, "agreement": agreement}
    for name in ("whole", "piece"):
        r = rows[name]
        print(f"{name:<6} {r['duration_s'] / 60:6.1f} min  decode {r['decode_s']:5.1f} s  ASR {r['asr_s']:7.1f} s "
              f"(RTF {r['rtf']:.3f})  {r['words']} words  peak RSS {r['peak_rss_mb']:6.0f} MB")
    print(f"first {args.piece_minutes:g} min, long run against the piece alone: WER {100 * agreement['wer_long_vs_piece']:.1f} %, "
          f"{agreement['matched_words']} of {agreement['words_in_piece']} words matched, start-time difference "
          f"median {agreement['median_start_diff_s']:.2f} s, 95th percentile {agreement['p95_start_diff_s']:.2f} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=1))
    print(f"written {args.json}")


if __name__ == "__main__":
    main()
