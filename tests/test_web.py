"""The review web app: login, only one's own clients (404 otherwise, as for an unknown id), clips, verdicts, audit,
export for retraining."""

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


# Session s-1 as the analysis wrote it (Dutch reasons, names already replaced): who said what when, and its
# flags with their reasons and the 3RS markers they resemble; the database holds the same two flags.
S1_UTTERANCES = (("therapist", 4.0, 5.0, "Hoe ging het op school?"),  # ends where flag 1's context starts
                 ("therapist", 8.0, 9.5, "Wil je daar iets over vertellen?"),
                 ("client", 12.0, 12.5, "weet niet"),
                 ("therapist", 15.0, 16.0, "Was het een moeilijke dag?"),
                 ("client", 22.0, 23.0, "nee, ik wil niet"),
                 ("client", 27.0, 28.0, "laat maar"))
S1_FLAGS = ({"start": 10.0, "end": 20.0, "probability": 0.86, "marker_type": "withdrawal", "model_version": "sim-v1",
             "reasons": ["na 4 van de 5 vragen geen of een kort antwoord (rest van de sessie 1 van de 5)",
                         "de cliënt sprak stiller dan elders in deze sessie (1,2 × de gewone variatie)"],
             "resembles": ["minimal_response", "avoidance"]},
            {"start": 21.0, "end": 28.0, "probability": 0.55, "marker_type": "confrontation",
             "model_version": "sim-v1", "reasons": ["de cliënt weigerde 3 keer per minuut (rest van de sessie 0)"],
             "resembles": ["rejects_intervention"]})


def session_json(*, date: str | None, age: float | None, utterances=(), flags=(), markers=None) -> str:
    """A ``session.json`` as the analysis writes it, with only what the review app reads."""
    return json.dumps({
        "transcript": {"language": "nl"}, "session_date": date, "client_age": age,
        "recording": {"path": "x.wav", "sample_rate_hz": 16000, "duration_s": 30.0},
        "utterances": [{"speaker": "SPEAKER_00" if role == "therapist" else "SPEAKER_01", "role": role,
                        "start": a, "end": b, "words": [{"start": a, "end": b, "text": w, "probability": 0.9}
                                                        for w in text.split()]}
                       for role, a, b, text in utterances],
        "flags": list(flags), "model_version": "sim-v1",
        "session_markers": markers or {}})


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
    for therapist, sid, client, date in (("t-anna", "s-1", "c-1", "2026-11-20"), ("t-bram", "s-2", "c-2",
                                                                                   "2026-11-21")):
        store.add_therapist(therapist, _password_hash(therapist))
        rec = done / f"{sid}.wav"
        shutil.copy(SAMPLE_WAV, rec)
        (done / f"{sid}.wav.json").write_text(json.dumps({  # the clinic's record, kept by the nightly run
            "session_id": sid, "client_id": client, "therapist_id": therapist, "client_age": 11, "date": date,
            "participants": [{"role": "therapist", "id": therapist}, {"role": "client", "age": 11}],
            "consent": RESEARCH_CONSENT}))
        out = tmp_path / "data" / "sessions" / sid
        out.mkdir(parents=True)
        (out / "report.html").write_text(f"<html><body>report {sid}</body></html>")
        (out / "session.json").write_text(session_json(date=date, age=11, utterances=S1_UTTERANCES,
                                                       flags=S1_FLAGS))
        store.save_session(session_id=sid, client_id=client, therapist_id=therapist, recording_name=rec.name,
                           recording_sha256=hashlib.sha256(rec.read_bytes()).hexdigest(), status="analysed",
                           reason=None, out_dir=str(out), model_version="sim-v1", research_use=True, run_id="r1")
        store.save_flags(sid, [{"start": f["start"], "end": f["end"], "marker_type": f["marker_type"],
                                "probability": f["probability"]} for f in S1_FLAGS], "sim-v1")
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


def _client(settings, user=None, *, language="en", **app_kwargs):
    from fastapi.testclient import TestClient

    c = TestClient(create_app(settings, language=language, **app_kwargs), headers={"Origin": ORIGIN})
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
    assert c.get("/sessions/s-2").status_code == 404
    assert c.get("/sessions/s-2/report").status_code == 404
    assert c.get("/sessions/s-2/flags/3/clip.wav").status_code == 404
    assert any(a["event"] == "access refused" and a["session_id"] == "s-2" for a in store.audit_rows())


