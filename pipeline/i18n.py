"""The report's text catalogue: every word a clinician reads, in Dutch (default) and English.

The texts live in ``pipeline/data/text.toml``: a key such as ``report.summary`` or ``marker.silence_share.label``
names a table holding ``nl`` and ``en``, with the same ``{placeholders}`` in both. :func:`text` looks one up
and fills it in; :func:`quantity` prints a number with its unit the way the report does (a decimal comma in
Dutch).
"""

from __future__ import annotations

import functools
import math
import string
import tomllib
from importlib import resources

LANGUAGES = ("nl", "en")
DEFAULT_LANGUAGE = "nl"


@functools.cache
def catalogue() -> dict[str, dict[str, str]]:
    """Every key of ``text.toml`` as ``{"a.b.c": {"nl": ..., "en": ...}}``.

    Returns
    -------
    dict of str to dict of str to str
        Flattened: a key's leaf is the table holding the languages.
    """
    raw = tomllib.loads(resources.files("pipeline").joinpath("data/text.toml").read_text(encoding="utf-8"))
    out: dict[str, dict[str, str]] = {}

    def walk(prefix: str, node: dict) -> None:
        if any(k in LANGUAGES for k in node):
            out[prefix] = node
            return
        for k, v in node.items():
            walk(f"{prefix}.{k}" if prefix else k, v)

    walk("", raw)
    return out


def placeholders(template: str) -> set[str]:
    """The ``{names}`` a template fills in.

    Used to check that the Dutch and English texts of a key take the same
    values. Escaped braces (``{{``) and unnamed fields (``{}``) are not
    placeholders; a format spec (``{v:.1f}``) is not part of the name.

    Parameters
    ----------
    template : str
        A text in :meth:`str.format` syntax.

    Returns
    -------
    set of str
        The field names, as written (``{a.b}`` gives ``'a.b'``).

    Raises
    ------
    ValueError
        The template has an unmatched brace.
    """
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def text(key: str, language: str = DEFAULT_LANGUAGE, **values) -> str:
    """The catalogue's text for ``key`` in ``language``, its placeholders filled in with ``values``.

    Parameters
    ----------
    key : str
        Dotted key, e.g. ``"report.summary"``.
    language : {"nl", "en"}
    **values
        One per placeholder of the text.

    Returns
    -------
    str

    Raises
    ------
    KeyError
        The key is not in ``pipeline/data/text.toml`` (the message names the key and the file).
    ValueError
        The language is neither ``nl`` nor ``en``.
    """
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}. Got {language!r} instead.")
    try:
        template = catalogue()[key][language]
    except KeyError as exc:
        raise KeyError(f"text.toml has no {language!r} text for {key!r}; add it to pipeline/data/text.toml") from exc
    return template.format(**values) if values else template


def has(key: str) -> bool:
    """Whether the catalogue holds ``key``.

    Parameters
    ----------
    key : str
        Dotted key, e.g. ``"unit.Hz"``.

    Returns
    -------
    bool
        True when ``pipeline/data/text.toml`` has a table for ``key`` (in at
        least one language).
    """
    return key in catalogue()


def number(value: float, language: str, digits: int = 1) -> str:
    """``value`` rounded to ``digits`` decimals, with a decimal comma in Dutch (no ``-0``).

    Parameters
    ----------
    value : float
        The number, in any unit.
    language : str
        ``"nl"`` gives a decimal comma; any other value a decimal point.
    digits : int >= 0
        Decimals to keep.

    Returns
    -------
    str
        For example ``number(2.345, "nl")`` gives ``"2,3"``; a value that
        rounds to zero prints without a minus sign.
    """
    s = f"{round(float(value), digits) + 0.0:.{digits}f}"
    return s.replace(".", ",") if language == "nl" else s


