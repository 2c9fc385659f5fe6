"""The review web app: login, only one's own clients (403 otherwise), clips, verdicts, audit, export for retraining."""

from __future__ import annotations

import functools
import hashlib
import json

import numpy as np
import pytest

from flows.export import export_reviews
from flows.store import Store
from flows.web import create_app, hash_password, verify_password
from pipeline.annotations import read_annotations
from tests.conftest import SAMPLE_WAV

# the test logins' passwords (the policy: 10+ characters, 5+ different ones, not the login name)
PASSWORDS = {"t-anna": "kaars-vijver-42", "t-bram": "molen-duin-73"}
ORIGIN = "http://testserver"  # the TestClient's own origin, which a browser sends with every form


# export-reviews only exports sessions whose consent record allows research use
RESEARCH_CONSENT = {"analysis": True, "research_use": True, "given_by": ["parent"], "date": "2025-01-05"}


@functools.lru_cache(maxsize=None)
def _password_hash(therapist: str) -> str:
    """Each test login's argon2id hash, made once per test run (hashing is most of the web tests' time)."""
    return hash_password(PASSWORDS[therapist], login=therapist)


@pytest.fixture()
def clinic(tmp_path, monkeypatch):
    """Two therapists, one analysed session each, the recordings retained in the inbox's done/ folder."""
    import shutil

    from pipeline.settings import Settings

    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ALLIANCE_INBOX_DIR", str(tmp_path / "inbox"))
    settings = Settings()
    store = Store.for_settings(settings)
    done = tmp_path / "inbox" / "done"
    done.mkdir(parents=True)
    for therapist, sid, client in (("t-anna", "s-1", "c-1"), ("t-bram", "s-2", "c-2")):
        store.add_therapist(therapist, _password_hash(therapist))
        rec = done / f"{sid}.wav"
        shutil.copy(SAMPLE_WAV, rec)
        (done / f"{sid}.wav.json").write_text(json.dumps({  # the clinic's record, kept by the nightly run
            "session_id": sid, "client_id": client, "therapist_id": therapist, "client_age": 11,
            "participants": [{"role": "therapist", "id": therapist}, {"role": "client", "age": 11}],
            "consent": RESEARCH_CONSENT}))
        out = tmp_path / "data" / "sessions" / sid
        out.mkdir(parents=True)
        (out / "report.html").write_text(f"<html><body>report {sid}</body></html>")
        (out / "session.json").write_text(json.dumps({"transcript": {"language": "en"}}))
        store.save_session(session_id=sid, client_id=client, therapist_id=therapist, recording_name=rec.name,
                           recording_sha256=hashlib.sha256(rec.read_bytes()).hexdigest(), status="analysed",
                           reason=None, out_dir=str(out), model_version="sim-v1", research_use=True, run_id="r1")
        store.save_flags(sid, [{"start": 10.0, "end": 20.0, "marker_type": "withdrawal", "probability": 0.8},
                               {"start": 21.0, "end": 28.0, "marker_type": "confrontation", "probability": 0.7}],
                         "sim-v1")
    return settings, store


def csrf_token(page: str) -> str | None:
    """The CSRF token of the first form on a page, as a browser would submit it."""
    import re

    m = re.search(r'name="csrf" value="([^"]+)"', page)
    return m.group(1) if m else None


def login(c, user: str, password: str | None = None, **kwargs):
    """Log in the way a browser does: open the login form, submit it with its token."""
    token = csrf_token(c.get("/login").text)
    data = {"therapist": user, "password": PASSWORDS.get(user, "") if password is None else password}
    return c.post("/login", data={**data, "csrf": token or ""}, follow_redirects=False, **kwargs)


def post_form(c, page_url: str, action: str, data: dict, **kwargs):
    """Submit a form of the page at ``page_url`` with that page's CSRF token."""
    token = csrf_token(c.get(page_url).text)
    return c.post(action, data={**data, "csrf": token or ""}, follow_redirects=False, **kwargs)


def _client(settings, user=None, **app_kwargs):
    from fastapi.testclient import TestClient

    c = TestClient(create_app(settings, language="en", **app_kwargs), headers={"Origin": ORIGIN})
    if user:
        r = login(c, user)
        assert r.status_code == 303 and r.headers["location"] == "/"
    return c


def test_passwords_are_stored_as_argon2_hashes(clinic):
    _, store = clinic
    stored = store.password_hash("t-anna")
    assert stored.startswith("$argon2id$") and PASSWORDS["t-anna"] not in stored
    assert verify_password(stored, PASSWORDS["t-anna"]) and not verify_password(stored, "wrong")
    assert not verify_password(None, "anything")
    with pytest.raises(ValueError, match="at least 10 characters"):
        hash_password("short", login="t-anna")


