"""The review app in a real browser: Debian's headless Chromium driven by Playwright.

Logs in as a therapist, opens a session (reasons, transcript excerpt, clip, timeline), plays a flagged clip,
reviews a flag with the keyboard alone, uses the "not yet reviewed" filter, checks labels, contrast and the focus
ring, opens the report and the client's trend, and is refused another therapist's client (HTTP 404, as an unknown
session). Screenshots
(1280 px wide) and the report's PDF go to ``test-artifacts/`` at the repository root, or to
``ALLIANCE_SCREENSHOTS_DIR`` (``make screenshots``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

import pytest

from pathlib import Path

from tests.conftest import ROOT
from tests.test_report_dutch import analysed_report  # noqa: F401  (the fixture)
from tests.test_web import PASSWORDS, clinic  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow  # a web server driven by Chromium, and a real analysis

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("ALLIANCE_SCREENSHOTS_DIR") or ROOT / "test-artifacts")
VIEWPORT = {"width": 1280, "height": 900}


@contextlib.contextmanager
def serve_app(settings, language="en", **app_kwargs):
    """The review app served by uvicorn on a free port of 127.0.0.1 in a thread; yields its URL."""
    import uvicorn

    from flows.web import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(settings, language=language, **app_kwargs), host="127.0.0.1", port=port,
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
    with serve_app(settings, language="nl") as url:  # the clinic's default language
        yield url, store


def _contrast(fg: str, bg: str) -> float:
    """WCAG contrast ratio of two CSS ``rgb(...)`` / ``rgba(...)`` colours (alpha ignored)."""
    import re

    def luminance(colour: str) -> float:
        r, g, b = (int(v) / 255 for v in re.findall(r"[\d.]+", colour)[:3])
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


# an element's text colour and the first opaque background behind it
_COLOURS = """e => { let b = e; let bg = 'rgb(255, 255, 255)';
  while (b) { const c = getComputedStyle(b).backgroundColor;
    if (c && c !== 'transparent' && !c.startsWith('rgba(0, 0, 0, 0)')) { bg = c; break; } b = b.parentElement; }
  return [getComputedStyle(e).color, bg]; }"""


def test_therapist_reviews_a_flag_in_the_browser(server):
    from playwright.sync_api import sync_playwright

    from tests.test_web import S1_FLAGS

    url, store = server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    _write_real_report(store)
    f1, f2 = store.flags("s-1")
    console: list[str] = []  # a Content-Security-Policy violation shows up here as "Refused to ..."
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--autoplay-policy=no-user-gesture-required", "--no-sandbox"])
        context = browser.new_context(viewport=VIEWPORT)
        context.on("page", lambda new: new.on("console", lambda m: console.append(m.text)))
        page = context.new_page()
        page.goto(f"{url}/")
        assert page.url.endswith("/login")
        page.get_by_label("Therapeut").fill("t-anna")  # the fields are found by their labels
        page.get_by_label("Wachtwoord").fill(PASSWORDS["t-anna"])
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/")
        row = page.locator("tr", has=page.locator("a[href='/sessions/s-1']"))
        assert row.locator("td").all_inner_texts() == ["2026-11-20", "s-1", "c-1", "11", "1", "2", "2"]
        page.screenshot(path=str(ARTIFACTS / "1-sessions.png"), full_page=True)
        page.click("text=s-1")
        page.wait_for_selector(".flag")
        card = page.locator(f"#flag-{f1['id']}")
        # the page: reasons, the 3RS markers, the excerpt with roles, the clip, the timeline, band and caveat
        for reason in S1_FLAGS[0]["reasons"]:
            assert card.get_by_text(reason).is_visible()
        assert card.get_by_text("minimale reactie").is_visible()
        assert card.locator(".excerpt li.inside").all_inner_texts() == [
            "0:12 cliënt: weet niet (binnen het signaal)",
            "0:15 therapeut: Was het een moeilijke dag? (binnen het signaal)"]
        assert card.locator(".excerpt li").count() == 4
        assert card.locator("svg.place[role=img]").get_attribute("aria-label") == (
            "Plaats in de sessie: 0:10–0:20 van 0:30")
        assert "kans hoog" in card.locator("h3").inner_text()
        assert page.get_by_text("Model sim-v1: getraind op gesimuleerde sessies").is_visible()
        audio = card.locator("audio")
        assert audio.get_attribute("src") == f"/sessions/s-1/flags/{f1['id']}/clip.wav"
        assert audio.get_attribute("aria-labelledby") == f"clip-{f1['id']}"
        # play the first flagged clip: the browser fetches and decodes it
        with page.expect_response(lambda r: r.url.endswith("/clip.wav")) as clip:
            audio.evaluate("a => { a.preload = 'auto'; a.load(); return a.play(); }")
        assert clip.value.status == 200
        # polled from here: wait_for_function evaluates a string, which the page's CSP (no script) refuses
        deadline = time.monotonic() + 15
        while audio.evaluate("a => a.currentTime") <= 0.2:
            assert time.monotonic() < deadline, "the clip did not play"
            page.wait_for_timeout(100)
        assert audio.evaluate("a => a.duration") == pytest.approx(20.0, abs=0.1)  # the flag (10 s), 5 s either side
        # accessibility basics: every field has a label, text is readable (WCAG AA 4.5:1)
        assert page.eval_on_selector_all("textarea, input:not([type=hidden])",
                                         "es => es.every(e => e.labels && e.labels.length > 0)")
        for selector in ("h2", ".note", ".small", ".caveat", ".role", ".verdicts button", "a", ".said"):
            fg, bg = page.locator(selector).first.evaluate(_COLOURS)
            assert _contrast(fg, bg) >= 4.5, (selector, fg, bg)
        page.screenshot(path=str(ARTIFACTS / "2-review-page.png"), full_page=True)
        # review the first flag with the keyboard alone: type a note, Tab to the verdict buttons, Enter
        card.locator("textarea").focus()
        page.keyboard.type("stil na de vraag over school")
        page.keyboard.press("Tab")
        focused = page.locator(":focus")
        assert focused.inner_text() == "breuk" and focused.get_attribute("name") == "verdict"
        assert focused.evaluate("e => getComputedStyle(e).outlineStyle") == "solid"  # a visible focus ring
        fg, bg = focused.evaluate(_COLOURS)
        assert _contrast(fg, bg) >= 4.5
        page.keyboard.press("Tab")
        assert page.locator(":focus").inner_text() == "geen breuk"
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Enter")
        page.wait_for_selector("text=Oordeel opgeslagen.")
        page.screenshot(path=str(ARTIFACTS / "3-review-saved.png"), full_page=True)
        assert [(r["verdict"], r["note"]) for r in store.reviews(session_id="s-1")] == [
            ("rupture", "stil na de vraag over school")]
        saved = page.locator(f"#flag-{f1['id']} button[aria-pressed=true]")
        assert saved.inner_text() == "breuk"
        fg, bg = saved.evaluate(_COLOURS)
        assert _contrast(fg, bg) >= 4.5
        # the "not yet reviewed" filter leaves the second flag only
        page.get_by_role("link", name="nog niet beoordeeld (1)").click()
        page.wait_for_url(f"{url}/sessions/s-1?show=open")
        assert [page.locator(".flag").first.get_attribute("id")] == [f"flag-{f2['id']}"]
        assert page.locator(".flag").count() == 1
        page.screenshot(path=str(ARTIFACTS / "4-not-yet-reviewed.png"), full_page=True)
        # the client's trend: a chart with a text alternative, the sessions as a table, the verdict history
        page.goto(f"{url}/clients/c-1/trend")
        assert page.locator("svg[role=img]").first.get_attribute("aria-label").startswith("Grafiek")
        assert "t-anna: breuk — notitie: “stil na de vraag over school”" in page.locator(".history").inner_text()
        page.screenshot(path=str(ARTIFACTS / "5-trend.png"), full_page=True)
        # the report opens and renders under the app's Content-Security-Policy: chart, table, embedded clip
        report = context.new_page()
        report.goto(f"{url}/sessions/s-1/report")
        assert report.locator(".timeline svg").is_visible() and report.locator("h2#flags").is_visible()
        clip_s = report.eval_on_selector(".clip audio", "a => new Promise(ok => { a.onloadedmetadata = () => "
                                                        "ok(a.duration); a.preload = 'auto'; a.load(); })")
        assert clip_s == pytest.approx(31.0, abs=0.1)  # the data: clip of the flag (0–30 s, + 1 s)
        report.screenshot(path=str(ARTIFACTS / "6-report-in-app.png"), full_page=True)
        # another therapist's client: the same 404 as an unknown session
        response = page.goto(f"{url}/sessions/s-2")
        assert response.status == 404
        page.screenshot(path=str(ARTIFACTS / "7-other-client-404.png"))
        browser.close()
    assert not [m for m in console if "Content Security Policy" in m or "Refused to" in m], console
    assert all((ARTIFACTS / n).stat().st_size > 1000 for n in
               ("1-sessions.png", "2-review-page.png", "3-review-saved.png", "4-not-yet-reviewed.png",
                "5-trend.png", "7-other-client-404.png"))


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
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    requests = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        context = browser.new_context(viewport=VIEWPORT)
        context.route("**/*", lambda route: (requests.append(route.request.url),
                                             route.continue_() if route.request.url.startswith("file:")
                                             else route.abort()))
        page = context.new_page()
        page.goto(report.as_uri())
        assert page.locator(".timeline svg").is_visible()  # who spoke when
        assert page.locator("h2#flags").is_visible()  # the flags section
        assert page.locator("text=Alliantiemarkers over de sessie").is_visible()
        assert page.locator("td:text-is('aandeel spraak van de cliënt')").count() == 2  # markers and appendix
        assert page.locator("td:text-is('client_speech_share [verhouding]')").count() == 1  # code name: appendix only
        page.screenshot(path=str(ARTIFACTS / "8-sample-report.png"), full_page=True)
        page.pdf(path=str(ARTIFACTS / "8-sample-report.pdf"), format="A4")
        browser.close()
    assert all(u.startswith("file:") for u in requests)  # nothing was fetched from a network
    assert (ARTIFACTS / "8-sample-report.pdf").stat().st_size > 10_000


def test_a_dutch_report_with_flags_fits_1280_px_and_prints_on_a4_pages(analysed_report, tmp_path):  # noqa: F811
    """The Dutch report of a real analysed session with flags (summary, cards, markers, appendix): nothing wider
    than the screen at 1280 px; printed, it runs over several A4 portrait pages."""
    import re

    from playwright.sync_api import sync_playwright

    from pipeline.report import render_html

    reports, card = analysed_report
    assert reports["nl"].flags
    path = tmp_path / "report.html"
    path.write_text(render_html(reports["nl"], language="nl", model_card=card), encoding="utf-8")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(path.as_uri())
        assert page.get_by_text("Samenvatting").first.is_visible()
        assert page.evaluate("() => document.documentElement.scrollWidth") <= VIEWPORT["width"]
        page.screenshot(path=str(ARTIFACTS / "9-report-nl-1280.png"), full_page=True)
        # the print layout is Chromium's own for the A4 page (an emulated 794 px print viewport lays the page out
        # differently: 873 px there, while every PDF page holds its content); a person checks the pages, as PNG
        # with `make screenshots`
        page.pdf(path=str(ARTIFACTS / "9-report-nl.pdf"), format="A4")
        browser.close()
    pdf = (ARTIFACTS / "9-report-nl.pdf").read_bytes()
    boxes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)
    assert len(boxes) >= 2  # the report runs over several pages
    assert all(abs(float(w) - 595.3) < 2 and abs(float(h) - 841.9) < 2 for w, h in boxes)  # A4 portrait
