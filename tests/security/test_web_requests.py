"""Issue 14: ids in web requests are checked before use (404), and `alliance web` on a busy port says so."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from tests.test_web import _client, clinic, csrf_token  # noqa: F401

BAD_IDS = ["-s1", "s 1", "x" * 65, "s1\u00e9"]  # not ID_PATTERN: leading '-', a space, 65 characters, non-ASCII


@pytest.mark.parametrize("bad", BAD_IDS)
def test_a_session_id_outside_the_id_pattern_is_404_before_any_lookup(clinic, bad):  # noqa: F811
    """Even a row stored under such an id (data from before ids were checked) is never served."""
    settings, store = clinic
    row = store.session("s-1")
    store.save_session(**{**{k: v for k, v in row.items() if k not in ("updated_at", "session_id", "client_id")},
                          "session_id": bad, "client_id": "c-1"})
    store.save_flags(bad, [{"start": 10.0, "end": 20.0, "marker_type": "withdrawal", "probability": 0.8}], "sim-v1")
    flag = store.flags(bad)[0]["id"]
    c = _client(settings, "t-anna")
    for path in (f"/sessions/{bad}", f"/sessions/{bad}/report", f"/sessions/{bad}/flags/{flag}/clip.wav"):
        assert c.get(path).status_code == 404, path
    token = csrf_token(c.get("/sessions/s-1").text)
    r = c.post(f"/sessions/{bad}/flags/{flag}/review", data={"verdict": "rupture", "csrf": token or ""},
               follow_redirects=False)
    assert r.status_code == 404
    assert store.reviews(session_id=bad) == []
    assert not [a for a in store.audit_rows() if a["session_id"] == bad]  # nothing was viewed or played


@pytest.mark.parametrize("bad", BAD_IDS)
def test_a_client_id_outside_the_id_pattern_is_404(clinic, bad):  # noqa: F811
    settings, store = clinic
    row = store.session("s-1")
    store.save_session(**{**{k: v for k, v in row.items() if k not in ("updated_at", "session_id", "client_id")},
                          "session_id": "s-7", "client_id": bad})
    c = _client(settings, "t-anna")
    assert c.get(f"/clients/{bad}/trend").status_code == 404
    assert not [a for a in store.audit_rows() if a["client_id"] == bad]


def test_web_on_a_port_in_use_says_so_in_one_line(clinic):  # noqa: F811
    from flows.cli import app

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["web", "--port", str(port)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1] == (
        f"error: port {port} on 127.0.0.1 is already in use (another alliance web?); stop that program or "
        "choose another port with --port")
    assert "Review app on" not in result.output  # no claim that it serves


def test_only_this_servers_own_host_names_are_answered(clinic):  # noqa: F811
    """DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1 is same-origin with itself
    (its Origin and Host agree), so `alliance web` answers only to 127.0.0.1:PORT and localhost:PORT."""
    from fastapi.testclient import TestClient

    from flows.web import create_app

    settings, store = clinic
    app = create_app(settings, language="en", hosts={"127.0.0.1:8765", "localhost:8765"})
    c = TestClient(app, base_url="http://127.0.0.1:8765")
    assert c.get("/login").status_code == 200
    assert TestClient(app, base_url="http://localhost:8765").get("/login").status_code == 200
    rebound = TestClient(app, base_url="http://evil.example:8765")
    assert rebound.get("/login").status_code == 400
    r = rebound.post("/login", data={"therapist": "t-anna", "password": "x"},
                     headers={"Origin": "http://evil.example:8765"})
    assert r.status_code == 400 and "content-security-policy" in r.headers
    assert [a["event"] for a in store.audit_rows()] == ["request refused", "request refused"]
