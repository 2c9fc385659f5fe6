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
    """Lower-case, drop punctuation and apostrophes, collapse spaces (the WER convention here).

    A character that is neither a word character nor white space becomes a
    space, except an apostrophe, which is removed (``don't`` becomes
    ``dont``). Letters with accents and digits are kept.

    Parameters
    ----------
    text : str
        A transcript or reference text.

    Returns
    -------
    str
        Words separated by single spaces; empty when ``text`` has no words.
    """
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).replace("'", "").split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word error rate (WER) after :func:`normalise_text`, computed with jiwer.

    WER is (substitutions + deletions + insertions) divided by the number of
    reference words, from a word-level edit-distance alignment, as in NIST's
    scoring of speech recognition.

    Parameters
    ----------
    reference : str
        The reference transcript.
    hypothesis : str
        The recognised transcript.

    Returns
    -------
    float >= 0
        0 is a perfect match; it can exceed 1 when there are many insertions.
    """
    import jiwer

    return float(jiwer.wer(normalise_text(reference), normalise_text(hypothesis)))


def evaluate_diarization_file(audio_path, reference: Sequence[SpeakerTurn], *, settings, embedder,
                              num_speakers: int | None = None, collar_s: float = 0.5,
                              scored: tuple[float, float] | None = None, detector=None):
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
    detector : OverlapDetector, optional
        The segmentation model, for ``ALLIANCE_VAD__METHOD=segmentation``; default loaded from the settings when
        that method is set.

    Returns
    -------
    (DiarizationScore, Diarization)
    """
    from pathlib import Path

    from pipeline.audio import decode
    from pipeline.diarization import diarize
    from pipeline.session import find_speech

    rec = decode(audio_path, settings=settings.audio)
    if detector is None and settings.vad.method == "segmentation":
        from pipeline.overlap import SegmentationOverlapDetector

        detector = SegmentationOverlapDetector.from_settings(settings.overlap)
    speech = find_speech(rec.samples, settings, detector=detector)
    n = num_speakers or len({t.speaker for t in reference}) or 1
    result = diarize(rec.samples, rec.sample_rate_hz, speech, num_speakers=n, settings=settings.diarization,
                     embedder=embedder)
    start, end = scored if scored is not None else (0.0, rec.duration_s)
    score = score_diarization(reference, result.turns, uri=Path(audio_path).stem, collar_s=collar_s,
                              start_s=start, end_s=end)
    return score, result


def read_uem(path) -> dict[str, tuple[float, float]]:
    """Scored regions from a UEM file (``uri channel start end`` per line, seconds); the first region per uri.

    UEM is the NIST scoring format. Lines with fewer than four fields are
    skipped; the channel field is ignored.

    Parameters
    ----------
    path : str or Path
        The ``.uem`` file.

    Returns
    -------
    dict of str to (float, float)
        ``{uri: (start_s, end_s)}``, times in seconds.

    Raises
    ------
    ValueError
        A start or end field is not a number.
    OSError
        The file cannot be read.
    """
    from pathlib import Path

    out: dict[str, tuple[float, float]] = {}
    for line in Path(path).read_text().splitlines():
        f = line.split()
        if len(f) >= 4:
            out.setdefault(f[0], (float(f[2]), float(f[3])))
    return out


@dataclass(frozen=True)
class OverlapDetectionScore:
    """Overlapped-speech detection against a reference, collar 0 (pyannote.metrics detection metrics).

    ``precision`` and ``recall`` are 1.0 when there is nothing to find or
    nothing was found (pyannote's convention); ``f1`` is 0 when either is 0.
    Times in seconds.
    """

    uri: str
    precision: float
    recall: float
    f1: float
    reference_s: float
    detected_s: float
    correct_s: float
    scored_s: float


def reference_overlap(turns: Sequence[SpeakerTurn]) -> list[tuple[float, float]]:
    """Stretches (start, end) in seconds where two or more different speakers have a turn, merged.

    Turns of one speaker are first joined, so a speaker's own overlapping
    turns are not overlap. Turns that do not end after they start are
    ignored.

    Parameters
    ----------
    turns : sequence of SpeakerTurn
        Reference turns, times in seconds.

    Returns
    -------
    list of (float, float)
        ``(start_s, end_s)`` in time order, not overlapping; empty when no two
        speakers overlap.
    """
    from pyannote.core import Segment, Timeline

    by_speaker: dict[str, Timeline] = {}
    for t in turns:
        if t.end > t.start:
            by_speaker.setdefault(t.speaker, Timeline()).add(Segment(t.start, t.end))
    supports = [tl.support() for tl in by_speaker.values()]
    out = Timeline()
    for i, a in enumerate(supports):
        for b in supports[i + 1:]:
            for seg in a.crop(b, mode="intersection"):
                out.add(seg)
    return [(s.start, s.end) for s in out.support()]


def score_overlap_detection(reference: Sequence[SpeakerTurn], detected: Sequence, *, uri: str = "x",
                            start_s: float = 0.0, end_s: float | None = None) -> OverlapDetectionScore:
    """Precision, recall and F1 of detected overlapped speech, collar 0.

    Parameters
    ----------
    reference : sequence of SpeakerTurn
        Reference turns; overlap is where two or more speakers' turns meet
        (:func:`reference_overlap`).
    detected : sequence of (start_s, end_s) or of objects with ``start`` / ``end``
        Detected overlap regions (for example :class:`~pipeline.types.OverlapRegion`).
    uri : str
        Recording id, echoed in the result.
    start_s, end_s : float
        Scored region (UEM); ``end_s`` defaults to the end of the last
        reference turn or detection.

    Returns
    -------
    OverlapDetectionScore
    """
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.detection import DetectionPrecisionRecallFMeasure

    spans = [(d.start, d.end) if hasattr(d, "start") else (float(d[0]), float(d[1])) for d in detected]
    ref_spans = reference_overlap(reference)
    if end_s is None:
        end_s = max([e for _, e in ref_spans + spans] + [t.end for t in reference] + [start_s + 1e-3])
    ref, hyp = Annotation(uri=uri), Annotation(uri=uri)
    for a, b in ref_spans:
        ref[Segment(a, b)] = "overlap"
    for a, b in spans:
        if b > a:
            hyp[Segment(a, b), len(hyp)] = "overlap"
    uem = Timeline([Segment(start_s, end_s)], uri=uri)
    metric = DetectionPrecisionRecallFMeasure(collar=0.0, skip_overlap=False)
    c = metric.compute_components(ref, hyp, uem=uem)
    tp, retrieved, relevant = c["relevant retrieved"], c["retrieved"], c["relevant"]
    precision = tp / retrieved if retrieved > 0 else 1.0
    recall = tp / relevant if relevant > 0 else 1.0
    f1 = 0.0 if precision + recall == 0 or tp == 0 else 2 * precision * recall / (precision + recall)
    return OverlapDetectionScore(uri=uri, precision=float(precision), recall=float(recall), f1=float(f1),
                                 reference_s=float(relevant), detected_s=float(retrieved), correct_s=float(tp),
                                 scored_s=float(end_s - start_s))