def test_another_therapists_session_or_client_answers_exactly_as_an_unknown_id(clinic):
    """A logged-in therapist cannot probe which session or client ids exist (issue 18): same status, same page."""
    settings, store = clinic
    c = _client(settings, "t-anna")
    flag = store.flags("s-2")[0]["id"]
    for other, unknown in (("/sessions/s-2", "/sessions/s-9"),
                           ("/sessions/s-2/report", "/sessions/s-9/report"),
                           (f"/sessions/s-2/flags/{flag}/clip.wav", f"/sessions/s-9/flags/{flag}/clip.wav"),
                           ("/clients/c-2/trend", "/clients/c-9/trend")):
        a, b = c.get(other), c.get(unknown)
        assert (a.status_code, a.text) == (b.status_code, b.text) and a.status_code == 404, other
        assert a.headers["content-type"] == b.headers["content-type"], other
    token = csrf_token(c.get("/sessions/s-1").text)
    a, b = (c.post(f"/sessions/{sid}/flags/{flag}/review", data={"verdict": "rupture", "csrf": token},
                   follow_redirects=False) for sid in ("s-2", "s-9"))
    assert (a.status_code, a.text) == (b.status_code, b.text) and a.status_code == 404
    assert store.reviews(session_id="s-2") == []
    refused = [a for a in store.audit_rows() if a["event"] == "access refused"]
    assert sorted((a["session_id"] or "", a["client_id"]) for a in refused) == [
        ("", "c-2"), ("s-2", "c-2"), ("s-2", "c-2"), ("s-2", "c-2"), ("s-2", "c-2")]
    # an unknown id is audited too: probing shows in the audit log, and both answers cost one audit row
    unknown = [a for a in store.audit_rows() if a["event"] == "not found"]
    assert sorted((a["session_id"] or "", a["client_id"] or "", a["actor"]) for a in unknown) == [
        ("", "c-9", "t-anna")] + [("s-9", "", "t-anna")] * 4


def test_head_answers_like_get_without_a_body(clinic):
    """Trial, 5 December: HEAD gave 405 on every page (HTTP expects HEAD wherever GET is served: link checkers and
    monitoring use it); still a login first, and still nothing of another therapist's."""
    settings, store = clinic
    c = _client(settings, "t-anna")
    flag = store.flags("s-1")[0]
    for path in ("/", "/sessions/s-1", "/sessions/s-1/report", f"/sessions/s-1/flags/{flag['id']}/clip.wav",
                 "/clients/c-1/trend", "/login"):
        got, head = c.get(path), c.head(path)
        assert head.status_code == got.status_code == 200, (path, head.status_code)
        assert head.content == b"" and head.headers["content-type"] == got.headers["content-type"], path
    assert _client(settings, "t-bram").head("/sessions/s-1").status_code == 404
    anonymous = _client(settings, language="nl")
    r = anonymous.head("/sessions/s-1", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


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
    assert decode(path).duration_s == pytest.approx(10.0 + 10.0, abs=0.05)  # the flag ± 5 s, not the whole file
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
    assert result == {"exported": ["s-1", "s-2"], "skipped": [], "left_out": []}
    sessions = discover_sessions(tmp_path / "export")
    assert [(s.session_id, s.client_id) for s in sessions] == [("s-1", "c-1"), ("s-2", "c-2")]
    notes = read_annotations(sessions[0].annotations, duration_s=30.0)
    assert [(n.start, n.end, n.label) for n in notes] == [(10.0, 20.0, "withdrawal")]  # "no rupture" adds nothing
    assert read_annotations(sessions[1].annotations)[0].marker == "repaired"


def _add_session(settings, store, sid, *, client, therapist, date, markers=None, flags=0):
    """Another analysed session (no recording retained) with ``flags`` withdrawal flags of 5 s each."""
    folder = settings.data_dir / "sessions" / sid
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "session.json").write_text(session_json(date=date, age=11, markers=markers))
    store.save_session(session_id=sid, client_id=client, therapist_id=therapist, recording_name=None,
                       recording_sha256=None, status="analysed", reason=None, out_dir=str(folder),
                       model_version="sim-v1", research_use=True, run_id="r1")
    store.save_flags(sid, [{"start": 5.0 * i, "end": 5.0 * i + 5, "marker_type": "withdrawal", "probability": 0.9}
                           for i in range(flags)], "sim-v1")


def test_client_trend_in_session_date_order_with_verdicts_counted_once(clinic):
    from flows.web import client_trend

    settings, store = clinic
    # analysed out of order: the trend follows the session dates, not the processing dates
    _add_session(settings, store, "s-4", client="c-1", therapist="t-anna", date="2026-12-04", flags=2,
                 markers={"client_speech_share": {"value": 0.15, "unit": "ratio"}})
    _add_session(settings, store, "s-0", client="c-1", therapist="t-anna", date="2026-11-06", flags=0,
                 markers={"client_speech_share": {"value": 0.45, "unit": "ratio"}})
    f1, f2 = store.flags("s-1")
    store.save_review(session_id="s-1", flag=f1, verdict="rupture", note=None, therapist_id="t-anna")
    store.save_review(session_id="s-1", flag=f1, verdict="no_rupture", note=None, therapist_id="t-anna")  # again
    points = client_trend(store.sessions(client_id="c-1"), store)
    assert [(p["session_id"], p["number"], p["date"]) for p in points] == [
        ("s-0", 1, "2026-11-06"), ("s-1", 2, "2026-11-20"), ("s-4", 3, "2026-12-04")]
    assert [p["markers"].get("client_speech_share") for p in points] == [0.45, None, 0.15]
    assert [p["flags"] for p in points] == [0, 2, 2]
    # the re-reviewed flag counts once, with its latest verdict
    assert points[1]["verdicts"] == {"rupture": 0, "no_rupture": 1, "repaired": 0, "open": 1}
    assert points[2]["verdicts"] == {"rupture": 0, "no_rupture": 0, "repaired": 0, "open": 2}


