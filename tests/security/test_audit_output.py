"""Issue 14: the audit log cannot be forged through its own inputs.

A login name (or any field) holding tabs or newlines printed a fake row in `alliance audit`. Every audit row is
printed as exactly one line in tsv and csv (tabs, newlines, carriage returns, backslashes and other control
characters escaped), and `--format json` gives the exact stored values.
"""

from __future__ import annotations

import csv
import io
import json

import pytest

from flows.store import AUDIT_FIELDS, Store

FORGED = "x\n1\t2026-01-01\tlogin\tc-9\ts-9\tt-anna\tsuccess\tforged"
DETAIL = "back\\slash,\"quoted\"\r\x1b[2Kcleared\u2028next"


@pytest.fixture()
def store(tmp_path, monkeypatch):
    from pipeline.settings import Settings

    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path / "data"))
    s = Store.for_settings(Settings())
    s.audit("login", actor=FORGED, outcome="refused", detail=DETAIL)
    s.audit("deleted", actor="alliance purge", outcome="success", client_id="c-1", detail="purged 1 sessions")
    return s


def _audit(*args: str):
    from typer.testing import CliRunner

    from flows.cli import app

    return CliRunner().invoke(app, ["audit", *args])


def _unescape(field: str) -> str:
    return field.encode("ascii", "backslashreplace").decode("unicode_escape")


def test_tsv_prints_one_line_per_row_with_todays_columns(store):
    r = _audit()
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "\t".join(AUDIT_FIELDS)
    assert len(lines) == 3  # the header and two rows, however the fields are made
    forged = lines[1].split("\t")
    assert len(forged) == len(AUDIT_FIELDS)
    assert forged[AUDIT_FIELDS.index("event")] == "login"
    assert _unescape(forged[AUDIT_FIELDS.index("actor")]) == FORGED
    assert _unescape(forged[AUDIT_FIELDS.index("detail")]) == DETAIL
    assert "\x1b" not in r.stdout and "\u2028" not in r.stdout and "\r" not in r.stdout
    assert lines[2].split("\t")[AUDIT_FIELDS.index("detail")] == "purged 1 sessions"  # plain values stay plain


def test_csv_prints_one_line_per_row(store):
    r = _audit("--format", "csv")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 3
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0] == list(AUDIT_FIELDS) and len(rows) == 3
    assert all(len(row) == len(AUDIT_FIELDS) for row in rows)
    assert _unescape(rows[1][AUDIT_FIELDS.index("actor")]) == FORGED
    assert _unescape(rows[1][AUDIT_FIELDS.index("detail")]) == DETAIL


def test_json_round_trips_the_exact_values(store):
    r = _audit("--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [row["actor"] for row in rows] == [FORGED, "alliance purge"]
    assert rows[0]["detail"] == DETAIL and set(rows[0]) == set(AUDIT_FIELDS)
    assert len(r.stdout.splitlines()) == 2 + len(rows)  # "[", one object per line, "]"
    only = json.loads(_audit("--format", "json", "--client", "c-1").stdout)
    assert [row["event"] for row in only] == ["deleted"]


def test_an_unknown_format_is_refused_in_one_line(store):
    r = _audit("--format", "xml")
    assert r.exit_code == 2
    assert "--format" in r.stderr and "tsv" in r.stderr and "Traceback" not in r.output


@pytest.mark.parametrize("client", ["..", "../c-1", "c 1", ""])
def test_an_odd_client_id_is_refused_in_one_line(store, client):
    result = _audit("--client", client)
    assert result.exit_code == 2, result.output
    assert "--client must be" in result.output and "Traceback" not in result.output
    assert "purged" not in result.output  # no row was printed
