"""How faster-whisper should use the cores: one decoder with several threads, or several single-threaded decoders.

A recording's speech is cut between VAD regions into parts decoded at the same time
(``ALLIANCE_ASR__DECODERS``), each part by a CTranslate2 model of its own (one worker) with ``ALLIANCE_ASR__CPU_THREADS`` threads.
This bench runs the same audio through each configuration, each in a fresh process, and reports the ASR
stage's wall time, real-time factor, CPU time (user and system) and WER against the clips' transcripts.

Audio: two recordings built by :mod:`models.real_clips` from the real clips in the repository, ``--minutes``
each: English (sample.wav and speechocean762) decoded as ``en``, Dutch (the ten Dutch clips) decoded as ``nl``.

Usage::

    .venv/bin/python bench/asr_threads.py [--minutes 4]
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

CONFIGS = (  # label, decoders, threads per decoder
    ("1 decoder x 4 threads (before)", 1, 4),
    ("1 decoder x 2 threads", 1, 2),
    ("1 decoder x 1 thread", 1, 1),
    ("2 decoders x 1 thread (default)", 2, 1),
)

CHILD = r"""
import json, resource, sys, time, warnings
sys.path.insert(0, {root!r} + "/bench")
from peak_memory import peak_rss_mb
warnings.filterwarnings("ignore")
sys.path.insert(0, {root!r})
from pipeline.asr import load_backend, transcribe
from pipeline.audio import decode
from pipeline.settings import Settings
s = Settings()
asr = s.asr.model_copy(update={{"decoders": {decoders}, "cpu_threads": {threads}}})
backend = load_backend(asr, model_cache_dir=s.model_cache_dir, vad_settings=s.vad)
runs = {{}}
for language, wav in {files!r}:
    x = decode(wav).samples
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    t = transcribe(x, 16000, settings=asr, backend=backend, language=language)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    runs[language] = dict(duration_s=x.size / 16000, asr_s=time.perf_counter() - t0, user_s=r1.ru_utime - r0.ru_utime,
                          sys_s=r1.ru_stime - r0.ru_stime, text=t.text, words=len(t.words))
print(json.dumps(dict(runs=runs, peak_rss_mb=peak_rss_mb())))
"""


def run_config(decoders: int, threads: int, files: list[tuple[str, str]]) -> dict:
    code = CHILD.format(root=str(ROOT), decoders=decoders, threads=threads, files=files)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_ASR__")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"{decoders} x {threads} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="Length of each of the two recordings.")
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/asr_threads.json",
                        help="Where to write the results.")
    args = parser.parse_args()
    from models.real_clips import build
    from pipeline.evaluation import word_error_rate

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        references, files = {}, []
        for language, kinds in (("en", ("en",)), ("nl", ("nl",))):
            wav, text = build(args.minutes, Path(tmp) / f"{language}.wav", kinds, seed=1)
            references[language] = text
            files.append((language, str(wav)))
        for label, decoders, threads in CONFIGS:
            r = run_config(decoders, threads, files)
            runs = r["runs"].values()
            audio_s, asr_s = sum(x["duration_s"] for x in runs), sum(x["asr_s"] for x in runs)
            row = dict(config=label, decoders=decoders, threads=threads, audio_s=round(audio_s, 1),
                       asr_s=round(asr_s, 1), rtf=round(asr_s / audio_s, 4),
                       user_s=round(sum(x["user_s"] for x in runs), 1), sys_s=round(sum(x["sys_s"] for x in runs), 1),
                       peak_rss_mb=round(r["peak_rss_mb"]), cores=os.cpu_count())
            for language, x in r["runs"].items():
                row[f"wer_{language}"] = round(word_error_rate(references[language], x["text"]), 4)
                row[f"rtf_{language}"] = round(x["asr_s"] / x["duration_s"], 4)
            rows.append(row)
    print(f"{'config':<34}{'ASR s':>7}{'RTF':>7}{'x real':>8}{'user s':>8}{'sys s':>7}{'WER en':>8}{'WER nl':>8}"
          f"{'peak MB':>9}")
    for row in rows:
        print(f"{row['config']:<34}{row['asr_s']:>7.1f}{row['rtf']:>7.3f}{1 / row['rtf']:>8.1f}{row['user_s']:>8.1f}"
              f"{row['sys_s']:>7.1f}{100 * row['wer_en']:>7.1f}%{100 * row['wer_nl']:>7.1f}%{row['peak_rss_mb']:>9}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(dict(rows=rows, minutes_per_language=args.minutes), indent=1))
    print(f"written {args.json}")


if __name__ == "__main__":
    main()