def test_a_clients_trend_is_shown_to_every_therapist_who_treated_them_and_nobody_else(clinic):
    settings, store = clinic
    _add_session(settings, store, "s-5", client="c-1", therapist="t-bram", date="2026-11-27", flags=1)
    store.add_therapist("t-cees", hash_password("zwaluw-kade-19", login="t-cees"))
    PASSWORDS["t-cees"] = "zwaluw-kade-19"
    try:
        for user in ("t-anna", "t-bram"):
            r = _client(settings, user).get("/clients/c-1/trend")
            assert r.status_code == 200, user
            assert "s-1" in r.text and "s-5" in r.text  # both therapists' sessions of the client
        assert _client(settings, "t-cees").get("/clients/c-1/trend").status_code == 404  # as an unknown client
        assert _client(settings, "t-anna").get("/clients/c-2/trend").status_code == 404  # t-bram's client only
    finally:
        del PASSWORDS["t-cees"]
    refused = [a for a in store.audit_rows() if a["event"] == "access refused" and a["client_id"] == "c-1"]
    assert [a["actor"] for a in refused] == ["t-cees"]


def test_the_trend_chart_has_clinical_labels_and_plain_numbers(clinic):
    import re

    settings, store = clinic
    # a marker that barely moves: matplotlib would print an offset such as "1e-15" on its axis
    _add_session(settings, store, "s-3", client="c-1", therapist="t-anna", date="2026-11-27", flags=1,
                 markers={"client_speech_share": {"value": 0.30000000000000004, "unit": "ratio"},
                          "client_arousal_z": {"value": 1e-15, "unit": "z"}})
    _add_session(settings, store, "s-4", client="c-1", therapist="t-anna", date="2026-12-04", flags=0,
                 markers={"client_speech_share": {"value": 0.3, "unit": "ratio"},
                          "client_arousal_z": {"value": -1e-15, "unit": "z"}})
    page = _client(settings, "t-anna", language="nl").get("/clients/c-1/trend").text
    svg = page[page.index("<svg"):page.index("</svg>")]
    shown = " ".join(re.findall(r"<text[^>]*>([^<]*)</text>", svg))
    assert "aandeel spraak van de cliënt" in shown and "signalen per sessie" in shown
    assert "opwinding in de stem van de cliënt" not in shown  # 0 in every session by construction: not drawn
    assert "nr. 2" in shown and "2026-11-20" in shown  # session number and session date on the x axis
    assert not re.search(r"\b[a-z]+(?:_[a-z0-9]+)+\b", shown), shown  # no code names
    assert not re.search(r"\d[eE][-+−]?\d|×10", shown), shown  # no "1e-15", no offset
    assert "30 %" in shown  # a ratio in percent, as the report prints it
    assert 'role="img"' in page and "aria-label" in page


def test_the_trend_draws_the_flags_and_four_markers_as_the_readme_says(clinic):
    """Issue 18: the README promised five marker panels. The client's arousal is a z-score against the session
    itself, so its session value is 0 every time (the duration-weighted mean of its own z-scores): not drawn."""
    import re
    from pathlib import Path

    from flows.web.charts import TREND_MARKERS
    from pipeline.i18n import text

    settings, store = clinic
    every = {"client_speech_share": ("ratio", 0.3), "client_minimal_response_share": ("ratio", 0.5),
             "client_response_latency_s": ("s", 1.2), "longest_silence_s": ("s", 8.0),
             "client_arousal_z": ("z", 1e-16)}
    for i, sid in enumerate(("s-3", "s-4")):
        _add_session(settings, store, sid, client="c-1", therapist="t-anna", date=f"2026-12-0{i + 1}", flags=1,
                     markers={k: {"value": v * (1 + i / 10), "unit": u} for k, (u, v) in every.items()})
    page = _client(settings, "t-anna", language="en").get("/clients/c-1/trend").text
    svg = page[page.index("<svg"):page.index("</svg>")]
    assert len(re.findall(r'<g id="axes_\d+"', svg)) == 1 + 4 == 1 + len(TREND_MARKERS)
    assert "client_arousal_z" not in TREND_MARKERS
    labels = [text(f"marker.{m}.label", "en") for m in TREND_MARKERS]
    assert all(label in svg for label in labels)
    assert text("marker.client_arousal_z.label", "en") not in svg
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    trend = readme[readme.index("- **Client trend**"):][:400]
    assert "flags per session by verdict and four client markers" in " ".join(trend.split())
    assert all(label in " ".join(trend.split()) for label in labels)


def test_lists_show_session_date_client_age_and_session_number(clinic):
    import datetime as dt
    import re

    settings, store = clinic
    _add_session(settings, store, "s-0", client="c-1", therapist="t-anna", date="2026-11-13")
    page = _client(settings, "t-anna", language="nl").get("/").text
    row = next(line for line in page.splitlines() if "/sessions/s-1" in line)
    cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
    # session date (from its metadata, not the day it was processed), session, client, age, session number of
    # the client, flags, flags not yet reviewed
    assert cells == ["2026-11-20", "s-1", "c-1", "11", "2", "2", "2"]
    assert dt.date.today().isoformat() not in row
    assert page.index("/sessions/s-1") < page.index("/sessions/s-0")  # newest session first


