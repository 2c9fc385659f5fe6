"""The clinic's mix end to end: easy and hard sessions, clean and noisy, each alone in a fresh process.

Cases, ``--minutes`` each (10 by default), built from material in the repository:

* ``english``: the English phone call, the meeting-room excerpts and the children's read speech (``en`` given);
* ``dutch``: the Dutch read speech of two speakers (``nl`` given);
* ``children``: the children's read English (speechocean762) alone (``en`` given);
* ``simulated-nl``: a simulated Dutch session of :mod:`models.simulate` with a child client and a parent in the
  room (espeak-ng voices, the simulator's room noise; ``nl`` given);
* each again with pink noise added at an SNR of 10 dB (against the RMS of the whole clean recording), ``-noisy``.

Every case runs through the ``analyze_session`` flow as :mod:`bench.end_to_end` runs it (a fresh process, models
loaded inside, Prefect's temporary server, the full report). Per case: wall time, × real time, peak RSS, time per
stage, words, and Whisper's decoding counts (segments, segments that needed temperature fallback, parts, parts
finished greedily after the ASR time limit) and WER where the clips have transcripts.

With ``--backends faster-whisper openai-whisper`` every case runs with each Whisper backend in turn, in the same
run on the same audio (``ALLIANCE_ASR__BACKEND``), and the table gives openai-whisper's time over faster-whisper's.

Usage::

    .venv/bin/python bench/clinic_mix.py [--minutes 10] [--only english dutch-noisy ...]
        [--backends faster-whisper openai-whisper] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from end_to_end import run_session, warm_prefect  # noqa: E402

CLEAN = {  # name: (clip kinds or "simulated", language, seed)
    "english": (("en", "meeting"), "en", 2),
    "dutch": (("nl",), "nl", 2),
    "children": (("children",), "en", 3),
    "simulated-nl": ("simulated", "nl", 0),
}
CASES = [*CLEAN, *(f"{name}-noisy" for name in CLEAN)]
SNR_DB = 10.0


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Pink (1/f power) noise of ``n`` samples, unit RMS, by shaping white noise's spectrum."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.size, dtype=float)
    f[0] = 1.0
    noise = np.fft.irfft(spectrum / np.sqrt(f), n)
    return (noise / np.sqrt(np.mean(noise ** 2))).astype(np.float32)


def simulated_with_parent(folder: Path, minutes: float) -> tuple[Path, None]:
    """A simulated Dutch session whose metadata lists a parent: the first seed from 0 that gives one."""
    from models.simulate import simulate_session

    for seed in range(50):
        out = simulate_session(folder / f"sim-{seed}", seed=seed, language="nl", minutes=minutes)
        roles = [p.get("role") for p in json.loads((out / "metadata.json").read_text())["participants"]]
        if "parent" in roles:
            return out / "recording.wav", None
    raise SystemExit("no simulated session with a parent in 50 seeds")


def build_case(name: str, minutes: float, tmp: Path) -> tuple[Path, str, str | None]:
    """The case's recording, its language and its reference words (None when unknown)."""
    from models.real_clips import build
    from pipeline.audio import decode, save_wav

    base = name.removesuffix("-noisy")
    kinds, language, seed = CLEAN[base]
    clean = tmp / f"{base}.wav"
    if not clean.exists():
        if kinds == "simulated":
            wav, text = simulated_with_parent(tmp, minutes)
            clean.write_bytes(wav.read_bytes())
        else:
            _, text = build(minutes, clean, kinds, seed=seed)
        (tmp / f"{base}.txt").write_text(text or "")
    text = (tmp / f"{base}.txt").read_text() or None
    if name == base:
        return clean, language, text
    x = decode(clean).samples
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    noise = pink_noise(x.size, np.random.default_rng(seed)) * np.float32(rms * 10 ** (-SNR_DB / 20))
    noisy = tmp / f"{name}.wav"
    save_wav(noisy, np.clip(x + noise, -1, 1), 16000)
    return noisy, language, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="Length of each case, about: the simulated cases end with the episode under way (a "
                             "1-minute request gave 2.7 minutes); the JSON gives each case's real length.")
    parser.add_argument("--only", nargs="+", choices=CASES, default=CASES, help="Cases to run.")
    parser.add_argument("--backends", nargs="+", choices=("faster-whisper", "openai-whisper"),
                        default=["faster-whisper"], help="Whisper backends, each run on every case.")
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/clinic_mix.json",
                        help="Where to write every case's figures (times per stage, peaks, decoding counts, WER).")
    args = parser.parse_args()
    from pipeline.evaluation import word_error_rate

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "ALLIANCE_DATA_DIR": str(tmp / "data")}
        warm_prefect(env)
        for name in args.only:
            wav, language, text = build_case(name, args.minutes, tmp)
            for backend in args.backends:
                key = name if backend == "faster-whisper" else f"{name}@{backend}"
                r = run_session(wav, tmp / f"out-{key}", {**env, "ALLIANCE_ASR__BACKEND": backend}, language)
                r["speed_x_real_time"] = r["duration_s"] / r["total_s"]
                r["language_setting"] = language
                r["backend"] = backend
                if text:
                    words = json.loads((tmp / f"out-{key}" / "session.json").read_text())["transcript"]["words"]
                    r["wer"] = word_error_rate(text, " ".join(w["text"] for w in words))
                results[key] = r
                wer = f", WER {100 * r['wer']:.1f} %" if "wer" in r else ""
                print(f"{key}: {r['duration_s'] / 60:.1f} min, {r['total_s']:.0f} s, {r['speed_x_real_time']:.1f}x "
                      f"real time, peak {r['peak_rss_mb']:.0f} MB, ASR {r['stages']['asr']['seconds']:.0f} s, "
                      f"{r['words']} words{wer}, Whisper {r.get('asr_counts', {})}", flush=True)
    print(f"\n{'case':<36}{'min':>6}{'s':>7}{'x real':>8}{'peak MB':>9}{'ASR s':>7}{'diar s':>8}{'prosody s':>10}"
          f"{'words':>7}{'fallback':>10}{'WER':>7}{'time / faster':>15}")
    for name, r in results.items():
        st, c = r["stages"], r.get("asr_counts", {})
        wer = f"{100 * r['wer']:.1f}%" if "wer" in r else "-"
        base = results.get(name.partition("@")[0])
        ratio = f"{r['total_s'] / base['total_s']:.2f}" if base else "-"
        print(f"{name:<36}{r['duration_s'] / 60:>6.1f}{r['total_s']:>7.0f}{r['speed_x_real_time']:>8.1f}"
              f"{r['peak_rss_mb']:>9.0f}{st['asr']['seconds']:>7.0f}{st['diarization']['seconds']:>8.0f}"
              f"{st['prosody']['seconds']:>10.0f}{r['words']:>7}"
              f"{c.get('fallback_segments', 0):>5}/{c.get('segments', 0):<4}{wer:>7}{ratio:>15}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(dict(minutes=args.minutes, snr_db=SNR_DB, backends=args.backends, cases=results),
                                     indent=1))
    print(f"written {args.json}")


if __name__ == "__main__":
    main()
