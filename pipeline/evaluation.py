"""Scoring against references: DER (pyannote.metrics) and WER (jiwer).

Conventions of the shared reference data: DER with a collar in seconds
(``collar=0.5`` forgives ±0.25 s around each reference boundary), overlapped
speech scored; WER after lower-casing and removing punctuation.

References
----------
.. [1] Bredin, H. (2017). pyannote.metrics: a toolkit for reproducible
   evaluation, diagnostic, and error analysis of speaker diarization systems.
   Interspeech.
.. [2] NIST (2009). The Rich Transcription 2009 evaluation plan (RT-09), DER.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from pipeline.types import SpeakerTurn


@dataclass(frozen=True)
class DiarizationScore:
    """DER and its parts, in seconds of scored reference speech."""

    uri: str
    der: float
    missed_s: float
    false_alarm_s: float
    confusion_s: float
    total_s: float
    collar_s: float


def score_diarization(reference: Sequence[SpeakerTurn], hypothesis: Sequence[SpeakerTurn], *, uri: str = "x",
                      collar_s: float = 0.5, start_s: float | None = None,
                      end_s: float | None = None) -> DiarizationScore:
    """Diarization error rate (DER) of ``hypothesis`` against ``reference``.

    Parameters
    ----------
    reference, hypothesis : sequence of SpeakerTurn
        Speaker turns in seconds; labels need not match (optimal mapping).
    uri : str
        Recording id, echoed in the result.
    collar_s : float >= 0
        Total collar width in seconds (0.5 forgives ±0.25 s at each reference boundary).
    start_s, end_s : float, optional
        Scored region (UEM); default the union of both extents.

    Returns
    -------
    DiarizationScore
        ``der`` = (missed + false alarm + confusion) / total.
    """
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    def ann(turns):
        a = Annotation(uri=uri)
        for t in turns:
            a[Segment(t.start, t.end)] = t.speaker
        return a

    uem = Timeline([Segment(start_s, end_s)]) if start_s is not None and end_s is not None else None
    d = DiarizationErrorRate(collar=collar_s, skip_overlap=False)(ann(reference), ann(hypothesis), detailed=True,
                                                                  uem=uem)
    return DiarizationScore(uri=uri, der=float(d["diarization error rate"]), missed_s=float(d["missed detection"]),
                            false_alarm_s=float(d["false alarm"]), confusion_s=float(d["confusion"]),
                            total_s=float(d["total"]), collar_s=collar_s)


def normalise_text(text: str) -> str:
    """Lower-case, drop punctuation and apostrophes, collapse spaces (the WER convention here)."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).replace("'", "").split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word error rate (WER) after :func:`normalise_text`, computed with jiwer."""
    import jiwer

    return float(jiwer.wer(normalise_text(reference), normalise_text(hypothesis)))


def evaluate_diarization_file(audio_path, reference: Sequence[SpeakerTurn], *, settings, embedder,
                              num_speakers: int | None = None, collar_s: float = 0.5,
                              scored: tuple[float, float] | None = None):
    """Decode, run VAD and diarization on one file, and score it against its reference turns.

    The session's VAD step (:func:`pipeline.session.find_speech`), then voice clustering of the mix with the
    given count: the channel-per-speaker path of a session is not part of this evaluation.

    Parameters
    ----------
    audio_path : str or Path
        Recording.
    reference : sequence of SpeakerTurn
        Reference turns (from its RTTM).
    settings : Settings
        Audio, VAD and diarization settings.
    embedder : SpeakerEmbedder
        Speaker-embedding backend.
    num_speakers : int, optional
        Default: the number of speakers in the reference (the true count).
    collar_s : float
        DER collar in seconds.
    scored : (start_s, end_s), optional
        Scored region from the reference's UEM; default the whole recording.

    Returns
    -------
    (DiarizationScore, Diarization)
    """
    from pathlib import Path

    from pipeline.audio import decode
    from pipeline.diarization import diarize
    from pipeline.session import find_speech

    rec = decode(audio_path, settings=settings.audio)
    speech = find_speech(rec.samples, settings)
    n = num_speakers or len({t.speaker for t in reference}) or 1
    result = diarize(rec.samples, rec.sample_rate_hz, speech, num_speakers=n, settings=settings.diarization,
                     embedder=embedder)
    start, end = scored if scored is not None else (0.0, rec.duration_s)
    score = score_diarization(reference, result.turns, uri=Path(audio_path).stem, collar_s=collar_s,
                              start_s=start, end_s=end)
    return score, result


def read_uem(path) -> dict[str, tuple[float, float]]:
    """Scored regions from a UEM file (``uri channel start end`` per line, seconds); the first region per uri."""
    from pathlib import Path

    out: dict[str, tuple[float, float]] = {}
    for line in Path(path).read_text().splitlines():
        f = line.split()
        if len(f) >= 4:
            out.setdefault(f[0], (float(f[2]), float(f[3])))
    return out