def test_the_review_page_shows_reasons_excerpt_clip_timeline_band_and_caveat_in_dutch(clinic):
    from tests.test_report_dutch import SNAKE_CASE, english_words_in, visible_words

    settings, store = clinic
    f1, f2 = store.flags("s-1")
    page = _client(settings, "t-anna", language="nl").get("/sessions/s-1").text
    card = page[page.index(f'id="flag-{f1["id"]}"'):page.index(f'id="flag-{f2["id"]}"')]
    assert "terugtrekking" in card and "kans hoog" in card and "0,86" in card
    assert "Lijkt op (3RS)" in card and "minimale reactie" in card and "vermijden, zich terugtrekken in stilte" in card
    assert S1_FLAGS[0]["reasons"][0] in card and S1_FLAGS[0]["reasons"][1] in card
    assert S1_FLAGS[1]["reasons"][0] not in card  # the other flag's reasons stay on its own card
    # the excerpt: 5 s either side of the flag, each utterance with its role
    assert "Wil je daar iets over vertellen?" in card and "weet niet" in card and "nee, ik wil niet" in card
    assert "Hoe ging het op school?" not in card and "laat maar" not in card
    assert "therapeut" in card and "cliënt" in card
    assert f'src="/sessions/s-1/flags/{f1["id"]}/clip.wav"' in card and "0:05–0:25" in card
    assert "<svg" in card and 'role="img"' in card  # the small timeline, with a text alternative
    assert "0:10–0:20" in card and "0:30" in card
    for verdict, label in (("rupture", "breuk"), ("no_rupture", "geen breuk"), ("repaired", "breuk, hersteld")):
        assert f'<button type="submit" name="verdict" value="{verdict}"' in card and f">{label}</button>" in card
    assert "Model sim-v1: getraind op gesimuleerde sessies" in page
    assert "2026-11-20" in page and "11 jaar" in page
    transcript = {text for _, _, _, text in S1_UTTERANCES}
    words = visible_words(page, transcript)
    for reason in S1_FLAGS[0]["reasons"] + S1_FLAGS[1]["reasons"]:
        words = words.replace(reason, " ")
    assert english_words_in(words) == [] and SNAKE_CASE.findall(words) == []


def test_the_review_page_in_english_on_request(clinic):
    settings, _ = clinic
    page = _client(settings, "t-anna", language="en").get("/sessions/s-1").text
    assert "Resembles (3RS)" in page and "minimal response" in page and "high probability" in page
    assert "Model sim-v1: trained on simulated sessions" in page and "client" in page


# The facts behind S1_FLAGS' reasons, as the analysis keeps them with each flag (issue 18): marker, the stretch's
# value, the client's usual value over the rest of the session (null: a z-score marker has none).
S1_FACTS = ([{"marker": "client_minimal_response_share", "value": 0.8, "usual": 0.2},
             {"marker": "client_intensity_z", "value": -1.2, "usual": None}],
            [{"marker": "client_refusals_per_min", "value": 3.0, "usual": 0.0}])


def test_an_english_app_words_the_reasons_of_a_dutch_analysed_session_in_english(clinic):
    """Issue 18: the reasons were shown in the language of the analysis (Dutch), whatever the app's language."""
    from pathlib import Path

    settings, store = clinic
    dutch = ([{**f, "reasons": reasons, "reason_facts": facts} for f, reasons, facts in zip(S1_FLAGS, (
        ["na 80 % van de vragen van de therapeut een kort of geen antwoord (rest van de sessie 20 %)",
         "de cliënt sprak stiller dan elders in deze sessie (1,2 × de gewone variatie)"],
        ["de cliënt weigerde 3,0 keer per minuut (‘wil niet’) (rest van de sessie 0,0)"]), S1_FACTS)])
    Path(store.session("s-1")["out_dir"], "session.json").write_text(
        session_json(date="2026-11-20", age=11, utterances=S1_UTTERANCES, flags=dutch), encoding="utf-8")
    f1, f2 = store.flags("s-1")
    page = _client(settings, "t-anna", language="en").get("/sessions/s-1").text
    card = page[page.index(f'id="flag-{f1["id"]}"'):page.index(f'id="flag-{f2["id"]}"')]
    assert "80 % of the therapist&#39;s questions got a short answer or none (rest of the session 20 %)" in card
    assert "the client spoke quieter than elsewhere in this session (1.2 × the usual variation)" in card
    assert "the client refused 3.0 times a minute (‘I won&#39;t’) (rest of the session 0.0)" in page
    assert "rest van de sessie" not in page and "stiller" not in page
    # the Dutch app words the same facts in Dutch
    nl = _client(settings, "t-anna", language="nl").get("/sessions/s-1").text
    assert "de cliënt sprak stiller dan elders in deze sessie (1,2 × de gewone variatie)" in nl


