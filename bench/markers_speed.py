"""Time and memory of computing every alliance marker for a long session.

Builds a session of ``--minutes`` (default 60) from the real two-speaker clip
``sample_audio/sample.wav`` with :func:`bench.long_session_diarization.build`,
takes its reference RTTM as the speaker turns and its STM transcript (words
spread evenly over each segment) as the transcript, so that ASR and
diarization are not part of the measurement. Then, in a fresh process, it runs
the analysis's marker stages (:func:`pipeline.session.describe_session`, the
code the clinic's flow runs) and times each with the session hook: the fine VAD
pass and speaker-change refinement (``pauses``), pYIN prosody per turn
(``prosody``), roles and utterances, session turn metrics, and the lexical
markers with the per-window feature table and the session-level markers
(``features``). Peak memory is that process's maximum resident set size
(``VmHWM``, :func:`peak_memory.peak_rss_mb`).

Side by side: pYIN at the default pitch grid of librosa (0.1 semitone) on the
first ``--alt-minutes`` minutes, the alternative this project replaced.

Usage::

    .venv/bin/python bench/markers_speed.py [--minutes 60] [--alt-minutes 5]
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


def markers(wav: Path, rttm: Path, stm: Path, limit_s: float, resolution: float) -> dict:
    """The marker stages on the first ``limit_s`` seconds, pYIN on a grid of ``resolution`` semitones; in this process.

    Returns the JSON-ready measurements (seconds per stage, peak RSS in MB).
    """
    import dataclasses
    from peak_memory import peak_rss_mb
    import time
    import warnings

    warnings.filterwarnings("ignore")
    from pipeline.audio import decode
    from pipeline.sidecar import Sidecar
    from pipeline.rttm import read_rttm
    from pipeline.session import describe_session
    from pipeline.settings import Settings
    from pipeline.types import Diarization, Transcript, Word
    from pipeline.vad import detect_speech

    s = Settings()
    s = s.model_copy(update={"features": s.features.model_copy(update={"pitch_resolution_st": resolution})})
    rec = decode(wav)
    x = rec.samples[: int(limit_s * 16000)]
    duration = x.size / 16000
    turns = tuple(t for t in read_rttm(rttm)["long"] if t.end <= duration)
    dia = Diarization(turns, tuple(sorted({t.speaker for t in turns})), "reference")
    words = []
    for line in stm.read_text().splitlines():
        _, _, _, a, b, text = line.split(maxsplit=5)
        a, b, toks = float(a), float(b), text.split()
        if b > duration:
            continue
        step = (b - a) / len(toks)
        words += [Word(a + i * step, a + (i + 1) * step, w, 1.0, None) for i, w in enumerate(toks)]
    transcript = Transcript(tuple(words), "en", 1.0, duration)
    speech = detect_speech(x, 16000, settings=s.vad)
    started: dict[str, float] = {}
    times: dict[str, float] = {}

    def timer(stage: str, fraction: float) -> None:
        if fraction == 0.0:
            started[stage] = time.perf_counter()
        elif fraction >= 1.0:
            times[stage] = time.perf_counter() - started[stage]

    result = describe_session(x, dataclasses.replace(rec.without_audio(), duration_s=duration), speech, transcript,
                              dia, Sidecar(), s, session_id="bench", hook=timer)
    return dict(duration_s=duration, speech_s=float(sum(r.end - r.start for r in speech)), turns=len(turns),
                utterances=len(result.utterances), windows=len(result.features.frames), stages_s=times,
                total_s=sum(times.values()), peak_rss_mb=peak_rss_mb(),
                pitch_resolution_st=resolution)


def stm_for(build_rttm: Path, out: Path) -> Path:
    """An STM for the built session: the sample's STM shifted to each copy of the clip.

    :func:`build` writes the sample's RTTM lines once per copy, in file order,
    so each block's first line minus the sample's first turn start is that
    copy's offset.
    """
    sample_lines = [ln.split() for ln in (ROOT / "sample_audio/sample.rttm").read_text().splitlines() if ln.strip()]
    built = [ln.split() for ln in build_rttm.read_text().splitlines() if ln.strip()]
    n = len(sample_lines)
    offsets = [float(built[i][3]) - float(sample_lines[0][3]) for i in range(0, len(built), n)]
    stm = [ln.split(maxsplit=5) for ln in (ROOT / "sample_audio/sample.stm").read_text().splitlines() if ln.strip()]
    with open(out, "w") as f:
        for offset in offsets:
            for _, ch, spk, a, b, text in stm:
                f.write(f"long {ch} {spk} {offset + float(a):.3f} {offset + float(b):.3f} {text}\n")
    return out


def run(wav: Path, rttm: Path, stm: Path, limit_s: float, resolution: float) -> dict:
    """:func:`markers` in a fresh process, so its peak memory is its own."""
    args = json.dumps(dict(wav=str(wav), rttm=str(rttm), stm=str(stm), limit_s=limit_s, resolution=resolution))
    out = subprocess.run([sys.executable, __file__, "--child", args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--alt-minutes", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/markers_speed.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one measurement, in the process run() started
    args = parser.parse_args()
    if args.child:
        a = json.loads(args.child)
        print(json.dumps(markers(Path(a["wav"]), Path(a["rttm"]), Path(a["stm"]), a["limit_s"], a["resolution"])))
        return
    from bench.long_session_diarization import build

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        wav, rttm = build(args.minutes, Path(tmp))
        stm = stm_for(rttm, Path(tmp) / "long.stm")
        for name, minutes, resolution in (("pYIN grid 0.25 st (default)", args.minutes, 0.25),
                                          ("pYIN grid 0.1 st (librosa default)", args.alt_minutes, 0.1)):
            r = run(wav, rttm, stm, minutes * 60, resolution)
            r.update(config=name, rtf=r["total_s"] / r["duration_s"])
            rows.append(r)
            stages = "  ".join(f"{k} {v:.1f} s" for k, v in r["stages_s"].items())
            print(f"{name:<36} {r['duration_s'] / 60:5.1f} min ({r['speech_s'] / 60:.1f} min speech, {r['turns']} turns, "
                  f"{r['utterances']} utterances, {r['windows']} windows): total {r['total_s']:.1f} s "
                  f"(RTF {r['rtf']:.3f}), peak RSS {r['peak_rss_mb']:.0f} MB\n    {stages}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=1))
    print(f"written {args.json}")


if __name__ == "__main__":
    main()
