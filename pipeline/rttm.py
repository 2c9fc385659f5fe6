"""Read and write RTTM (Rich Transcription Time Marked, NIST RT-09) speaker files.

One ``SPEAKER`` line per turn: ``SPEAKER uri 1 start duration <NA> <NA> name <NA> <NA>``,
times in seconds.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from pipeline.errors import InputError
from pipeline.types import Diarization, SpeakerTurn


def write_rttm(diarization: Diarization, path: str | Path, *, uri: str) -> Path:
    """Write speaker turns as RTTM ``SPEAKER`` lines (times with 3 decimals, seconds).

    The format is NIST's RTTM (RT-09 evaluation plan): one line per turn, in
    the order of ``diarization.turns``, with channel 1 and ``<NA>`` in the
    unused fields. The file is overwritten if it exists.

    Parameters
    ----------
    diarization : Diarization
        The turns to write; each turn's ``speaker`` is the speaker name.
    path : str or Path
        The ``.rttm`` file.
    uri : str
        Recording id written in every line; it must hold no white space.

    Returns
    -------
    Path
        ``path``, as a Path.

    Raises
    ------
    OSError
        The file cannot be written.
    """
    path = Path(path)
    lines = [f"SPEAKER {uri} 1 {t.start:.3f} {t.duration:.3f} <NA> <NA> {t.speaker} <NA> <NA>\n"
             for t in diarization.turns]
    path.write_text("".join(lines))
    return path


_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")  # ASCII digits only


def plain_number(text: str) -> float | None:
    """A decimal number as written in RTTM and annotation files, or None.

    Python's ``float`` also reads ``nan``, ``inf`` and ``1_0`` (as 10); none of them is a time in a file a
    person or a tool wrote, so they are refused here, as is a number too large to be finite.

    Parameters
    ----------
    text : str
        One field, surrounding spaces allowed.

    Returns
    -------
    float or None
    """
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def read_rttm(path: str | Path) -> dict[str, tuple[SpeakerTurn, ...]]:
    """Read an RTTM file into speaker turns per recording id (uri).

    Only ``SPEAKER`` lines are read; other line types and blank lines are
    skipped. Fields used: 2 (uri), 4 (start, s), 5 (duration, s) and 8
    (speaker name).

    Parameters
    ----------
    path : str or Path
        The ``.rttm`` file.

    Returns
    -------
    dict of str to tuple of SpeakerTurn
        Recording id to its turns, sorted by start time, in seconds; empty
        when the file has no ``SPEAKER`` line.

    Raises
    ------
    InputError
        A ``SPEAKER`` line has too few fields or non-numeric times; the
        message names the file and line.
    OSError
        The file cannot be read.
    """
    path = Path(path)
    out: dict[str, list[SpeakerTurn]] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0] != "SPEAKER":
            continue
        if len(fields) < 8:
            raise InputError(path, f"line {lineno}: expected at least 8 fields in a SPEAKER line, found {len(fields)}")
        start, dur = plain_number(fields[3]), plain_number(fields[4])
        if start is None or dur is None or start < 0 or dur < 0:
            raise InputError(path, f"line {lineno}: start and duration must be numbers of seconds, 0 or more; found "
                                   f"{fields[3][:20]!r}, {fields[4][:20]!r}")
        out.setdefault(fields[1], []).append(SpeakerTurn(start, start + dur, fields[7]))
    return {uri: tuple(sorted(turns, key=lambda t: t.start)) for uri, turns in out.items()}
