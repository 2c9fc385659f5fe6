"""Per-session metadata (JSON): session id, language, who was present, role overrides.

Example::

    {"session_id": "s-0412", "language": "nl", "therapist_id": "t-anna",
     "participants": [{"role": "therapist", "id": "t-anna"}, {"role": "client", "age": 11}],
     "speaker_roles": {"SPEAKER_00": "client"}}

Every key is optional. ``participants`` fixes the speaker count and gives the
client's age (the child-voice cue); ``therapist_id`` (or the therapist
participant's ``id``) names an enrolled voice profile; ``speaker_roles``
overrides the role assignment for the named diarized speakers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from pipeline.errors import MetadataError
from pipeline.ids import InvalidIdError, check_id
from pipeline.types import ROLES

LANGUAGES = ("nl", "en", "auto")


@dataclass(frozen=True)
class SessionMetadata:
    session_id: str | None = None
    language: str | None = None
    participants: tuple[Mapping[str, Any], ...] = ()
    speaker_roles: Mapping[str, str] = field(default_factory=dict)
    therapist_id: str | None = None
    client_age_years: float | None = None
    client_id: str | None = None
    date: str | None = None  # the session's date, YYYY-MM-DD
    other_names: Mapping[str, str] = field(default_factory=dict)

    @property
    def num_speakers(self) -> int | None:
        return len(self.participants) or None

    @property
    def client_age(self) -> float | None:
        """The client's age in years: ``client_age``, else the client participant's ``age``."""
        if self.client_age_years is not None:
            return self.client_age_years
        for p in self.participants:
            if p.get("role") == "client" and isinstance(p.get("age"), (int, float)):
                return float(p["age"])
        return None


def _check_id(path: Path, value: object, field: str) -> str:
    """``value`` when it is a valid id (:data:`pipeline.ids.ID_PATTERN`), else a MetadataError naming file and field."""
    try:
        return check_id(value, field)
    except InvalidIdError as exc:
        raise MetadataError(path, str(exc)) from None


def load_metadata(path: str | Path) -> SessionMetadata:
    """Read and validate a session metadata file.

    Parameters
    ----------
    path : str or Path
        The metadata JSON file (or a nightly sidecar).

    Returns
    -------
    SessionMetadata

    Raises
    ------
    MetadataError
        The file is missing, a folder, unreadable, not JSON, or holds a wrong value (an id that does not match
        :data:`pipeline.ids.ID_PATTERN` included); the message names the file and the key.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise MetadataError(path, "metadata file not found") from exc
    except IsADirectoryError as exc:
        raise MetadataError(path, "is a folder, not a metadata file; give the session's JSON file") from exc
    except OSError as exc:
        raise MetadataError(path, f"cannot be read ({exc.strerror or exc.__class__.__name__})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MetadataError(path, f"not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise MetadataError(path, "expected a JSON object at the top level")
    lang = raw.get("language")
    if lang is not None and lang not in LANGUAGES:
        raise MetadataError(path, f"'language' must be one of {', '.join(LANGUAGES)}; found {lang!r}")
    participants = raw.get("participants", [])
    if not isinstance(participants, list) or not all(isinstance(p, dict) for p in participants):
        raise MetadataError(path, "'participants' must be a list of objects such as {\"role\": \"client\"}")
    for i, p in enumerate(participants):
        if p.get("role") not in ROLES:
            raise MetadataError(path, f"participants[{i}].role must be one of {', '.join(ROLES)}; found {p.get('role')!r}")
    roles = raw.get("speaker_roles", {})
    if not isinstance(roles, dict) or any(r not in ROLES for r in roles.values()):
        raise MetadataError(path, f"'speaker_roles' must map speaker labels to one of {', '.join(ROLES)}")
    # ids name folders and database rows: one strict rule (pipeline.ids), so ".." or "a/b" never becomes a path
    for i, p in enumerate(participants):
        if p.get("id") is not None:
            _check_id(path, p["id"], f"participants[{i}].id")
    sid = raw.get("session_id")
    if sid is not None:
        _check_id(path, sid, "'session_id'")
    therapist = raw.get("therapist_id")
    if therapist is not None:
        _check_id(path, therapist, "'therapist_id'")
    participant_ids = [p.get("id") for p in participants if p.get("role") == "therapist" and p.get("id")]
    if therapist is not None and participant_ids and therapist not in participant_ids:
        raise MetadataError(path, f"'therapist_id' {therapist!r} is not the therapist listed in 'participants' "
                                  f"({', '.join(map(repr, participant_ids))}); make them agree")
    if therapist is None and participant_ids:
        therapist = participant_ids[0]
    if therapist is not None and not isinstance(therapist, str):
        raise MetadataError(path, f"'therapist_id' must be a string; found {therapist!r}")
    for i, p in enumerate(participants):
        if "age" in p and (not isinstance(p["age"], (int, float)) or not 0 <= p["age"] < 120):
            raise MetadataError(path, f"participants[{i}].age must be a number of years; found {p['age']!r}")
    age = raw.get("client_age")
    if age is not None and (isinstance(age, bool) or not isinstance(age, (int, float)) or not 0 <= age < 120):
        raise MetadataError(path, f"'client_age' must be a number of years; found {age!r}")
    other = raw.get("other_names", {})
    if not isinstance(other, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in other.items()):
        raise MetadataError(path, "'other_names' must map names to labels, for example {\"Tim\": \"sibling\"}")
    client = raw.get("client_id")
    if client is not None:
        _check_id(path, client, "'client_id'")
    date = raw.get("date")
    if date is not None:
        import datetime as _dt

        try:
            _dt.date.fromisoformat(str(date))
        except ValueError:
            raise MetadataError(path, f"'date' must be a date like 2026-11-28; found {date!r}") from None
    return SessionMetadata(session_id=sid, language=lang, participants=tuple(participants), speaker_roles=roles,
                           therapist_id=therapist, client_age_years=None if age is None else float(age),
                           other_names=other, client_id=client, date=None if date is None else str(date))
