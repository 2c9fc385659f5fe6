"""Consent for minors (WGBO): who must consent at which age; errors name the file."""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline.sidecar import check_consent
from pipeline.errors import ConsentError


def _record(age, given_by, **consent):
    return {"client_age": age, "consent": {"analysis": True, "given_by": given_by, "date": "2026-11-01", **consent}}


@pytest.mark.parametrize("age, given_by", [(8, ["parent"]), (11.9, ["guardian"]), (12, ["client", "parent"]),
                                           (15, ["parent", "client"]), (16, ["client"]), (17, ["client", "parent"])])
def test_valid_consent_by_age(age, given_by):
    c = check_consent(_record(age, given_by), source="s1.wav.json")
    assert c.research_use is False and c.date == dt.date(2026, 11, 1)


@pytest.mark.parametrize("record, message", [
    ({"client_age": 9}, "no consent record"),
    (_record(9, ["parent"], analysis=False), "consent to analysis is not given"),
    (_record(9, ["parent"], analysis="true"), 'it is "true", a text, not the JSON value true'),
    (_record(9, ["client"]), "client aged 9: under 12: the parents with authority consent"),
    (_record(13, ["parent"]), "client aged 13: 12 to 15: the client and the parents both consent"),
    (_record(13, ["client"]), "12 to 15"),
    (_record(16, ["parent"]), "16 or older: the client consents"),
    ({"consent": {"analysis": True, "given_by": ["parent"], "date": "2026-11-01"}}, "age is missing"),
    (_record(9, []), "must list who consented"),
    (_record(9, ["parent"], date="yesterday"), "must be a date"),
    (_record(9, ["parent"], date="2030-01-01"), "is after the session"),
    (_record(9, ["parent"], research_use="yes"), "must be true or false"),
    ({**_record(17, ["client"]), "participants": [{"role": "client", "age": 11}]}, "disagree"),
    ({"client_age": 9, "consent": [True]}, "'consent' must be an object"),  # it said "'consent' is missing"
    (_record(9, ["parent"], withdrawn=True), "'consent.withdrawn' is not a field"),  # it was ignored: analysed
    ({**_record(9, ["parent"]), "participants": 5}, "'participants' must be a list"),
])
def test_invalid_consent_names_the_file_and_the_rule(record, message):
    with pytest.raises(ConsentError, match=f"s1.wav.json: .*{message}"):
        check_consent(record, source="s1.wav.json", session_date=dt.date(2026, 11, 28))


def test_age_from_the_client_participant():
    record = {"participants": [{"role": "client", "age": 14}],
              "consent": {"analysis": True, "given_by": ["client", "parent"], "date": "2026-10-01",
                          "research_use": True}}
    assert check_consent(record, source="x.json").research_use is True


def test_a_recording_made_before_consent_is_refused():
    record = {**_record(9, ["parent"], date="2026-11-27"), "date": "2026-11-20"}
    with pytest.raises(ConsentError, match="consent dated 2026-11-27 is after the session .2026-11-20."):
        check_consent(record, source="s1.wav.json")
