"""Rupture annotations: read, check and write them.

Three formats hold the same thing, a list of rupture episodes with a 3RS
rupture type (Eubanks, Muran & Safran 2015) and, optionally, the 3RS marker:

* CSV with a header ``start_s,end_s,label[,marker]`` (times in seconds);
* ELAN ``.eaf`` (read with ``pympi-ling``) and Praat ``.TextGrid`` (read with
  ``praatio``): a tier named ``rupture`` whose annotation values are
  ``label`` or ``label: marker``.

``label`` is one of :data:`pipeline.types.RUPTURE_LABELS` (``withdrawal``,
``confrontation``). Episodes must not overlap, must end after they start, and
must lie within the recording.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from pipeline.errors import InputError
from pipeline.rttm import plain_number
from pipeline.types import RUPTURE_LABELS

TIER = "rupture"
END_TOLERANCE_S = 0.5  # an episode may end this far past the recording's end (rounding of annotation tools)


@dataclass(frozen=True)
class RuptureAnnotation:
    """One annotated rupture episode, times in seconds."""

    start: float
    end: float
    label: str
    marker: str | None = None


def _check(path: Path, items: list[tuple[str, RuptureAnnotation]], duration_s: float | None) -> tuple[RuptureAnnotation, ...]:
    """Validate (where, annotation) pairs; ``where`` names the line or interval in messages."""
    for where, a in items:
        if a.label not in RUPTURE_LABELS:
            raise InputError(path, f"{where}: unknown label {a.label!r}; use one of {', '.join(RUPTURE_LABELS)}")
        if not a.end > a.start:
            raise InputError(path, f"{where}: ends at {a.end:g} s, not after its start {a.start:g} s")
        if a.start < 0:
            raise InputError(path, f"{where}: starts before 0 s ({a.start:g} s)")
        if duration_s is not None and a.end > duration_s + END_TOLERANCE_S:
            raise InputError(path, f"{where}: ends at {a.end:g} s, past the end of the recording ({duration_s:.1f} s)")
    ordered = sorted(items, key=lambda wa: wa[1].start)
    for (w1, a1), (w2, a2) in zip(ordered, ordered[1:]):
        if a2.start < a1.end:
            raise InputError(path, f"{w2} overlaps {w1} ({a2.start:g}–{a2.end:g} s against {a1.start:g}–{a1.end:g} s); "
                                   "rupture episodes must not overlap")
    return tuple(a for _, a in ordered)


def _split_value(value: str) -> tuple[str, str | None]:
    label, _, marker = value.partition(":")
    return label.strip().lower(), (marker.strip() or None)


def read_rupture_csv(path: str | Path, *, duration_s: float | None = None) -> tuple[RuptureAnnotation, ...]:
    """Read ``start_s,end_s,label[,marker]`` rows.

    Parameters
    ----------
    path : str or Path
    duration_s : float, optional
        Recording length in seconds; episodes may not end after it.

    Returns
    -------
    tuple of RuptureAnnotation
        In time order.

    Raises
    ------
    InputError
        Missing file, wrong header, a row with a missing or non-numeric time,
        an unknown label, an episode ending before it starts or past the
        recording, or overlapping episodes; the message names the file and line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(path, "annotation file not found") from None
    except UnicodeDecodeError:
        raise InputError(path, "not a UTF-8 text file") from None
    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as exc:  # a field over the csv module's limit, a NUL byte, ...
        raise InputError(path, f"not a readable CSV file ({exc})") from None
    if not text.strip():
        raise InputError(path, "file is empty; it needs the header start_s,end_s,label[,marker]")
    if not rows or [c.strip() for c in rows[0][:3]] != ["start_s", "end_s", "label"]:
        raise InputError(path, "line 1: header must be start_s,end_s,label[,marker]")
    items = []
    for n, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 3:
            raise InputError(path, f"line {n}: needs start_s, end_s and label; found {len(row)} field(s)")
        start, end = plain_number(row[0]), plain_number(row[1])
        if start is None or end is None:
            raise InputError(path, f"line {n}: start_s and end_s must be numbers of seconds; "
                                   f"found {row[0][:20]!r}, {row[1][:20]!r}")
        marker = row[3].strip() if len(row) > 3 and row[3].strip() else None
        items.append((f"line {n}", RuptureAnnotation(start, end, row[2].strip().lower(), marker)))
    return _check(path, items, duration_s)