def test_a_session_analysed_before_the_facts_were_kept_shows_its_stored_reasons(clinic):
    """Its ``session.json`` flags have sentences only (Dutch here): they are shown as they are, in any app."""
    settings, store = clinic
    f1, f2 = store.flags("s-1")
    page = _client(settings, "t-anna", language="en").get("/sessions/s-1").text
    card = page[page.index(f'id="flag-{f1["id"]}"'):page.index(f'id="flag-{f2["id"]}"')]
    assert S1_FLAGS[0]["reasons"][0] in card and S1_FLAGS[0]["reasons"][1] in card
    assert S1_FLAGS[1]["reasons"][0] in page[page.index(f'id="flag-{f2["id"]}"'):]


def test_the_not_yet_reviewed_filter(clinic):
    settings, store = clinic
    f1, f2 = store.flags("s-1")
    c = _client(settings, "t-anna", language="nl")
    assert post_form(c, "/sessions/s-1", f"/sessions/s-1/flags/{f1['id']}/review",
                     {"verdict": "rupture", "show": "open"}).headers["location"] == (
        f"/sessions/s-1?show=open&saved=1#flag-{f1['id']}")
    open_page = c.get("/sessions/s-1?show=open").text
    assert f'id="flag-{f2["id"]}"' in open_page and f'id="flag-{f1["id"]}"' not in open_page
    all_page = c.get("/sessions/s-1").text
    assert f'id="flag-{f1["id"]}"' in all_page and f'id="flag-{f2["id"]}"' in all_page
    _add_session(settings, store, "s-6", client="c-1", therapist="t-anna", date="2026-11-27", flags=1)
    store.save_review(session_id="s-6", flag=store.flags("s-6")[0], verdict="no_rupture", note=None,
                      therapist_id="t-anna")
    index_open = c.get("/?show=open").text
    assert "/sessions/s-1" in index_open and "/sessions/s-6" not in index_open  # s-6 is fully reviewed
    assert "/sessions/s-6" in c.get("/").text
    assert c.get("/sessions/s-1?show=nonsense").status_code == 422


def test_verdict_history_says_who_changed_what_and_when(clinic):
    settings, store = clinic
    f1, _ = store.flags("s-1")
    _add_session(settings, store, "s-5", client="c-1", therapist="t-bram", date="2026-11-27", flags=0)
    c = _client(settings, "t-anna", language="nl")
    for verdict in ("rupture", "repaired"):
        assert post_form(c, "/sessions/s-1", f"/sessions/s-1/flags/{f1['id']}/review",
                         {"verdict": verdict}).status_code == 303
    history = store.review_history(session_id="s-1")
    assert [(h["flag_id"], h["verdict"], h["therapist_id"]) for h in history] == [
        (f1["id"], "rupture", "t-anna"), (f1["id"], "repaired", "t-anna")]
    page = c.get("/sessions/s-1").text
    card = page[page.index(f'id="flag-{f1["id"]}"'):]
    at = [local_time(h["at"]) for h in history]
    assert f"{at[0]} t-anna: breuk" in card and f"{at[1]} t-anna: breuk, hersteld" in card
    assert 'aria-pressed="true">breuk, hersteld</button>' in card  # the latest verdict is the one shown chosen
    # the team: t-bram, who also treats c-1, sees the history on the client's trend page
    team = _client(settings, "t-bram", language="nl").get("/clients/c-1/trend").text
    assert f"{at[1]} t-anna: breuk, hersteld" in team and "0:10–0:20" in team