def test_wrong_password_is_refused_and_audited(clinic):
    settings, store = clinic
    c = _client(settings)
    r = login(c, "t-anna", "nope")
    assert r.headers["location"] == "/login?error=1"
    assert c.get("/", follow_redirects=False).status_code == 303  # not logged in: back to the login page
    assert any(a["event"] == "login" and a["outcome"] == "refused" for a in store.audit_rows())


def test_a_therapist_sees_only_their_own_clients(clinic):
    settings, store = clinic
    c = _client(settings, "t-anna")
    index = c.get("/").text
    assert "s-1" in index and "s-2" not in index
    assert c.get("/sessions/s-2").status_code == 403
    assert c.get("/sessions/s-2/report").status_code == 403
    assert c.get("/sessions/s-2/flags/3/clip.wav").status_code == 403
    assert any(a["event"] == "access refused" and a["session_id"] == "s-2" for a in store.audit_rows())


def test_report_clip_and_review_are_served_stored_and_audited(clinic):
    settings, store = clinic
    c = _client(settings, "t-anna")
    assert "report s-1" in c.get("/sessions/s-1/report").text
    page = c.get("/sessions/s-1").text
    assert "withdrawal" in page and "<audio" in page
    flag = store.flags("s-1")[0]
    clip = c.get(f"/sessions/s-1/flags/{flag['id']}/clip.wav")
    assert clip.status_code == 200 and clip.headers["content-type"] == "audio/wav"
    from pipeline.audio import decode

    path = settings.data_dir / "clip.wav"
    path.write_bytes(clip.content)
    assert decode(path).duration_s == pytest.approx(10.0 + 2.0, abs=0.05)  # the flag ± 1 s, not the whole file
    r = post_form(c, "/sessions/s-1", f"/sessions/s-1/flags/{flag['id']}/review",
                  {"verdict": "repaired", "note": "we talked it through"})
    assert r.status_code == 303
    (review,) = store.reviews(session_id="s-1")
    assert (review["verdict"], review["note"], review["therapist_id"]) == ("repaired", "we talked it through", "t-anna")
    events = [(a["event"], a["session_id"]) for a in store.audit_rows()]
    assert ("report viewed", "s-1") in events and ("clip played", "s-1") in events
    assert ("flag reviewed", "s-1") in events
    assert not any("we talked" in (a["detail"] or "") for a in store.audit_rows())  # notes never in the audit log
    assert post_form(c, "/sessions/s-1", f"/sessions/s-1/flags/{flag['id']}/review",
                     {"verdict": "maybe"}).status_code == 422


def test_dutch_interface_uses_the_clinical_terms(clinic):
    from fastapi.testclient import TestClient

    settings, _ = clinic
    c = TestClient(create_app(settings, language="nl"), headers={"Origin": ORIGIN})
    login(c, "t-anna")
    page = c.get("/sessions/s-1").text
    assert "terugtrekking" in page and "confrontatie" in page and "breuk, hersteld" in page


def test_pages_escape_what_was_typed(clinic):
    """The page templates autoescape: a note holding markup comes back as text in its textarea."""
    settings, store = clinic
    flag = store.flags("s-1")[0]
    store.save_review(session_id="s-1", flag=flag, verdict="rupture", note="</textarea><script>alert(1)</script>",
                      therapist_id="t-anna")
    page = _client(settings, "t-anna").get("/sessions/s-1").text
    assert "&lt;/textarea&gt;&lt;script&gt;alert(1)&lt;/script&gt;</textarea>" in page and "<script" not in page


def test_exported_reviews_are_annotated_sessions_in_the_training_format(clinic, tmp_path):
    from models.dataset import discover_sessions

    settings, store = clinic
    f1, f2 = store.flags("s-1")
    store.save_review(session_id="s-1", flag=f1, verdict="rupture", note=None, therapist_id="t-anna")
    store.save_review(session_id="s-1", flag=f2, verdict="no_rupture", note=None, therapist_id="t-anna")
    g1, _ = store.flags("s-2")
    store.save_review(session_id="s-2", flag=g1, verdict="repaired", note="x", therapist_id="t-bram")
    result = export_reviews(settings, tmp_path / "export")
    assert result == {"exported": ["s-1", "s-2"], "skipped": []}
    sessions = discover_sessions(tmp_path / "export")
    assert [(s.session_id, s.client_id) for s in sessions] == [("s-1", "c-1"), ("s-2", "c-2")]
    notes = read_annotations(sessions[0].annotations, duration_s=30.0)
    assert [(n.start, n.end, n.label) for n in notes] == [(10.0, 20.0, "withdrawal")]  # "no rupture" adds nothing
    assert read_annotations(sessions[1].annotations)[0].marker == "repaired"


