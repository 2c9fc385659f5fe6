"""Replace the names of the people in a session by role labels.

Names come from the session metadata: each participant's ``name`` (replaced
by its role, for example ``[client]``) and ``other_names`` for people who are
talked about but not present (``{"Tim": "sibling"}`` → ``[sibling]``). Every
part of a name of two or more letters is matched as a whole word, case
insensitively, ignoring punctuation around it; over-replacing a common word
that is also a name is the safer error.
"""

from __future__ import annotations


import dataclasses
import functools

import re
from typing import Mapping

from pipeline.types import Transcript, Word

_EDGE = re.compile(r"^(\W*)(.*?)(\W*)$", re.UNICODE)


def name_labels(participants, other_names: Mapping[str, str] | None = None) -> dict[str, str]:
    """Lower-cased name part → ``[label]`` from the metadata.

    Each name is split into word parts (``"Anna de Vries"`` gives ``anna``,
    ``de`` and ``vries``); parts of one letter are left out. Participants
    that are not mappings, and entries whose name or role is not a string,
    are skipped. When a part occurs twice, the later entry wins, and
    ``other_names`` come after the participants.

    Parameters
    ----------
    participants : iterable of mapping
        As in the sidecar: each with ``name`` and ``role`` (``"client"``,
        ``"therapist"``, ``"parent"``).
    other_names : mapping of str to str, optional
        Names of people talked about but not present, each with its label
        (``{"Tim": "sibling"}``).

    Returns
    -------
    dict of str to str
        For example ``{"tim": "[sibling]"}``; empty when no names are given.
    """
    out: dict[str, str] = {}
    pairs = [(p.get("name"), p.get("role")) for p in participants if isinstance(p, Mapping)]
    pairs += list((other_names or {}).items())
    for name, label in pairs:
        if not isinstance(name, str) or not isinstance(label, str):
            continue
        for part in re.findall(r"\w+", name, flags=re.UNICODE):
            if len(part) >= 2:
                out[part.lower()] = f"[{label}]"
    return out


def names_in(text: str, participants, other_names: Mapping[str, str] | None = None) -> dict[str, str]:
    """Parts of the names given for a session (:func:`name_labels`) that occur in ``text``, each with its label.

    Parts of three or more letters count anywhere (``verslagSanne``), shorter ones only as a word of their own;
    taking a file name or an id that merely looks like a name for one is the safer error.

    Parameters
    ----------
    text : str
        A file name or an id.
    participants : list of dict
        As in the sidecar (``name`` of each participant).
    other_names : dict of str to str, optional
        Other names said in the session, with their labels.

    Returns
    -------
    dict of str to str
        Each name part found (lower case) and its label without brackets; empty when none is.
    """
    labels = name_labels(participants if isinstance(participants, list) else [],
                         other_names if isinstance(other_names, dict) else {})
    lowered = text.lower()
    return {part: label.strip("[]") for part, label in labels.items()
            if (len(part) >= 3 and part in lowered) or re.search(rf"(?<![^\W\d_]){re.escape(part)}(?![^\W\d_])", lowered)}


def redact_transcript(transcript: Transcript, labels: Mapping[str, str]) -> Transcript:
    """A new transcript in which every word that is a listed name is its role label.

    Parameters
    ----------
    transcript : Transcript
    labels : mapping of str to str
        From :func:`name_labels`.

    Returns
    -------
    Transcript
        Same words and times; names replaced, surrounding punctuation kept.
    """
    if not labels:
        return transcript
    words = []
    for w in transcript.words:
        lead, core, trail = _EDGE.match(w.text).groups()
        key = re.sub(r"['’]s$", "", core.lower())
        text = f"{lead}{labels[key]}{trail}" if key in labels else w.text
        words.append(Word(w.start, w.end, text, w.probability, w.speaker, w.overlap))
    return dataclasses.replace(transcript, words=tuple(words))  # language and its stretches kept


@functools.cache
def no_onnxruntime_telemetry() -> None:
    """Switch off onnxruntime's telemetry before its first model loads (Silero VAD, the overlap model).

    onnxruntime (1.32 on Linux) otherwise writes a device id and queued events under
    ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/`` and looks up Microsoft's event host at every run: no session
    data, but a network call and files outside the data directory that the clinic did not ask for.
    """
    import onnxruntime

    onnxruntime.disable_telemetry_events()