def local_time(stored: str, zone: str = "Europe/Amsterdam") -> str:
    """A stored UTC time as the pages show it: ``YYYY-MM-DD HH:MM`` in the clinic's time zone."""
    import datetime as dt
    import zoneinfo

    return dt.datetime.fromisoformat(stored).astimezone(zoneinfo.ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


@pytest.mark.parametrize("zone, shown", [(None, ("2026-07-01 14:30", "2026-12-01 13:30")),  # CEST, CET
                                         ("America/New_York", ("2026-07-01 08:30", "2026-12-01 07:30"))])
def test_times_are_shown_in_the_clinics_time_zone_and_stored_in_utc(clinic, monkeypatch, zone, shown):
    """Issue 18: verdict times were shown in UTC; they are the clinic's local time (``ALLIANCE_WEB__TIMEZONE``)."""
    import flows.store

    settings, store = clinic
    if zone:
        settings = settings.model_copy(update={"web": settings.web.model_copy(update={"timezone": zone})})
    f1, _ = store.flags("s-1")
    for at, verdict in (("2026-07-01T12:30:00+00:00", "rupture"), ("2026-12-01T12:30:00+00:00", "repaired")):
        monkeypatch.setattr(flows.store, "now", lambda at=at: at)
        store.save_review(session_id="s-1", flag=f1, verdict=verdict, note=None, therapist_id="t-anna")
    assert [h["at"] for h in store.review_history(session_id="s-1")] == [
        "2026-07-01T12:30:00+00:00", "2026-12-01T12:30:00+00:00"]  # stored: UTC
    for language, words in (("nl", ("breuk", "breuk, hersteld")), ("en", ("rupture", "rupture, repaired"))):
        c = _client(settings, "t-anna", language=language)
        session, trend = c.get("/sessions/s-1").text, c.get("/clients/c-1/trend").text
        for page in (session, trend):
            assert f"{shown[0]} t-anna: {words[0]}" in page and f"{shown[1]} t-anna: {words[1]}" in page
            assert "UTC" not in page and "12:30" not in page
        assert f"t-anna, {shown[1]}" in session  # the current verdict


def test_the_clinics_time_zone_must_be_a_real_one():
    from pydantic import ValidationError

    from pipeline.settings import WebSettings

    assert WebSettings().timezone == "Europe/Amsterdam"
    with pytest.raises(ValidationError, match="time zone such as 'Europe/Amsterdam'. Got 'Mars/Olympus'"):
        WebSettings(timezone="Mars/Olympus")


@pytest.mark.slow
def test_exported_reviews_are_accepted_by_retrain_without_edits(prefect_harness, clinic, tmp_path):
    """Two reviewed 2-minute sessions of two clients, exported and retrained on as they are."""
    from typer.testing import CliRunner

    from flows.cli import app
    from pipeline.audio import decode, save_wav

    settings, store = clinic
    call = decode(SAMPLE_WAV).samples
    spans = {"s-1": (10.0, 45.0, "withdrawal"), "s-2": (60.0, 95.0, "confrontation")}
    for i, (sid, (a, b, kind)) in enumerate(spans.items()):
        rec = settings.inbox_dir / "done" / f"{sid}.wav"
        save_wav(rec, np.tile(np.roll(call, 8000 * i), 4), 16000)  # 2 minutes of the call; each its own recording
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
        "participants": [{"role": "therapist", "id": "t-anna"}, {"role": "client", "age": 11, "name": "Timmy"},
                         {"role": "parent", "name": "Mr Timmy"}], "other_names": {"Jip": "sibling"}}))
    store.save_flags("s-1", [{"start": 0.0, "end": 30.0, "marker_type": "confrontation", "probability": 0.9},
                             {"start": 0.0, "end": 30.0, "marker_type": "withdrawal", "probability": 0.6}], "sim-v1")
    f1, f2 = store.flags("s-1")
    store.save_review(session_id="s-1", flag=f1, verdict="rupture", note=None, therapist_id="t-anna")
    store.save_review(session_id="s-1", flag=f2, verdict="repaired", note=None, therapist_id="t-anna")
    result = export_reviews(settings, tmp_path / "export")
    assert result["exported"] == ["s-1"]
    assert any("withdrawal verdict at 0–30 s overlaps" in line for line in result["left_out"])
    assert result["skipped"] == []  # the session was exported: nothing of it reads "skipped" (5 December trial)
    meta = json.loads((tmp_path / "export" / "s-1" / "metadata.json").read_text())
    assert meta["language"] == "auto" and meta["client_age"] == 11 and len(meta["participants"]) == 3
    # 5 December trial: a participant's name went out with the research data; roles, ids and ages only
    assert meta["participants"] == [{"role": "therapist", "id": "t-anna"}, {"role": "client", "age": 11},
                                    {"role": "parent"}]
    assert "Timmy" not in (tmp_path / "export" / "s-1" / "metadata.json").read_text()


def test_language_stretches_survive_speaker_attribution_and_name_replacement():
    from pipeline.privacy import redact_transcript
    from pipeline.types import Diarization, SpeakerTurn, Transcript, Word
    from pipeline.words import assign_words

    t = Transcript((Word(0.0, 0.5, "hallo", 1.0),), "nl", 0.9, 2.0,
                   language_segments=((0.0, 1.0, "nl", 0.9), (1.0, 2.0, "en", 0.8)))
    d = Diarization((SpeakerTurn(0.0, 2.0, "A"),), ("A",), "t")
    assert assign_words(t, d).language_segments == t.language_segments
    assert redact_transcript(t, {"Anna": "therapist"}).language_segments == t.language_segments


@pytest.mark.parametrize("language, words", [("nl", ("Pagina niet gevonden", "Deze handeling kan hier niet",
                                                      "Dit verzoek kon niet worden verwerkt", "Er ging iets mis")),
                                             ("en", ("Page not found", "This action is not possible here",
                                                     "This request could not be processed", "Something went wrong"))])
