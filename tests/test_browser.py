"""The review app in a real browser: Debian's headless Chromium driven by Playwright.

Logs in as a therapist, opens a session and its report, plays a flagged clip, records a review, and is refused
another therapist's client (HTTP 403). Screenshots go to ``test-artifacts/`` at the repository root.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from tests.conftest import ROOT
from tests.test_web import PASSWORDS, clinic  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow  # a web server driven by Chromium, and a real analysis

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"


@contextlib.contextmanager
def serve_app(settings, **app_kwargs):
    """The review app served by uvicorn on a free port of 127.0.0.1 in a thread; yields its URL."""
    import uvicorn

    from flows.web import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(settings, language="en", **app_kwargs), host="127.0.0.1", port=port,
                            log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=5)


@pytest.fixture()
def server(clinic):  # noqa: F811
    settings, store = clinic
    with serve_app(settings) as url:
        yield url, store


def test_therapist_reviews_a_flag_in_the_browser(server):
    from playwright.sync_api import sync_playwright

    url, store = server
    ARTIFACTS.mkdir(exist_ok=True)
    _write_real_report(store)
    console: list[str] = []  # a Content-Security-Policy violation shows up here as "Refused to ..."
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--autoplay-policy=no-user-gesture-required", "--no-sandbox"])
        context = browser.new_context()
        context.on("page", lambda new: new.on("console", lambda m: console.append(m.text)))
        page = context.new_page()
        page.goto(f"{url}/")
        assert page.url.endswith("/login")
        page.fill("input[name=therapist]", "t-anna")
        page.fill("input[name=password]", PASSWORDS["t-anna"])
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/")
        page.screenshot(path=str(ARTIFACTS / "1-sessions.png"))
        page.click("text=s-1")
        page.wait_for_selector(".flag")
        # play the first flagged clip: the browser fetches and decodes it
        with page.expect_response(lambda r: r.url.endswith("/clip.wav")) as clip:
            page.eval_on_selector("audio", "a => { a.preload = 'auto'; a.load(); return a.play(); }")
        assert clip.value.status == 200
        # polled from here: wait_for_function evaluates a string, which the page's CSP (no script) refuses
        deadline = time.monotonic() + 15
        while page.eval_on_selector("audio", "a => a.currentTime") <= 0.2:
            assert time.monotonic() < deadline, "the clip did not play"
            page.wait_for_timeout(100)
        duration = page.eval_on_selector("audio", "a => a.duration")
        assert duration == pytest.approx(12.0, abs=0.1)  # the flag (10 s) with 1 s either side
        page.screenshot(path=str(ARTIFACTS / "2-session-flags.png"))
        # record a verdict on the first flag
        first = page.locator(".flag").first
        first.locator("input[value=rupture]").check()
        first.locator("textarea[name=note]").fill("stil na de vraag over school")
        first.locator("button[type=submit]").click()
        page.wait_for_selector("text=Verdict saved.")
        page.screenshot(path=str(ARTIFACTS / "3-review-saved.png"))
        assert [r["verdict"] for r in store.reviews(session_id="s-1")] == ["rupture"]
        # the report opens and renders under the app's Content-Security-Policy: chart, table, embedded clip
        report = context.new_page()
        report.goto(f"{url}/sessions/s-1/report")
        assert report.locator(".timeline svg").is_visible() and report.locator("h2#flags").is_visible()
        clip_s = report.eval_on_selector(".clip audio", "a => new Promise(ok => { a.onloadedmetadata = () => "
                                                        "ok(a.duration); a.preload = 'auto'; a.load(); })")
        assert clip_s == pytest.approx(31.0, abs=0.1)  # the data: clip of the flag (0–30 s, + 1 s)
        report.screenshot(path=str(ARTIFACTS / "6-report-in-app.png"), full_page=True)
        # another therapist's client: 403
        response = page.goto(f"{url}/sessions/s-2")
        assert response.status == 403
        page.screenshot(path=str(ARTIFACTS / "4-other-client-403.png"))
        browser.close()
    assert not [m for m in console if "Content Security Policy" in m or "Refused to" in m], console
    assert all((ARTIFACTS / n).stat().st_size > 1000 for n in
               ("1-sessions.png", "2-session-flags.png", "3-review-saved.png", "4-other-client-403.png"))


def _write_real_report(store) -> None:
    """Replace session s-1's stand-in report with a rendered one: timeline SVG, tables, an embedded clip."""
    from pathlib import Path

    import numpy as np

    from pipeline.report import clip_data_uris, render_html
    from tests.test_report import _report

    r = _report()
    tone = (0.1 * np.sin(2 * np.pi * 220 * np.arange(60 * 16000) / 16000)).astype(np.float32)
    html = render_html(r, language="en", clips=clip_data_uris(tone, 16000, r.flags))
    (Path(store.session("s-1")["out_dir"]) / "report.html").write_text(html, encoding="utf-8")


def test_the_sample_report_opens_from_disk_without_network_and_prints(prefect_harness, tmp_path):
    from playwright.sync_api import sync_playwright
    from typer.testing import CliRunner

    from flows.cli import app
    from tests.conftest import SAMPLE_WAV

    result = CliRunner().invoke(app, ["analyze", str(SAMPLE_WAV), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    report = tmp_path / "out" / "report.html"
    ARTIFACTS.mkdir(exist_ok=True)
    requests = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        context = browser.new_context()
        context.route("**/*", lambda route: (requests.append(route.request.url),
                                             route.continue_() if route.request.url.startswith("file:")
                                             else route.abort()))
        page = context.new_page()
        page.goto(report.as_uri())
        assert page.locator(".timeline svg").is_visible()  # who spoke when
        assert page.locator("h2#flags").is_visible()  # the flags section
        assert page.locator("text=Alliantiemarkers over de sessie").is_visible()
        assert page.locator("td:text-is('aandeel spraak van de cliënt')").count() == 2  # markers and appendix
        assert page.locator("td:text-is('client_speech_share [ratio]')").count() == 1  # code name: appendix only
        page.screenshot(path=str(ARTIFACTS / "5-sample-report.png"), full_page=True)
        page.pdf(path=str(ARTIFACTS / "5-sample-report.pdf"))
        browser.close()
    assert all(u.startswith("file:") for u in requests)  # nothing was fetched from a network
    assert (ARTIFACTS / "5-sample-report.pdf").stat().st_size > 10_000
