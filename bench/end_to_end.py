"""End to end: one session through the ``analyze_session`` flow, time and peak memory per stage.

Sessions are built by :mod:`models.real_clips` from the real clips in the
repository and analysed with the flow's defaults as in a clinic: 2 speakers,
the shipped classifier, the full report.

* ``conversation``, 10 and 60 minutes (and 90 with ``--only conversation-90``, the memory goal): the English two-speaker phone call,
  the meeting-room excerpts and the children's read speech, with the
  session's language given (``en``), as the nightly inbox's sidecar gives it;
* ``mixed``, 10 minutes: the same plus the Dutch clips in random order, with
  language ``auto``: the language is decided per stretch of speech and every
  switch starts a new decoding run, a worst case no real session comes near.

Each session runs in a fresh process, as ``alliance analyze`` would: the
models are loaded inside the run (their loading time is part of the ASR and
diarization stages), and Prefect starts its temporary API server. Before the
first session a small flow runs once in the bench's data folder, so Prefect's
database exists as on a clinic's machine after its first night; the very first
run on a machine creates it, which took another 15-25 s on 2 cores. Stage times
come from the flow's hook: a stage runs from the end of the one before (the
first from its own start) to its end, so a task's model loading and Prefect's
task overhead count in its stage; what comes before the first stage is flow
start-up. A thread samples the process's resident memory every 20 ms and keeps
the maximum per stage, with the prosody stage's helper process added while it
runs. ``peak_rss_mb`` is the larger of the process's maximum resident set
size (``VmHWM``, :func:`peak_memory.peak_rss_mb`) and that sampled sum; Prefect's temporary server is a
separate process whose peak is listed apart.

Usage::

    .venv/bin/python bench/end_to_end.py [--only conversation-10 conversation-60 mixed-10 conversation-90]
        [--json out.json]
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


def analyse(wav: Path, out: Path, language: str) -> dict:
    """One session through ``analyze_session`` in this process: seconds and peak memory per stage."""
    from peak_memory import peak_rss_mb
    import threading
    import time
    import warnings

    warnings.filterwarnings("ignore")
    import psutil

    from flows.analyze import STAGES, analyze_session, preload_analysis
    from pipeline.asr.faster_whisper_backend import FasterWhisperBackend

    me = psutil.Process()
    current = {"stage": STAGES[0]}  # the first stage not yet done
    peaks = {s: 0 for s in STAGES}
    first: list[float] = []
    ends: dict[str, float] = {}
    server_peak = [0]
    stop = threading.Event()

    whole = [0]  # this process and its prosody helpers together

    def sample() -> None:
        while not stop.is_set():
            rss, server = me.memory_info().rss, 0
            try:
                for child in me.children(recursive=True):
                    if "pipeline.prosody" in child.cmdline():  # the prosody stage's helper (python -m pipeline.prosody)
                        rss += child.memory_info().rss
                    else:
                        server += child.memory_info().rss
            except psutil.Error:
                pass
            peaks[current["stage"]] = max(peaks[current["stage"]], rss)
            whole[0] = max(whole[0], rss)
            server_peak[0] = max(server_peak[0], server)
            stop.wait(0.02)

    def timer(stage: str, fraction: float) -> None:
        if not first:
            first.append(time.perf_counter())
        if fraction >= 1.0 and stage not in ends:
            ends[stage] = time.perf_counter()
            current["stage"] = STAGES[min(STAGES.index(stage) + 1, len(STAGES) - 1)]

    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    preload_analysis()  # as `alliance analyze` does
    report = analyze_session(str(wav), out_dir=str(out), session_id="bench", language=language, hook=timer)
    total = time.perf_counter() - t0
    stop.set()
    starts, prev = {}, first[0]
    for s in STAGES:
        starts[s] = prev
        prev = ends.get(s, prev)
    return dict(
        duration_s=report.recording.duration_s, total_s=total, flow_start_s=first[0] - t0,
        stages={s: dict(seconds=ends[s] - starts[s], peak_rss_mb=peaks[s] / 2**20) for s in STAGES if s in ends},
        peak_rss_mb=max(peak_rss_mb(), whole[0] / 2**20),
        prefect_server_peak_mb=server_peak[0] / 2**20, words=len(report.transcript.words),
        language=report.transcript.language, language_segments=len(report.transcript.language_segments),
        flags=len(report.flags), asr_counts=dict(FasterWhisperBackend.decoding_counts))


SETS = {  # name: (minutes, clip kinds, language)
    "conversation-10": (10.0, ("en", "meeting"), "en"),
    "conversation-60": (60.0, ("en", "meeting"), "en"),
    "conversation-90": (90.0, ("en", "meeting"), "en"),
    "mixed-10": (10.0, ("en", "nl", "meeting"), "auto"),
}


def run_session(wav: Path, out: Path, env: dict, language: str) -> dict:
    """:func:`analyse` in a fresh process."""
    args = json.dumps(dict(wav=str(wav), out=str(out), language=language))
    res = subprocess.run([sys.executable, __file__, "--child", args], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"{wav.name} failed:\n{res.stderr[-4000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def warm_prefect(env: dict) -> None:
    """Run one empty flow with ``env``, so Prefect's database in the data folder is created before the timed runs."""
    code = "import flows\nfrom prefect import flow\nflow(lambda: None, name='warm-up')()"
    subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(SETS),
                        default=[name for name in SETS if name != "conversation-90"], help="Sessions to run.")
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/end_to_end.json",
                        help="Where to write the results.")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one session, in the process run_session() started
    args = parser.parse_args()
    if args.child:
        a = json.loads(args.child)
        print(json.dumps(analyse(Path(a["wav"]), Path(a["out"]), a["language"])))
        return
    from models.real_clips import build

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ALLIANCE_DATA_DIR": str(Path(tmp) / "data")}
        warm_prefect(env)
        for name in args.only:
            minutes, kinds, language = SETS[name]
            wav, _ = build(minutes, Path(tmp) / f"{name}.wav", kinds, seed=2)
            r = run_session(wav, Path(tmp) / f"out-{name}", env, language)
            r["speed_x_real_time"] = r["duration_s"] / r["total_s"]
            r["language_setting"] = language
            results[name] = r
            print(f"\n{name}: {r['duration_s'] / 60:.1f} min, language {language}: {r['total_s']:.0f} s in all, "
                  f"{r['speed_x_real_time']:.1f}x real time, peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"(Prefect's temporary server: {r['prefect_server_peak_mb']:.0f} MB more); {r['words']} words, "
                  f"{r['language_segments']} language stretches, {r['flags']} flags")
            print(f"  {'stage':<18}{'seconds':>9}{'RTF':>8}{'peak RSS MB':>13}")
            print(f"  {'(flow start-up)':<18}{r['flow_start_s']:>9.1f}")
            for stage, st in r["stages"].items():
                print(f"  {stage:<18}{st['seconds']:>9.1f}{st['seconds'] / r['duration_s']:>8.3f}"
                      f"{st['peak_rss_mb']:>13.0f}")
            other = r["total_s"] - r["flow_start_s"] - sum(st["seconds"] for st in r["stages"].values())
            print(f"  {'(flow end)':<18}{other:>9.1f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    print(f"written {args.json}")


if __name__ == "__main__":
    main()