def test_error_pages_are_small_html_pages_in_the_apps_language(clinic, monkeypatch, language, words):
    """Issue 18: no raw JSON (``{"detail": ...}``), no field names, no stack; the catalogue's words."""
    import flows.web.app as web_app
    from pipeline.i18n import catalogue

    settings, _ = clinic
    c = _client(settings, "t-anna", language=language)
    c_app = c.app
    answers = {404: [c.get("/no/such/page"), c.get("/sessions/s-9"), c.get("/sessions/s-2/report")],
               405: [c.get("/logout"), c.put("/sessions/s-1")],
               422: [c.get("/sessions/s-1/flags/not-a-number/clip.wav"), c.get("/?show=everything"),
                     c.post("/login", data={}, follow_redirects=False)]}

    def broken(*_args, **_kwargs):
        raise RuntimeError("the session file could not be parsed at /secret/path/session.json")

    monkeypatch.setattr(web_app, "read_session_json", broken)
    from fastapi.testclient import TestClient

    crashing = TestClient(c_app, headers={"Origin": ORIGIN}, cookies=dict(c.cookies), raise_server_exceptions=False)
    answers[500] = [crashing.get("/")]
    expected = dict(zip((404, 405, 422, 500), words))
    english_only = {"Page not found", "Something went wrong"}
    for status, responses in answers.items():
        for r in responses:
            assert r.status_code == status, (status, r.request.url)
            assert r.headers["content-type"].startswith("text/html"), (status, r.request.url)
            assert f'<html lang="{language}">' in r.text
            assert expected[status] in r.text, (status, r.request.url)
            assert r.text.startswith("<!doctype html>"), (status, r.request.url)  # not JSON
            for leak in ("detail", "Field required", "int_parsing", "Traceback", "RuntimeError", "/secret",
                         "show must be", '"loc"', "Method Not Allowed", "Not Found"):
                assert leak not in r.text, (leak, status, r.request.url)
            if language == "nl":
                assert not any(w in r.text for w in english_only)
            assert r.headers["content-security-policy"].startswith("default-src 'none'")  # still protected
    assert all(k in catalogue() for k in ("web.error_404", "web.error_405", "web.error_422", "web.error_500"))


def test_the_app_serves_the_report_in_its_own_language(clinic):
    """Issue 18: ``report.<language>.html`` when the analysis wrote one; else the session's one report."""
    from pathlib import Path

    settings, store = clinic
    out = Path(store.session("s-1")["out_dir"])
    (out / "report.html").write_text('<html lang="nl"><body>rapport s-1</body></html>')
    (out / "report.en.html").write_text('<html lang="en"><body>report s-1 in English</body></html>')
    assert "report s-1 in English" in _client(settings, "t-anna", language="en").get("/sessions/s-1/report").text
    assert "rapport s-1" in _client(settings, "t-anna", language="nl").get("/sessions/s-1/report").text
    (out / "report.en.html").unlink()  # analysed before reports were written in both languages
    assert "rapport s-1" in _client(settings, "t-anna", language="en").get("/sessions/s-1/report").text


def test_a_flag_without_observations_reads_as_the_report_says_it(clinic):
    """Fresh-user trial: a flag of this version with no observation pointing its way read 'geen afzonderlijke
    marker week ... af' in the report but 'Bij dit signaal zijn geen waarnemingen opgeslagen' (as if data were
    missing) on the review page."""
    from pipeline.i18n import text

    settings, store = clinic
    _add_session(settings, store, "s-7", client="c-1", therapist="t-anna", date="2026-11-27", flags=1)
    for language in ("nl", "en"):
        page = _client(settings, "t-anna", language=language).get("/sessions/s-7").text
        import html

        assert html.unescape(text("report.no_reason", language)) in html.unescape(page), language
        assert "geen waarnemingen" not in page and "were stored" not in page


def test_a_session_without_speech_says_so_in_the_list_and_on_its_page(clinic):
    """Fresh-user trial: 20 s of silence showed in the review app as a calm session ('the model flagged nothing'),
    the report's 'no speech found' warning nowhere: a dead microphone looked like a session with nothing to review."""
    from pipeline.i18n import localise, text

    settings, store = clinic
    _add_session(settings, store, "s-8", client="c-1", therapist="t-anna", date="2026-11-27", flags=0)
    path = settings.data_dir / "sessions" / "s-8" / "session.json"
    data = json.loads(path.read_text())
    data["warnings"] = [text("warn.no_speech", "en")]
    path.write_text(json.dumps(data))
    for language in ("nl", "en"):
        c = _client(settings, "t-anna", language=language)
        said = localise(text("warn.no_speech", "en"), language)
        assert said in c.get("/sessions/s-8").text, language
        assert text("web.no_flags", language) not in c.get("/sessions/s-8").text
        index = c.get("/").text
        row = index[index.index("/sessions/s-8"):]
        assert text("web.has_warning", language) in row[:row.index("</tr>")], language


def test_the_list_marks_warnings_about_the_recording_not_a_missing_voice_profile(clinic):
    """Trial, 5 December: every session in the list carried "(let op: zie de waarschuwing)" only because its
    therapist had no voice profile, which dilutes the mark that keeps a dead microphone from passing for a calm
    session. The note itself stays on the session's page."""
    from pipeline.i18n import localise, text

    settings, store = clinic
    _add_session(settings, store, "s-9", client="c-1", therapist="t-anna", date="2026-11-28", flags=0)
    path = settings.data_dir / "sessions" / "s-9" / "session.json"
    data = json.loads(path.read_text())
    note = text("warn.no_profile", "en", therapist="t-anna")
    data["warnings"] = [note]
    path.write_text(json.dumps(data))
    for language in ("nl", "en"):
        c = _client(settings, "t-anna", language=language)
        index = c.get("/").text
        row = index[index.index("/sessions/s-9"):]
        assert text("web.has_warning", language) not in row[:row.index("</tr>")], language
        assert localise(note, language) in c.get("/sessions/s-9").text, language
    data["warnings"] = [note, text("warn.no_speech", "en")]
    path.write_text(json.dumps(data))
    index = _client(settings, "t-anna", language="nl").get("/").text
    row = index[index.index("/sessions/s-9"):]
    assert text("web.has_warning", "nl") in row[:row.index("</tr>")]


