"""ASR backends side by side: faster-whisper int8 against openai-whisper float32, same audio.

Both run the same Whisper base weights (the bundled CTranslate2 model, and
the checkpoint ``alliance convert-model`` makes from it) through this
project's backends, with the same thread count, the same decoding options
(beam 5, temperature fallback, no conditioning on previous text, word
timestamps) and the same Silero VAD skipping of silences. faster-whisper at
float32 runs too, to separate the effect of int8 quantization from the
engine's.

Audio: two recordings built by :mod:`models.real_clips` from the real clips in
the repository, ``--minutes`` each: English (sample.wav and speechocean762)
decoded as ``en``, Dutch (the ten Dutch clips) decoded as ``nl``. WER is
against the clips' transcripts (jiwer, after this project's text
normalisation).

Each configuration runs in a fresh process, so its peak resident memory
(``VmHWM``, :func:`peak_memory.peak_rss_mb`) is its own: model loading plus decoding.

Usage::

    .venv/bin/python bench/asr_backends.py [--minutes 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIGS = (  # label, backend, compute type
    ("faster-whisper int8", "faster-whisper", "int8"),
    ("openai-whisper fp32", "openai-whisper", "float32"),
    ("faster-whisper fp32", "faster-whisper", "float32"),
)

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
asr = s.asr.model_copy(update={{"backend": {backend!r}, "compute_type": {compute!r}, "cpu_threads": {threads},
                               "beam_size": 5}})
t0 = time.perf_counter()
backend = load_backend(asr, model_cache_dir=s.model_cache_dir, vad_settings=s.vad)
load_s = time.perf_counter() - t0
runs = {{}}
for language, wav in {files!r}:
    x = decode(wav).samples
    t1 = time.perf_counter()
    t = transcribe(x, 16000, settings=asr, backend=backend, language=language)
    runs[language] = dict(duration_s=x.size / 16000, asr_s=time.perf_counter() - t1, text=t.text, words=len(t.words))
print(json.dumps(dict(load_s=load_s, runs=runs, peak_rss_mb=peak_rss_mb())))
"""


def run_config(backend: str, compute: str, threads: int, files: list[tuple[str, str]]) -> dict:
    code = CHILD.format(root=str(ROOT), backend=backend, compute=compute, threads=threads, files=files)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"{backend} {compute} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="Length of each of the two recordings.")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for every backend (the same for all).")
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/asr_backends.json",
                        help="Where to write the results.")
    args = parser.parse_args()
    from models.real_clips import build
    from pipeline.asr.model_store import resolve_checkpoint
    from pipeline.evaluation import word_error_rate
    from pipeline.settings import Settings

    s = Settings()
    resolve_checkpoint(s.asr.checkpoint, model_dir=s.asr.model_dir, cache_dir=s.model_cache_dir)  # convert once, untimed
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        references, files = {}, []
        for language, kinds in (("en", ("en",)), ("nl", ("nl",))):
            wav, text = build(args.minutes, Path(tmp) / f"{language}.wav", kinds, seed=1)
            references[language] = text
            files.append((language, str(wav)))
        outputs = {}
        for label, backend, compute in CONFIGS:
            r = run_config(backend, compute, args.threads, files)
            outputs[label] = r
            audio_s = sum(x["duration_s"] for x in r["runs"].values())
            asr_s = sum(x["asr_s"] for x in r["runs"].values())
            row = dict(config=label, backend=backend, compute_type=compute, threads=args.threads,
                       audio_s=round(audio_s, 1), asr_s=round(asr_s, 1), rtf=round(asr_s / audio_s, 4),
                       load_s=round(r["load_s"], 2), peak_rss_mb=round(r["peak_rss_mb"]))
            for language, x in r["runs"].items():
                row[f"wer_{language}"] = round(word_error_rate(references[language], x["text"]), 4)
                row[f"rtf_{language}"] = round(x["asr_s"] / x["duration_s"], 4)
            rows.append(row)
    base = rows[0]
    print(f"{'config':<22}{'RTF':>8}{'RTF en':>8}{'RTF nl':>8}{'x real time':>12}{'peak MB':>9}"
          f"{'WER en':>8}{'WER nl':>8}{'load s':>8}")
    for row in rows:
        print(f"{row['config']:<22}{row['rtf']:>8.3f}{row['rtf_en']:>8.3f}{row['rtf_nl']:>8.3f}"
              f"{1 / row['rtf']:>12.1f}{row['peak_rss_mb']:>9}{100 * row['wer_en']:>7.1f}%"
              f"{100 * row['wer_nl']:>7.1f}%{row['load_s']:>8.1f}")
    openai = next(r for r in rows if r["backend"] == "openai-whisper")
    ratio = openai["asr_s"] / base["asr_s"]
    agreement = {lang: word_error_rate(outputs["openai-whisper fp32"]["runs"][lang]["text"],
                                       outputs["faster-whisper int8"]["runs"][lang]["text"]) for lang in ("en", "nl")}
    print(f"speed ratio, faster-whisper int8 over openai-whisper fp32: {ratio:.2f}x "
          f"({base['asr_s']:.0f} s against {openai['asr_s']:.0f} s for {base['audio_s'] / 60:.1f} min of audio, "
          f"{args.threads} threads)")
    print("the two transcripts differ by WER " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in agreement.items()))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(dict(rows=rows, speed_ratio_faster_over_openai=round(ratio, 3),
                                         int8_vs_fp32_transcript_wer=agreement, minutes_per_language=args.minutes),
                                    indent=1))
    print(f"written {args.json}")


if __name__ == "__main__":
    main()