def test_client_trend_chart_across_sessions(clinic):
    settings, store = clinic
    out = settings.data_dir / "sessions"
    for i, (sid, share) in enumerate((("s-1", 0.45), ("s-3", 0.30), ("s-4", 0.15))):
        folder = out / sid
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "session.json").write_text(json.dumps({
            "transcript": {"language": "nl"}, "flags": [{}] * i,
            "session_markers": {"client_speech_share": {"value": share, "unit": "ratio"}}}))
        if sid != "s-1":
            store.save_session(session_id=sid, client_id="c-1", therapist_id="t-anna", recording_name=None,
                               recording_sha256=None, status="analysed", reason=None, out_dir=str(folder),
                               model_version="sim-v1", research_use=True, run_id="r1")
    from flows.web import client_trend

    points = client_trend(store.sessions(client_id="c-1"))
    assert [p["markers"]["client_speech_share"] for p in points] == [0.45, 0.30, 0.15]  # fraying over weeks
    assert [p["flags"] for p in points] == [0, 1, 2]
    c = _client(settings, "t-anna")
    page = c.get("/clients/c-1/trend").text
    assert "<svg" in page and "client_speech_share" in page and "<script" not in page
    assert c.get("/clients/c-2/trend").status_code == 403


@pytest.mark.slow
def test_exported_reviews_are_accepted_by_retrain_without_edits(prefect_harness, clinic, tmp_path):
    """Two reviewed 2-minute sessions of two clients, exported and retrained on as they are."""
    from typer.testing import CliRunner

    from flows.cli import app
    from pipeline.audio import decode, save_wav

    settings, store = clinic
    long = np.tile(decode(SAMPLE_WAV).samples, 4)  # 2 minutes of the call
    spans = {"s-1": (10.0, 45.0, "withdrawal"), "s-2": (60.0, 95.0, "confrontation")}
    for sid, (a, b, kind) in spans.items():
        rec = settings.inbox_dir / "done" / f"{sid}.wav"
        save_wav(rec, long, 16000)
        row = store.session(sid)
        store.save_session(**{**{k: v for k, v in row.items() if k != "updated_at"},
                              "recording_sha256": hashlib.sha256(rec.read_bytes()).hexdigest()})
        store.save_flags(sid, [{"start": a, "end": b, "marker_type": kind, "probability": 0.9}], "sim-v1")
        store.save_review(session_id=sid, flag=store.flags(sid)[0], verdict="rupture", note=None,
                          therapist_id=row["therapist_id"])
    assert export_reviews(settings, tmp_path / "export")["exported"] == ["s-1", "s-2"]
    result = CliRunner().invoke(app, ["retrain", "--data", str(tmp_path / "export"), "--version", "from-reviews"])
    assert result.exit_code == 0, result.output
    card = json.loads((settings.data_dir / "models" / "from-reviews" / "model_card.json").read_text())
    assert card["training_data"].count("2 sessions, 2 clients") == 1


def test_export_keeps_the_sessions_own_record_and_names_a_verdict_it_cannot_keep(clinic, tmp_path):
    settings, store = clinic
    # the nightly run keeps the sidecar (the clinic's record) next to the retained recording
    (settings.inbox_dir / "done" / "s-1.wav.json").write_text(json.dumps({
        "language": "auto", "client_age": 11, "consent": RESEARCH_CONSENT,
        "participants": [{"role": "therapist", "id": "t-anna"}, {"role": "client", "age": 11}, {"role": "parent"}]}))
    store.save_flags("s-1", [{"start": 0.0, "end": 30.0, "marker_type": "confrontation", "probability": 0.9},
                             {"start": 0.0, "end": 30.0, "marker_type": "withdrawal", "probability": 0.6}], "sim-v1")
    f1, f2 = store.flags("s-1")
    store.save_review(session_id="s-1", flag=f1, verdict="rupture", note=None, therapist_id="t-anna")
    store.save_review(session_id="s-1", flag=f2, verdict="repaired", note=None, therapist_id="t-anna")
    result = export_reviews(settings, tmp_path / "export")
    assert result["exported"] == ["s-1"]
    assert any("withdrawal verdict at 0–30 s overlaps" in line for line in result["skipped"])
    meta = json.loads((tmp_path / "export" / "s-1" / "metadata.json").read_text())
    assert meta["language"] == "auto" and meta["client_age"] == 11 and len(meta["participants"]) == 3


def test_language_stretches_survive_speaker_attribution_and_name_replacement():
    from pipeline.privacy import redact_transcript
    from pipeline.types import Diarization, SpeakerTurn, Transcript, Word
    from pipeline.words import assign_words

    t = Transcript((Word(0.0, 0.5, "hallo", 1.0),), "nl", 0.9, 2.0,
                   language_segments=((0.0, 1.0, "nl", 0.9), (1.0, 2.0, "en", 0.8)))
    d = Diarization((SpeakerTurn(0.0, 2.0, "A"),), ("A",), "t")
    assert assign_words(t, d).language_segments == t.language_segments
    assert redact_transcript(t, {"Anna": "therapist"}).language_segments == t.language_segments
