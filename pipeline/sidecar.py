"""A session's sidecar: the JSON next to a recording, with the session's metadata and its consent record.

The nightly inbox takes ``NAME.ext`` with its sidecar ``NAME.ext.json``; ``alliance analyze --metadata`` and a
training session's ``metadata.json`` hold the same object. Example::

    {"session_id": "s-0412", "language": "nl", "therapist_id": "t-anna", "client_id": "c-017",
     "date": "2026-11-28", "client_age": 11,
     "participants": [{"role": "therapist", "id": "t-anna"}, {"role": "client", "age": 11}],
     "speaker_roles": {"SPEAKER_00": "client"}, "other_names": {"Tim": "sibling"},
     "consent": {"analysis": true, "research_use": false, "given_by": ["parent"], "date": "2026-11-01"}}

Every key is optional for analysis. ``participants`` fixes the speaker count and gives the client's age (the
child-voice cue); ``therapist_id`` (or the therapist participant's ``id``) names an enrolled voice profile;
``speaker_roles`` overrides the role assignment for the named diarized speakers. Ids follow one strict rule
(:func:`pipeline.ids.check_id`): they become folders, database rows and audit entries.

The consent record follows Dutch practice under the WGBO (Wet op de geneeskundige behandelingsovereenkomst,
art. 7:447 and 7:450 BW):

* client **under 12**: the parents (or guardian) with authority consent;
* client **12 to 15**: both the client and the parents consent;
* client **16 or older**: the client consents alone.

``consent.analysis`` must be true for the recording to be processed; ``consent.research_use`` (a separate yes/no)
decides whether the session may be used for retraining.

Every sidecar file is read by :func:`read_sidecar`; :meth:`Sidecar.load` validates the metadata and
:func:`check_consent` the consent record (the nightly run checks consent before anything is decoded).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from pipeline.errors import ConsentError, MetadataError
from pipeline.ids import check_id
from pipeline.privacy import names_in


def _as_written(value: Any) -> str:
    """A sidecar value as the JSON file spells it (``true``, ``null``, ``"elf"``), at most 40 characters."""
    try:
        shown = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        shown = repr(value)
    return shown if len(shown) <= 40 else shown[:39] + "…"
from pipeline.types import ROLES

Language = Literal["nl", "en", "auto"]
LANGUAGES: tuple[str, ...] = get_args(Language)
PARENT_ROLES = ("parent", "guardian")
MAX_PARTICIPANTS = 8  # the most speakers diarization takes (ALLIANCE_DIARIZATION__NUM_SPEAKERS)


#: the fields of a sidecar's ``consent`` record; any other is refused, since what it says could not be obeyed
CONSENT_FIELDS = ("analysis", "research_use", "given_by", "date")


class _RepeatedKey(ValueError):
    """A JSON object names one key twice (the key is the argument)."""


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` of :func:`json.loads` that refuses a key given twice (JSON lets the last one win)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _RepeatedKey(key)
        out[key] = value
    return out


# a consent record and session metadata are a few kilobytes; a larger file is not one (a 900 MB sparse sidecar took
# 2.4 GB of memory to be found not JSON: trial, stop 44)
MAX_SIDECAR_BYTES = 1024 * 1024


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """Read a sidecar (or a session's ``metadata.json``): the JSON object it holds, nothing checked yet.

    Parameters
    ----------
    path : str or Path
        The JSON file.

    Returns
    -------
    dict
        The object as written.

    Raises
    ------
    MetadataError
        The file is missing, a folder, a pipe or device, larger than :data:`MAX_SIDECAR_BYTES`, unreadable, not
        JSON (nested too deeply, or a key given twice in one object: which consent holds would not be clear), or not
        a JSON object; the message names the file.
    """
    path = Path(path)
    try:
        if path.exists() and not path.is_dir() and not path.is_file():  # a FIFO would block the run until written
            raise MetadataError(path, "is a pipe, socket or device, not a regular file; give the session's JSON file")
        with path.open("rb") as f:  # read no more than the limit, whatever size the file claims
            data = f.read(MAX_SIDECAR_BYTES + 1)
        if len(data) > MAX_SIDECAR_BYTES:
            raise MetadataError(path, f"is too large for a metadata file (over {MAX_SIDECAR_BYTES // 1024} KB); give "
                                      "the session's JSON record")
        raw = json.loads(data.decode("utf-8-sig"), object_pairs_hook=_no_repeated_keys)
    except _RepeatedKey as exc:
        raise MetadataError(path, f"holds {exc.args[0]!r} twice in one object; it is not clear which value holds "
                                  "(for consent, which record), so keep one") from None
    except RecursionError:
        raise MetadataError(path, "not a usable metadata file: nested too deeply") from None
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
    return raw


class Sidecar(BaseModel):
    """A session's metadata, validated; keys not named here (``consent``, ``source``) are left out.

    Attributes
    ----------
    language : {"nl", "en", "auto"} or None
        The session's language; None leaves it to the settings.
    participants : tuple of dict
        Who was present: ``role`` (one of :data:`pipeline.types.ROLES`), optional ``id``, ``age`` in years and
        ``name``.
    speaker_roles : dict of str to str
        Diarized speaker label to role, overriding the role assignment.
    session_id, client_id : str or None
        Valid ids (:data:`pipeline.ids.ID_PATTERN`).
    therapist_id : str or None
        A valid id; when not given, the therapist participant's ``id``.
    client_age_years : float in [0, 120) or None
        The sidecar's ``client_age``.
    other_names : dict of str to str
        Names of people mentioned (not present) to the label that replaces them, for example ``{"Tim": "sibling"}``.
    date : str or None
        The session's date, ``YYYY-MM-DD``.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    # validated in this order; the first problem found is the one reported
    language: Language | None = None
    participants: tuple[dict[str, Any], ...] = ()
    speaker_roles: dict[str, str] = Field(default_factory=dict)
    session_id: str | None = None
    therapist_id: str | None = Field(None, validate_default=True)
    client_age_years: float | None = Field(None, validation_alias="client_age")
    other_names: dict[str, str] = Field(default_factory=dict)
    client_id: str | None = None
    date: str | None = None

    @classmethod
    def load(cls, path: str | Path) -> Sidecar:
        """Read and validate a sidecar or session metadata file.

        Parameters
        ----------
        path : str or Path
            The JSON file (a nightly sidecar, ``--metadata``, or a training session's ``metadata.json``).

        Returns
        -------
        Sidecar

        Raises
        ------
        MetadataError
            The file is missing, a folder, unreadable, not JSON, or holds a wrong value (an id that does not match
            :data:`pipeline.ids.ID_PATTERN` included); the message names the file and the key.
        """
        record = read_sidecar(path)
        typo = _misspelled_key(record)
        if typo is not None:
            raise MetadataError(path, typo)
        try:
            return cls.model_validate(record)
        except ValidationError as exc:
            first = exc.errors()[0]
            problem = (str(first["ctx"]["error"]) if first["type"] == "value_error"
                       else f"'{'.'.join(map(str, first['loc']))}': {first['msg']}")
            raise MetadataError(path, problem) from exc

    @property
    def num_speakers(self) -> int | None:
        """How many people were present (the participants listed), None when none are listed."""
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

    @field_validator("language", mode="before")
    @classmethod
    def _language(cls, value: Any) -> Any:
        if value is not None and value not in LANGUAGES:
            raise ValueError(f"'language' must be one of {', '.join(LANGUAGES)}; found {_as_written(value)}")
        return value

    @field_validator("participants", mode="before")
    @classmethod
    def _participants(cls, value: Any) -> Any:
        if not isinstance(value, (list, tuple)) or not all(isinstance(p, dict) for p in value):
            raise ValueError("'participants' must be a list of objects such as {\"role\": \"client\"}")
        if len(value) > MAX_PARTICIPANTS:  # they fix the speaker count, which diarization takes up to 8
            raise ValueError(f"'participants' lists {len(value)} people; a session has at most {MAX_PARTICIPANTS} "
                             "people")
        for i, p in enumerate(value):
            if p.get("role") not in ROLES:
                raise ValueError(f"participants[{i}].role must be one of {', '.join(ROLES)}; "
                                 f"found {_as_written(p.get('role'))}")
        # ids name folders and database rows: one strict rule (pipeline.ids), so ".." or "a/b" never becomes a path
        for i, p in enumerate(value):
            if p.get("id") is not None:
                check_id(p["id"], f"participants[{i}].id")
        for i, p in enumerate(value):
            if "age" in p and (isinstance(p["age"], bool) or not isinstance(p["age"], (int, float))
                                 or not 0 <= p["age"] < 120):  # true is not 1 year (trial)
                raise ValueError(f"participants[{i}].age must be a number of years; found {_as_written(p['age'])}")
        for i, p in enumerate(value):  # names are what the transcript's redaction looks for: 5 would hide nothing
            if p.get("name") is not None and (not isinstance(p["name"], str) or not p["name"].strip()):
                raise ValueError(f"participants[{i}].name must be text; found {_as_written(p['name'])}")
        return value

    @field_validator("speaker_roles", mode="before")
    @classmethod
    def _speaker_roles(cls, value: Any) -> Any:
        if not isinstance(value, dict) or any(r not in ROLES for r in value.values()):
            raise ValueError(f"'speaker_roles' must map speaker labels to one of {', '.join(ROLES)}")
        return value

    @field_validator("session_id", "client_id", mode="before")
    @classmethod
    def _id(cls, value: Any, info: ValidationInfo) -> Any:
        return value if value is None else check_id(value, f"'{info.field_name}'")

    @model_validator(mode="after")
    def _no_names_in_ids(self) -> "Sidecar":
        # ids become the session folder, the report's title, the RTTM, the database and the audit log: no names
        for field in ("session_id", "client_id"):
            value = getattr(self, field)
            if value is not None and names_in(value, list(self.participants), self.other_names):
                raise ValueError(f"'{field}' holds a name given in this file; use a code (the name is not repeated "
                                 "here)")
        return self

    @field_validator("therapist_id", mode="before")
    @classmethod
    def _therapist_id(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            check_id(value, "'therapist_id'")
        listed = [p.get("id") for p in info.data.get("participants", ()) if p.get("role") == "therapist" and p.get("id")]
        if value is not None and listed and value not in listed:
            raise ValueError(f"'therapist_id' {value!r} is not the therapist listed in 'participants' "
                             f"({', '.join(map(repr, listed))}); make them agree")
        return listed[0] if value is None and listed else value

    @field_validator("client_age_years", mode="before")
    @classmethod
    def _client_age(cls, value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 <= value < 120):
            raise ValueError(f"'client_age' must be a number of years; found {_as_written(value)}")
        return value

    @field_validator("other_names", mode="before")
    @classmethod
    def _other_names(cls, value: Any) -> Any:
        if not isinstance(value, dict) or not all(isinstance(k, str) and k.strip() and isinstance(v, str)
                                                  for k, v in value.items()):
            raise ValueError("'other_names' must map names to labels, for example {\"Tim\": \"sibling\"}")
        return value

    @field_validator("date", mode="before")
    @classmethod
    def _date(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):  # 20261128 would pass as a string of digits
            raise ValueError(f"'date' must be a date like 2026-11-28; found {_as_written(value)}")
        try:
            return dt.date.fromisoformat(value).isoformat()  # "20261128" is ISO too: kept as 2026-11-28
        except ValueError:
            raise ValueError(f"'date' must be a date like 2026-11-28; found {_as_written(value)}") from None


@dataclass(frozen=True)
class Consent:
    """A valid consent: who gave it, when, and whether research use is allowed."""

    given_by: tuple[str, ...]
    date: dt.date
    research_use: bool
    rule: str


def required_consenters(age: float) -> tuple[str, str]:
    """Who must consent at this age, and the WGBO rule in words.

    Parameters
    ----------
    age : float >= 0
        The client's age in years.

    Returns
    -------
    (who, rule) : (str, str)
        ``who`` is ``"parent"``, ``"client+parent"`` or ``"client"``.
    """
    if age < 12:
        return "parent", "under 12: the parents with authority consent (WGBO)"
    if age < 16:
        return "client+parent", "12 to 15: the client and the parents both consent (WGBO)"
    return "client", "16 or older: the client consents (WGBO)"


# keys a sidecar may hold beyond Sidecar's own fields (validated elsewhere, or records for the researcher)
OTHER_KEYS = ("consent", "source", "simulated", "client_age")


def _misspelled_key(record: Mapping[str, Any]) -> str | None:
    """A problem line for a key that is not known but close to one that is (``other_name``, ``sesion_id``), or None.

    A misspelled key was ignored: a typo in ``other_names`` let the names it should replace into the report
    (fresh-user trial). Keys far from every known one are left alone (a clinic's own notes).
    """
    import difflib

    known = (*Sidecar.model_fields, *OTHER_KEYS)
    for key in record:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.8)
        if close:
            return f"unknown key {key!r}; did you mean {close[0]!r}? (it would be ignored)"
    return None


def check_consent(record: Mapping[str, Any], *, source: str | Path, session_date: dt.date | None = None) -> Consent:
    """Validate a sidecar's consent against the client's age.

    Parameters
    ----------
    record : mapping
        The sidecar's JSON object (:func:`read_sidecar`; needs ``client_age`` or a client participant with
        ``age``, and ``consent``).
    source : str or Path
        The sidecar file, named in errors.
    session_date : date, optional
        Consent dated after the session is refused; default the record's
        ``date`` (the session date).

    Returns
    -------
    Consent

    Raises
    ------
    ConsentError
        Missing or malformed consent, analysis not consented, the wrong
        people consented for the client's age, or a date in the future.
    """
    consent = record.get("consent")
    if consent is not None and not isinstance(consent, Mapping):
        raise ConsentError(source, "'consent' must be an object such as {\"analysis\": true, \"given_by\": "
                                   "[\"parent\"], \"date\": \"2026-11-01\"}; the recording was not processed")
    if not isinstance(consent, Mapping):
        raise ConsentError(source, "no consent record ('consent' is missing); the recording was not processed")
    unknown = sorted(str(k) for k in consent if k not in CONSENT_FIELDS)
    if unknown:  # "withdrawn": true beside "analysis": true was ignored and the session analysed (trial)
        raise ConsentError(source, f"'consent.{unknown[0]}' is not a field of a consent record (only "
                                   f"{', '.join(CONSENT_FIELDS)}); what it says cannot be obeyed, so the recording "
                                   "was not processed. Consent withdrawn is 'analysis': false")
    if consent.get("analysis") is not True:
        given = consent.get("analysis")
        kind = {str: "text", int: "number", float: "number", list: "list", dict: "object"}.get(type(given), "value")
        said = (f"; it is {json.dumps(given)[:20]}, a {kind}, not the JSON value true"
                if given is not None and not isinstance(given, bool) else "")
        raise ConsentError(source, f"consent to analysis is not given ('consent.analysis' must be true{said})")
    participants = record.get("participants") or []
    if not isinstance(participants, list):
        raise ConsentError(source, "'participants' must be a list of the people present, for example "
                                   "[{\"role\": \"client\", \"age\": 9}]")
    age = record.get("client_age")
    participant_age = next((p.get("age") for p in participants
                            if isinstance(p, Mapping) and p.get("role") == "client" and "age" in p), None)
    if age is not None and participant_age is not None and age != participant_age:
        raise ConsentError(source, f"'client_age' ({age!r}) and the client participant's age ({participant_age!r}) "
                                   "disagree; the age decides who must consent")
    if age is None:
        age = participant_age
    if not isinstance(age, (int, float)) or isinstance(age, bool) or not 0 <= age < 120:
        raise ConsentError(source, "the client's age is missing or not a number; it decides who must consent")
    given = consent.get("given_by")
    if not isinstance(given, list) or not all(isinstance(g, str) for g in given) or not given:
        raise ConsentError(source, "'consent.given_by' must list who consented, for example [\"parent\"]")
    given_set = {g.lower() for g in given}
    has_parent = bool(given_set & set(PARENT_ROLES))
    who, rule = required_consenters(float(age))
    ok = {"parent": has_parent, "client+parent": has_parent and "client" in given_set,
          "client": "client" in given_set}[who]
    if not ok:
        raise ConsentError(source, f"client aged {age:g}: {rule}; consent was given by {', '.join(sorted(given_set))}")
    try:
        date = dt.date.fromisoformat(str(consent.get("date")))
    except ValueError as exc:
        raise ConsentError(source, "'consent.date' must be a date such as 2026-11-01") from exc
    if session_date is None and record.get("date") is not None:
        try:
            session_date = dt.date.fromisoformat(str(record.get("date")))
        except ValueError as exc:
            raise ConsentError(source, "'date' (the session date) must be a date such as 2026-11-28") from exc
    if session_date is not None and date > session_date:
        raise ConsentError(source, f"consent dated {date} is after the session ({session_date}); a recording "
                                   "made before consent was given is not processed")
    if date > dt.date.today():
        raise ConsentError(source, f"consent dated {date} is in the future")
    research = consent.get("research_use", False)
    if not isinstance(research, bool):
        raise ConsentError(source, "'consent.research_use' must be true or false")
    return Consent(given_by=tuple(sorted(given_set)), date=date, research_use=research, rule=rule)


def refuse_without_consent(path: str | Path) -> None:
    """Refuse metadata whose consent record does not consent to analysis; metadata with no record passes.

    The nightly inbox demands a full consent record (:func:`check_consent`). A direct analysis
    (``alliance analyze --metadata``) may use a researcher's own metadata without one (the demo, simulated
    sessions), but a record that is there and says no is always obeyed.

    Parameters
    ----------
    path : str or Path
        The metadata JSON file.

    Raises
    ------
    ConsentError
        The file holds a ``consent`` record whose ``analysis`` is not true, or that :func:`check_consent` refuses
        (the wrong people consented for the client's age, a date in the future); the message names the file.
    MetadataError
        The file cannot be read as a JSON object.
    """
    record = read_sidecar(path)
    consent = record.get("consent")
    if consent is None:
        return
    if not isinstance(consent, Mapping) or consent.get("analysis") is not True:
        raise ConsentError(path, "consent to analysis is not given ('consent.analysis' must be true); "
                                 "the recording was not analysed")
    # a record that is there is checked as the nightly run checks it: who consented for the client's age (WGBO),
    # its date (a direct analysis accepted consent the inbox refused: fresh-user trial)
    check_consent(record, source=path)
