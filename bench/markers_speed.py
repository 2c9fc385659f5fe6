"""Time and memory of computing every alliance marker for a long session.

Builds a session of ``--minutes`` (default 60) from the real two-speaker clip
``sample_audio/sample.wav`` with :func:`bench.long_session_diarization.build`,
takes its reference RTTM as the speaker turns and its STM transcript (words
spread evenly over each segment) as the transcript, so that ASR and
diarization are not part of the measurement. Then, in a fresh process, it
times each marker stage as the analysis flow runs it: the fine VAD pass and
speaker-change refinement, pYIN prosody per turn, utterances and their
lexical markers, session turn metrics, the per-window feature table and the
session-level markers. Peak memory is that process's maximum resident set
size (``ru_maxrss``).

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

CHILD = r"""
import dataclasses, json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, {root!r})
import numpy as np
from pipeline.audio import decode
from pipeline.words import assign_words
from pipeline.features import session_markers, window_features
from pipeline.lexical import load_lexicon, utterance_markers
from pipeline.prosody import turn_prosody
from pipeline.roles import assign_roles
from pipeline.rttm import read_rttm
from pipeline.settings import Settings
from pipeline.turns import refine_speaker_changes, turn_metrics, utterances
from pipeline.types import Diarization, Transcript, Word
from pipeline.vad import detect_speech, fine_pauses

s = Settings()
fs = s.features.model_copy(update={{"pitch_resolution_st": {resolution}}})
rec = decode({wav!r})
x = rec.samples[: int({limit_s} * 16000)]
turns = tuple(t for t in read_rttm({rttm!r})["long"] if t.end <= x.size / 16000)
dia = Diarization(turns, tuple(sorted({{t.speaker for t in turns}})), "reference")
words = []
for line in open({stm!r}):
    _, _, _, a, b, text = line.split(maxsplit=5)
    a, b, toks = float(a), float(b), text.split()
    if b > x.size / 16000:
        continue
    step = (b - a) / len(toks)
    words += [Word(a + i * step, a + (i + 1) * step, w, 1.0, None) for i, w in enumerate(toks)]
transcript = Transcript(tuple(words), "en", 1.0, x.size / 16000)
speech = detect_speech(x, 16000, settings=s.vad)
times = {{}}
t = time.perf_counter()
pauses = fine_pauses(x, 16000, threshold=fs.change_vad_threshold, min_silence_ms=fs.change_min_silence_ms)
dia_tt = dataclasses.replace(dia, turns=refine_speaker_changes(dia.turns, pauses, max_shift_s=fs.change_max_shift_s))
times["fine VAD + refine"] = time.perf_counter() - t; t = time.perf_counter()
prosody = turn_prosody(x, 16000, dia_tt.turns, settings=fs)
times["prosody (pYIN, RMS)"] = time.perf_counter() - t; t = time.perf_counter()
roles = assign_roles(dia_tt)
utts = utterances(assign_words(transcript, dia), roles)
marks = utterance_markers(utts, language="en", lexicon=load_lexicon())
times["utterances + lexical"] = time.perf_counter() - t; t = time.perf_counter()
metrics = turn_metrics(dia_tt, roles, duration_s=x.size / 16000)
times["turn metrics"] = time.perf_counter() - t; t = time.perf_counter()
common = dict(duration_s=x.size / 16000, settings=fs, markers=marks, speech=speech)
feats = window_features(dia_tt, roles, utts, prosody, **common)
times["window features"] = time.perf_counter() - t; t = time.perf_counter()
session = session_markers(dia_tt, roles, utts, prosody, **common)
times["session markers"] = time.perf_counter() - t
print(json.dumps(dict(duration_s=x.size / 16000, speech_s=float(sum(r.end - r.start for r in speech)),
                      turns=len(dia_tt.turns), utterances=len(utts), windows=len(feats.frames), stages_s=times,
                      total_s=sum(times.values()), peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      pitch_resolution_st={resolution})))
"""


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
    code = CHILD.format(root=str(ROOT), wav=str(wav), rttm=str(rttm), stm=str(stm), limit_s=limit_s,
                        resolution=resolution)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--alt-minutes", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/markers_speed.json")
    args = parser.parse_args()
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
