"""Consent records for recordings of minors, checked before anything is decoded.

The rules follow Dutch practice under the WGBO (Wet op de geneeskundige
behandelingsovereenkomst, art. 7:447 and 7:450 BW):

* client **under 12**: the parents (or guardian) with authority consent;
* client **12 to 15**: both the client and the parents consent;
* client **16 or older**: the client consents alone.

The consent record sits in the recording's sidecar JSON::

    "consent": {"analysis": true, "research_use": false,
                "given_by": ["parent"], "date": "2026-11-01"}

``analysis`` must be true for the recording to be processed; ``research_use``
(a separate yes/no) decides whether the session may be used for retraining.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from pipeline.errors import ConsentError

PARENT_ROLES = ("parent", "guardian")


@dataclass(frozen=True)
class Consent:
    """A valid consent: who gave it, when, and whether research use is allowed."""

    given_by: tuple[str, ...]
    date: dt.date
    research_use: bool
    rule: str


def required_consenters(age: float) -> tuple[str, str]:
    """Who must consent at this age, and the WGBO rule in words.

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


def check_consent(record: Mapping[str, Any], *, source: str | Path, session_date: dt.date | None = None) -> Consent:
    """Validate a sidecar's consent against the client's age.

    Parameters
    ----------
    record : mapping
        The parsed sidecar JSON (needs ``client_age`` or a client participant
        with ``age``, and ``consent``).
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
    if not isinstance(consent, Mapping):
        raise ConsentError(source, "no consent record ('consent' is missing); the recording was not processed")
    if consent.get("analysis") is not True:
        raise ConsentError(source, "consent to analysis is not given ('consent.analysis' must be true)")
    age = record.get("client_age")
    participant_age = next((p.get("age") for p in record.get("participants", []) or []
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