def quantity(value: float, unit: str, language: str) -> str:
    """A marker value with its unit as the report prints it (ratios as percentages).

    Parameters
    ----------
    value : float
        In the marker's unit (``FEATURE_UNITS``); NaN prints as a dash.
    unit : str
        The marker's unit; one the catalogue has no entry for is printed after the number. ``"offset_s"``
        (a client's response time, :data:`pipeline.features.OFFSET_MARKERS`) prints as seconds when at least 0
        and, below 0, as speaking over the therapist for that long: never as a negative time (a value that rounds
        to 0.00 s prints as 0.0 s).
    language : {"nl", "en"}
    """
    if not math.isfinite(value):
        return "—"
    if unit == "offset_s":  # a floor-transfer offset: below 0 the next speaker began before the other finished
        if value <= -0.005:  # what rounds to 0.00 s is no talking over
            return text("unit.offset_overlap", language, v=number(-value, language, 1 if value <= -0.1 else 2))
        value, unit = max(value, 0.0), "s"
    if unit == "ratio":
        v = number(100 * value, language, 0)
    elif unit in ("Hz", "dB", "questions"):
        v = number(value, language, 0)
    elif unit in ("r", "1/utterance", "syllables/word"):
        v = number(value, language, 2)
    else:
        v = number(value, language, 1)
    key = f"unit.{unit}"
    return text(key, language, v=v) if has(key) else f"{v} {unit}"


@functools.cache
def _english_patterns(prefix: str) -> tuple[tuple[str, "re.Pattern"], ...]:
    import re

    out = []
    for key, texts in catalogue().items():
        if key.startswith(prefix) and "en" in texts:
            parts = []
            for literal, name, _, _ in string.Formatter().parse(texts["en"]):
                parts.append(re.escape(literal))
                if name:
                    parts.append(f"(?P<{name}>.+?)")
            out.append((key, re.compile("".join(parts), re.DOTALL)))
    return tuple(out)


def localise(sentence: str, language: str, *, prefix: str = "warn.") -> str:
    """A stored English sentence of the catalogue (a warning) in ``language``.

    Warnings are kept in English in ``session.json`` and printed so on the command line; the report shows
    them in its own language. The sentence is matched against the English text of every key under ``prefix``;
    the values it holds are carried over (with a decimal comma in Dutch).

    Parameters
    ----------
    sentence : str
        As stored.
    language : {"nl", "en"}
    prefix : str
        Catalogue keys to match against.

    Returns
    -------
    str
        The sentence in ``language``, or unchanged when no key's English text matches it.
    """
    import re

    if language == "en":
        return sentence
    for key, pattern in _english_patterns(prefix):
        m = pattern.fullmatch(sentence)
        if m:
            values = {k: re.sub(r"(?<=\d)\.(?=\d)", ",", v) if language == "nl" else v
                      for k, v in m.groupdict().items()}
            return text(key, language, **values)
    return sentence


def catalogue_key(sentence: str, *, prefix: str = "warn.") -> str | None:
    """The catalogue key whose English text a stored sentence (a warning) was made from.

    Parameters
    ----------
    sentence : str
        As stored (English, see :func:`localise`).
    prefix : str
        Catalogue keys to match against.

    Returns
    -------
    str or None
        For example ``"warn.no_profile"``; None when no key's English text matches.
    """
    return next((key for key, pattern in _english_patterns(prefix) if pattern.fullmatch(sentence)), None)


DEFAULT_TIMEZONE = "Europe/Amsterdam"
"""The clinic's time zone unless ``ALLIANCE_WEB__TIMEZONE`` says otherwise."""


def local_time(at: str | None, zone: str = DEFAULT_TIMEZONE) -> str:
    """A stored UTC time (ISO 8601) as ``YYYY-MM-DD HH:MM`` in the clinic's local time.

    Parameters
    ----------
    at : str or None
        As the database and the report store it, such as ``"2026-07-01T12:30:00+00:00"``; without an offset it is taken as UTC.
    zone : str, optional
        The clinic's IANA time zone (``ALLIANCE_WEB__TIMEZONE``), daylight saving time included.

    Returns
    -------
    str
        Such as ``"2026-07-01 14:30"``; a value that is not a time is shown as stored (cut to 16 characters).
    """
    import datetime as dt
    import zoneinfo

    try:
        stored = dt.datetime.fromisoformat(at or "")
    except ValueError:
        return (at or "")[:16].replace("T", " ")
    if stored.tzinfo is None:
        stored = stored.replace(tzinfo=dt.timezone.utc)
    return stored.astimezone(zoneinfo.ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")