def test_notes_are_read_back_in_the_history_and_their_length_is_said_before_sending(clinic):
    """Fresh-user trial: the history showed only '(met notitie)', so a note could never be read back; a note of
    60,000 characters was cut to 2,000 without a word."""
    from flows.web.review import history_rows

    rows = history_rows([{"at": "2026-12-02T10:00:00+00:00", "therapist_id": "t-anna", "verdict": "rupture",
                          "note": "cliënt keek weg bij de vraag over school"}], "nl")
    assert rows == ["2026-12-02 11:00 t-anna: breuk — notitie: “cliënt keek weg bij de vraag over school”"]
    settings, _ = clinic
    page = _client(settings, "t-anna", language="nl").get("/sessions/s-1").text
    assert 'maxlength="2000"' in page


def test_a_failed_delivery_does_not_make_a_therapist_part_of_the_clients_team(clinic):
    """4 December trial: an empty recording naming client c-1 and therapist t-cees failed in the nightly run; its
    failed row alone then showed t-cees c-1's whole trend (t-anna's sessions, verdicts and notes). Only analysed
    sessions make a therapist part of the team."""
    settings, store = clinic
    store.save_session(session_id="s-empty", client_id="c-1", therapist_id="t-cees", recording_name="x.wav",
                       recording_sha256="0" * 64, status="failed", reason="x.wav: file is empty", out_dir=None,
                       model_version=None, research_use=False, run_id="r2")
    store.add_therapist("t-cees", hash_password("zwaluw-kade-19", login="t-cees"))
    PASSWORDS["t-cees"] = "zwaluw-kade-19"
    try:
        assert _client(settings, "t-cees").get("/clients/c-1/trend").status_code == 404
        assert _client(settings, "t-anna").get("/clients/c-1/trend").status_code == 200
    finally:
        del PASSWORDS["t-cees"]


def test_the_session_facts_come_from_this_sessions_own_sidecar_when_a_file_name_was_reused(clinic):
    """4 December trial: a later recording delivered under the same file name is filed as NAME.<time stamp>.wav
    with its sidecar NAME.json.<time stamp>.json; the web app read NAME.json, the first client's record, and showed
    its date for the second client's session."""
    import shutil

    from flows.inbox import find_recording
    from flows.web.review import _sidecar_record

    settings, store = clinic
    done = settings.inbox_dir / "done"
    stamp = "2026-12-04T212950_0000"
    shutil.copy(SAMPLE_WAV, done / f"s-1.wav.{stamp}.wav")
    (done / f"s-1.wav.json.{stamp}.json").write_text(json.dumps({
        "session_id": "s-9", "client_id": "c-3", "therapist_id": "t-anna", "date": "2026-12-01"}))
    row = {"session_id": "s-9", "client_id": "c-3", "recording_name": "s-1.wav",
           "recording_sha256": store.session("s-1")["recording_sha256"]}
    assert _sidecar_record(row, settings.inbox_dir)["date"] == "2026-12-01"
    assert _sidecar_record(store.session("s-1"), settings.inbox_dir)["date"] == "2026-11-20"
    # a name with glob characters is still found
    shutil.copy(SAMPLE_WAV, done / "a[1].wav")
    assert find_recording(settings.inbox_dir, {**row, "recording_name": "a[1].wav"}) == done / "a[1].wav"


def test_a_note_keeps_its_lines_but_no_control_or_direction_characters(clinic):
    """5 December trial: NUL, ESC and a right-to-left override in a note were stored and served as typed."""
    settings, store = clinic
    c = _client(settings, "t-anna")
    flag = store.flags("s-1")[0]
    r = post_form(c, "/sessions/s-1", f"/sessions/s-1/flags/{flag['id']}/review",
                  {"verdict": "rupture", "note": "first line\nsecond\x00 line\x1b[31m \u202eevil\ttab"})
    assert r.status_code == 303
    (review,) = store.reviews(session_id="s-1")
    assert review["note"] == "first line\nsecond line[31m evil\ttab"


def test_a_note_longer_than_the_form_allows_is_refused_not_cut(clinic):
    """5 December trial: a forged post with a note of 60,000 characters was cut to 2,000 without a word; the
    therapist's verdict was stored with a note they never wrote that way. It is refused, and nothing is stored."""
    settings, store = clinic
    c = _client(settings, "t-anna")
    flag = store.flags("s-1")[0]
    r = post_form(c, "/sessions/s-1", f"/sessions/s-1/flags/{flag['id']}/review",
                  {"verdict": "rupture", "note": "x" * 2001})
    assert r.status_code == 422
    assert "The note is longer than 2000 characters and was not saved" in r.text
    assert store.reviews(session_id="s-1") == []
    assert any(a["outcome"] == "refused" and "longer than 2000" in a["detail"] for a in store.audit_rows())
    r = post_form(c, "/sessions/s-1", f"/sessions/s-1/flags/{flag['id']}/review",
                  {"verdict": "rupture", "note": "x" * 2000})
    assert r.status_code == 303
    assert len(store.reviews(session_id="s-1")[0]["note"]) == 2000