def _tier(path: Path, names, intervals, what: str, duration_s: float | None) -> tuple[RuptureAnnotation, ...]:
    """Check the ``rupture`` tier exists among ``names`` and turn its (start_s, end_s, value) intervals into
    checked annotations; empty values are no rupture."""
    if TIER not in names:
        raise InputError(path, f"no tier named '{TIER}' (tiers: {', '.join(sorted(names)) or 'none'})")
    try:
        found = list(intervals())
    except (AttributeError, KeyError, TypeError, ValueError) as exc:  # a tier the reader cannot lay out
        raise InputError(path, f"tier '{TIER}' cannot be read as episodes with a start and an end "
                               f"({type(exc).__name__}); give each episode its start, end and label") from None
    items = []
    for i, (start, end, value) in enumerate(found, start=1):
        if str(value).strip():
            label, marker = _split_value(str(value))
            items.append((f"tier {TIER} {what} {i}", RuptureAnnotation(float(start), float(end), label, marker)))
    return _check(path, items, duration_s)


def read_eaf(path: str | Path, *, duration_s: float | None = None) -> tuple[RuptureAnnotation, ...]:
    """Read the ``rupture`` tier of an ELAN file (values ``label`` or ``label: marker``).

    ELAN stores times in milliseconds; they are returned in seconds.
    Annotations with an empty value are no rupture and are skipped. The file
    is parsed with ``pympi-ling``.

    Parameters
    ----------
    path : str or Path
        The ``.eaf`` file.
    duration_s : float, optional
        Recording length in seconds; episodes may not end after it (0.5 s of
        slack is allowed). None skips this check.

    Returns
    -------
    tuple of RuptureAnnotation
        In time order, times in seconds.

    Raises
    ------
    InputError
        The file cannot be parsed, has no ``rupture`` tier, or an annotation
        fails the checks of :func:`read_rupture_csv`; the message names the file.
    """
    import pympi

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "annotation file not found")
    try:
        eaf = pympi.Elan.Eaf(str(path))
    except KeyError as exc:  # an XML attribute the format requires is missing
        name = str(exc.args[0] if exc.args else "").rsplit("}", 1)[-1]  # {namespace}name → name
        what = ("it lacks the ELAN header (the xsi namespace and schema location ELAN writes); save it from ELAN "
                "again" if name == "noNamespaceSchemaLocation"
                else f"an element lacks its {name[:40]} attribute")
        raise InputError(path, f"not a readable ELAN file: {what}") from None
    except ValueError:  # int() of a time slot's value
        raise InputError(path, "not a readable ELAN file: a time slot's time is not a whole number of "
                               "milliseconds") from None
    except Exception as exc:  # pympi raises bare parser errors of several kinds
        raise InputError(path, f"not a readable ELAN file ({type(exc).__name__})") from None
    def episodes():
        found = eaf.get_annotation_data_for_tier(TIER)
        if any(a[0] is None or a[1] is None for a in found):
            raise InputError(path, f"tier '{TIER}' has an annotation at a time slot without a time (every episode "
                                   "needs its start and end time)")
        return [(a[0] / 1000.0, a[1] / 1000.0, a[2]) for a in sorted(found)]

    return _tier(path, list(eaf.get_tier_names()), episodes, "annotation", duration_s)


def read_textgrid(path: str | Path, *, duration_s: float | None = None) -> tuple[RuptureAnnotation, ...]:
    """Read the ``rupture`` interval tier of a Praat TextGrid (empty intervals are no rupture).

    The file is parsed with ``praatio``.

    Parameters
    ----------
    path : str or Path
        The ``.TextGrid`` file.
    duration_s : float, optional
        Recording length in seconds; episodes may not end after it (0.5 s of
        slack is allowed). None skips this check.

    Returns
    -------
    tuple of RuptureAnnotation
        In time order, times in seconds.

    Raises
    ------
    InputError
        The file cannot be parsed, has no ``rupture`` tier, or an interval
        fails the checks of :func:`read_rupture_csv`; the message names the file.
    """
    from praatio import textgrid

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "annotation file not found")
    try:
        tg = textgrid.openTextgrid(str(path), includeEmptyIntervals=False)
    except Exception as exc:  # praatio raises several parser error types
        kind = type(exc).__name__
        what = {"DuplicateTierName": "two tiers have the same name; give each tier its own",
                "ValueError": "a time or a count is not a number"}.get(kind, f"({kind})")
        raise InputError(path, f"not a readable TextGrid: {what}" if kind in ("DuplicateTierName", "ValueError")
                         else f"not a readable TextGrid {what}") from None
    if TIER in tg.tierNames and not isinstance(tg.getTier(TIER), textgrid.IntervalTier):
        raise InputError(path, f"tier '{TIER}' is a point tier; rupture episodes need an interval tier (start and "
                               "end of each episode)")
    return _tier(path, list(tg.tierNames),
                 lambda: [(e.start, e.end, e.label) for e in tg.getTier(TIER).entries], "interval", duration_s)


MAX_ANNOTATION_BYTES = 5_000_000  # a session's episodes fit in kilobytes; more is not an annotation file


def _check_file(path: Path) -> None:
    """Refuse, before it is opened, an annotation path that is not a regular file of a sensible size.

    A folder or a FIFO (which would block the run until someone writes to it), a device such as ``/dev/zero``
    behind a link, and a file of megabytes are named in one line instead of failing (or hanging) inside a
    parser after the analyses have started.

    Raises
    ------
    InputError
        Missing, not a regular file, or larger than :data:`MAX_ANNOTATION_BYTES`.
    """
    import stat

    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(path, "annotation file not found") from None
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    if not stat.S_ISREG(st.st_mode):
        what = "a folder" if stat.S_ISDIR(st.st_mode) else "a pipe, socket or device"
        raise InputError(path, f"is {what}, not an annotation file")
    if st.st_size > MAX_ANNOTATION_BYTES:
        raise InputError(path, f"is {st.st_size / 1e6:.0f} MB; an annotation file holds a session's episodes "
                               f"(at most {MAX_ANNOTATION_BYTES / 1e6:.0f} MB)")


def _ascii_digits_only(path: Path) -> None:
    """Refuse an ELAN or Praat file that writes digits of another script anywhere.

    Their parsers read times with Python's ``int`` and ``float``, which take "١" (Arabic-Indic one) for 1; the CSV
    reader refuses such a time (:func:`pipeline.rttm.plain_number`), so these formats must too. Episode labels are
    words, so the whole file is checked.
    """
    import unicodedata

    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "utf-16"):  # Praat writes UTF-16 when a label needs it
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        return  # the parser names the encoding problem
    odd = next((c for c in text if c.isdecimal() and not "0" <= c <= "9"), None)
    if odd is not None:
        raise InputError(path, f"times must be written with the digits 0-9; found {odd!r} "
                               f"({unicodedata.name(odd, 'a digit of another script').lower()})")


def read_annotations(path: str | Path, *, duration_s: float | None = None) -> tuple[RuptureAnnotation, ...]:
    """Read rupture annotations in any supported format, chosen by the file's suffix.

    ``.csv`` goes to :func:`read_rupture_csv`, ``.eaf`` to :func:`read_eaf`
    and ``.textgrid`` (any case) to :func:`read_textgrid`. Before that, the
    path must be a regular file of at most :data:`MAX_ANNOTATION_BYTES`.

    Parameters
    ----------
    path : str or Path
        The annotation file.
    duration_s : float, optional
        Recording length in seconds; episodes may not end after it (0.5 s of
        slack is allowed). None skips this check.

    Returns
    -------
    tuple of RuptureAnnotation
        In time order, times in seconds.

    Raises
    ------
    InputError
        An unsupported suffix; a path that is missing, unreadable, a folder,
        pipe or device, or larger than :data:`MAX_ANNOTATION_BYTES`; or any
        problem named by the format's reader.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".eaf", ".textgrid"):
        raise InputError(path, "unsupported annotation format; use .csv, .eaf or .TextGrid")
    _check_file(path)
    if suffix == ".csv":
        return read_rupture_csv(path, duration_s=duration_s)
    _ascii_digits_only(path)
    if suffix == ".eaf":
        return read_eaf(path, duration_s=duration_s)
    if suffix == ".textgrid":
        return read_textgrid(path, duration_s=duration_s)
    raise InputError(path, "unsupported annotation format; use .csv, .eaf or .TextGrid")


def write_rupture_csv(path: str | Path, annotations: Sequence[RuptureAnnotation]) -> Path:
    """Write annotations as ``start_s,end_s,label,marker`` (times rounded to 10 ms).

    The file is UTF-8 and is overwritten if it exists. An annotation without
    a marker gets an empty ``marker`` field. :func:`read_rupture_csv` reads
    the result back.

    Parameters
    ----------
    path : str or Path
        The CSV file to write.
    annotations : sequence of RuptureAnnotation
        Written in the order given, times in seconds.

    Returns
    -------
    Path
        ``path``, as a Path.

    Raises
    ------
    OSError
        The file cannot be written (for example, its folder does not exist).
    """
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["start_s", "end_s", "label", "marker"])
        for a in annotations:
            w.writerow([round(a.start, 2), round(a.end, 2), a.label, a.marker or ""])
    return path
