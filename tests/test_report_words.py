"""The report's words after a therapist's trial (issue 18): what a clinician reads is in clinical Dutch, agrees
with itself and with the code, and says nothing the data do not support."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from pipeline.features import FEATURE_NAMES, FEATURE_UNITS
from pipeline.report import render_html
from pipeline.types import (Diarization, FeatureFrame, Recording, RoleAssignment, RuptureFlag, SessionFeatures,
                            SessionReport, SpeakerTurn, Transcript, TurnMetrics, Utterance, Word)
from tests.test_report_dutch import english_words_in, visible_words

HASH = "69d75654c78e5e10"
CARD = {"version": "sim-v1", "threshold": {"value": 0.29, "per_class": {"withdrawal": 0.29, "confrontation": 0.35}},
        "summary": "Trained on simulated sessions, not on real therapy recordings."}


def _report(*, flags=None, latency_s=0.6, history=None, settings=None) -> SessionReport:
    """A 60 s English session: therapist SPEAKER_00, client SPEAKER_01, three overlaps at speaker changes."""
    words = (Word(1.0, 1.5, "Hoi?", 0.9, "SPEAKER_00"), Word(3.0, 3.4, "ja", 0.9, "SPEAKER_01"))
    rec = Recording("/x/s1.wav", np.zeros(0, np.float32), 16000, 60.0, 16000, 1, "wav", 60.0)
    turns = (SpeakerTurn(1.0, 2.0, "SPEAKER_00"), SpeakerTurn(3.0, 3.5, "SPEAKER_01"))
    roles = RoleAssignment({"SPEAKER_00": "therapist", "SPEAKER_01": "client"},
                           "most-speech-is-therapist+client-most-speech-of-the-rest")
    utts = (Utterance("SPEAKER_00", "therapist", 1.0, 1.5, words[:1]),
            Utterance("SPEAKER_01", "client", 3.0, 3.4, words[1:]))
    metrics = TurnMetrics(60.0, {"SPEAKER_00": 1.0, "SPEAKER_01": 0.5}, {"SPEAKER_00": 0.67, "SPEAKER_01": 0.33},
                          {"therapist": 1.0, "client": 0.5}, {"SPEAKER_00": 1, "SPEAKER_01": 1}, (1.0,),
                          (0.5, 0.4, 0.3), latency_s, 1.0, 0.97, overlap_time_s=1.2)
    values = [0.5] * len(FEATURE_NAMES)
    values[FEATURE_NAMES.index("overlap_rate_per_min")] = 3.0
    values[FEATURE_NAMES.index("client_response_latency_s")] = latency_s
    feats = SessionFeatures(FEATURE_NAMES, FEATURE_UNITS, (FeatureFrame(0.0, 30.0, tuple(values)),
                                                           FeatureFrame(30.0, 60.0, tuple(values))))
    markers = {n: {"value": v, "unit": u, "description": "d"} for n, u, v in zip(FEATURE_NAMES, FEATURE_UNITS, values)}
    return SessionReport(
        "s1", rec, (), Transcript(words, "en", 1.0, 60.0), Diarization(turns, ("SPEAKER_00", "SPEAKER_01"), "t"),
        roles, utts, metrics, (), feats, tuple(flags or ()), "sim-v1", 0.29, HASH,
        settings if settings is not None else {"features": {"window_s": 30.0, "hop_s": 10.0}, "model": {}},
        "2026-12-02", "0.1", session_markers=markers, client_history=history or {})


def _body(html: str, appendix: str = "Bijlage") -> str:
    page = visible_words(html, {"Hoi?", "ja"})
    return page[:page.index(appendix)]


# 1. A Dutch page in Dutch: no diarization codes, the language by name, Dutch units, the settings hash for engineers


def test_the_dutch_page_names_speakers_by_role_not_by_diarization_code():
    html = render_html(_report(), language="nl")
    body = _body(html)
    assert "SPEAKER_00" not in body and "SPEAKER_01" not in body
    assert "SPEAKER_00 = therapeut" in visible_words(html, set())  # the codes stay, for engineers, in the appendix


def test_the_transcript_language_is_named_in_the_page_language():
    assert re.search(r"taal\s+Engels", _body(render_html(_report(), language="nl")))
    assert re.search(r"language\s+English", _body(render_html(_report(), language="en"), "Appendix"))


def test_units_on_a_dutch_page_are_dutch_in_the_appendix_too():
    page = visible_words(render_html(_report(), language="nl"), {"Hoi?", "ja"})
    appendix = page[page.index("Bijlage"):page.index("Literatuur")]
    for english in ("1/min", "words", "syllables", "utterance", "questions"):
        assert not re.search(rf"(?<![\w_]){re.escape(english)}(?![\w_])", appendix), english
    assert "[per min]" in appendix and "[woorden]" in appendix and "[lettergrepen/woord]" in appendix
    assert english_words_in(appendix) == []


def test_the_settings_hash_is_in_the_appendix_not_in_the_header():
    html = render_html(_report(), language="nl")
    assert html.count(HASH) == 1 and html.index(HASH) > html.index("Bijlage")


# 2. The role sentence and the turn-taking table come from the same turns


@pytest.mark.slow  # runs pYIN over 20 s of audio
def test_the_most_speech_rule_decides_on_the_turns_the_table_measures(monkeypatch):
    import pipeline.session as session
    from pipeline.settings import Settings
    from pipeline.sidecar import Sidecar
    from pipeline.types import SpeechRegion

    raw = (SpeakerTurn(0.0, 10.0, "SPEAKER_00"), SpeakerTurn(10.3, 20.0, "SPEAKER_01"))
    refined = (SpeakerTurn(0.0, 9.0, "SPEAKER_00"), SpeakerTurn(9.0, 20.0, "SPEAKER_01"))
    monkeypatch.setattr(session, "refine_speaker_changes", lambda turns, pauses, **kw: refined)
    samples = np.zeros(20 * 16000, np.float32)
    rec = Recording("/x/s.wav", np.zeros(0, np.float32), 16000, 20.0, 16000, 1, "wav", 20.0)
    a = session.describe_session(samples, rec, (SpeechRegion(0.0, 20.0),), Transcript((), "nl", 1.0, 20.0),
                                 Diarization(raw, ("SPEAKER_00", "SPEAKER_01"), "t"), Sidecar(), Settings(),
                                 session_id="s")
    assert a.roles.rule.startswith("most-speech-is-therapist")
    therapist = next(s for s, r in a.roles.roles.items() if r == "therapist")
    client = next(s for s, r in a.roles.roles.items() if r == "client")
    assert a.metrics.speech_time_s[therapist] >= a.metrics.speech_time_s[client]


# 3. 3RS markers only as "resembles", and only when an observation supports them


def _summary(html: str) -> str:
    import html as markup

    return markup.unescape(html[html.index('<section class="summary">'):html.index("</section>")])


def test_the_summary_names_no_3rs_marker_a_flag_has_no_observation_for():
    bare = RuptureFlag(0.0, 30.0, 0.4, "withdrawal", (), "sim-v1")
    for lang, plain in (("nl", "korte of geen antwoorden"), ("en", "short or no answers")):
        s = _summary(render_html(_report(flags=[bare]), language=lang))
        assert ("terugtrekking" if lang == "nl" else "withdrawal") in s
        assert plain not in s and "stiltes" not in s and "silences" not in s


def test_the_summary_names_a_supported_3rs_marker_as_resembling_it():
    flag = RuptureFlag(0.0, 30.0, 0.4, "withdrawal", ("a silence of 9.2 s",), "sim-v1", resembles=("avoidance",))
    assert "lijkt op: vermijden, zich terugtrekken in stilte" in _summary(render_html(_report(flags=[flag]),
                                                                                    language="nl"))
    assert "resembles: avoidance, withdrawing into silence" in _summary(render_html(_report(flags=[flag]),
                                                                                   language="en"))


# 4. A comparison with earlier sessions needs at least two of them; singular and plural right


def _history(n: int) -> dict:
    return {"overlap_rate_per_min": {"min": 10.0, "max": 12.0, "n": n}}


def test_one_earlier_session_is_too_few_to_compare_with():
    nl = _summary(render_html(_report(history=_history(1)), language="nl"))
    en = _summary(render_html(_report(history=_history(1)), language="en"))
    assert "Anders dan" not in nl and "1 sessies" not in nl and "1 eerdere sessie" in nl
    assert "Unlike" not in en and "1 sessions" not in en and "1 earlier session" in en


def test_two_earlier_sessions_are_compared_in_the_plural():
    nl = _summary(render_html(_report(history=_history(2)), language="nl"))
    assert "Anders dan in de eerdere sessies van deze cliënt (2 sessies)" in nl
    assert "Unlike this client's earlier sessions (2 sessions)" in _summary(
        render_html(_report(history=_history(2)), language="en"))


# 5. Overlap at a change of speaker is shown as overlap, never as a negative response time


def test_a_client_starting_before_the_therapist_finished_is_overlap_not_a_negative_time():
    for lang, word in (("nl", "door de therapeut heen"), ("en", "over the therapist")):
        page = visible_words(render_html(_report(latency_s=-0.39), language=lang), set())
        body = page[:page.index("Bijlage" if lang == "nl" else "Appendix")]
        assert not re.search(r"[-−]\s?0[,.]\d", body), re.findall(r".{30}[-−]\s?0[,.]\d", body)
        assert word in body


# 6. Overlap: one measure, one unit, wherever it is shown


def test_overlap_is_one_rate_per_minute_in_the_table_and_among_the_markers():
    html = render_html(_report(), language="nl")
    row = re.search(r"<th>Door elkaar bij sprekerswissel</th><td[^>]*>([^<]+)<", html).group(1)
    assert row.startswith("3,0 per minuut")  # three overlaps in one minute
    marker = re.search(r"<td>door elkaar bij sprekerswissel</td><td[^>]*>([^<]+)<", html).group(1)
    assert marker == "3,0 per minuut"


# 7. The appendix and the README agree with the code


def test_the_appendix_states_the_window_length_and_the_hop_from_the_settings():
    html = render_html(_report(), language="nl")
    assert f"Alle {len(FEATURE_NAMES)} markers per venster van 30 s, om de 10 s" in html


def test_the_readme_counts_the_markers_of_the_code():
    from pipeline.settings import Settings
    from tests.conftest import ROOT

    fs = Settings().features
    readme = (ROOT / "README.md").read_text()
    assert f"{len(FEATURE_NAMES)} markers per {fs.window_s:g} s window (hop {fs.hop_s:g} s)" in readme
    counts = {int(n) for n in re.findall(r"(\d+) markers\b", readme)}
    assert counts <= {len(FEATURE_NAMES), 5}, counts  # 5: the client trend's markers


# 8. A threshold changed by a setting is said beside the caveat


def test_a_lowered_flag_threshold_is_stated_beside_the_caveat():
    r = dataclasses.replace(_report(settings={"features": {}, "model": {"flag_threshold": 0.02}}), flag_threshold=0.02)
    nl = _summary(render_html(r, language="nl", model_card=CARD))
    assert "de drempel is met een instelling verlaagd naar 0,02" in nl and "0,29" in nl
    en = _summary(render_html(r, language="en", model_card=CARD))
    assert "threshold was lowered by a setting to 0.02" in en
    assert "verlaagd" not in _summary(render_html(_report(), language="nl", model_card=CARD))


# 9. No flag: say plainly that nothing needs review and why that is not a diagnosis; the CLI says what next


def test_a_report_without_flags_says_nothing_needs_review_and_that_this_is_no_diagnosis():
    nl = _summary(render_html(_report(), language="nl"))
    assert "hoeft niets terug te kijken" in nl and "geen oordeel over de alliantie" in nl
    en = _summary(render_html(_report(), language="en"))
    assert "Nothing needs review" in en and "not a judgement of the alliance" in en


def test_the_command_line_says_where_the_report_is_and_how_to_reach_the_review_app(tmp_path):
    from flows.cli.analyze import closing_lines

    lines = "\n".join(closing_lines(_report(), tmp_path))
    assert f"file://{tmp_path}/report.html" in lines
    assert "alliance web" in lines and "alliance add-therapist" in lines and "nightly" in lines
    assert "the model pointed out no stretch" in lines.lower()
    flagged = _report(flags=[RuptureFlag(0.0, 30.0, 0.4, "withdrawal", (), "sim-v1")])
    assert "1 stretch to review" in "\n".join(closing_lines(flagged, tmp_path))


def test_the_command_line_does_not_say_nothing_needs_review_when_nothing_was_judged(tmp_path):
    """Fresh-user trial of issue 19: on noise, a tone or silence the report said nothing was judged and to check the
    recording, while the command's last line said nothing needed review."""
    import dataclasses

    from flows.cli.analyze import closing_lines
    from pipeline.i18n import text

    silent = dataclasses.replace(_report(), warnings=(text("warn.no_speech", "en"),))
    lines = "\n".join(closing_lines(silent, tmp_path))
    assert "needs review" not in lines and "no stretch reached" not in lines.lower()
    assert "Nothing was judged" in lines and "Check the recording" in lines


def test_a_flag_reason_says_overlap_for_a_negative_usual_response_time():
    from models.flagging import reason_sentence

    assert reason_sentence("client_response_latency_s", 1.2, -0.4, "nl").endswith(
        "(rest van de sessie 0,4 s door de therapeut heen)")
    assert "(rest of the session 0.4 s over the therapist)" in reason_sentence(
        "client_response_latency_s", 1.2, -0.4, "en")


def test_the_trend_says_what_a_response_time_below_zero_means():
    """A client who starts before the therapist has finished gets a negative mean response time; the trend's panel
    says so in words instead of leaving a bare negative number of seconds (trial finding)."""
    from flows.web.charts import trend_svg

    def session(n, latency):
        return {"session_id": f"s-{n}", "therapist_id": "t-a", "number": n, "date": f"2026-0{n}-01", "flags": 0,
                "verdicts": {"rupture": 0, "repaired": 0, "no_rupture": 0, "open": 0},
                "markers": {"client_response_latency_s": latency}, "units": {"client_response_latency_s": "s"}}

    for language, words in (("nl", "onder 0 s"), ("en", "below 0 s")):
        svg = trend_svg([session(1, 0.6), session(2, -0.4)], language=language)
        assert words in svg, language
        assert words not in trend_svg([session(1, 0.6), session(2, 0.4)], language=language)


def test_the_role_sentence_says_who_is_the_therapist_when_questions_decided():
    """Fresh-user trial: 'wie de meeste vragen stelt, wie daarna het meest spreekt is cliënt' never said who the
    therapist was; with no speakers at all it said 'overige regels'."""
    from pipeline import roles
    from pipeline.report import _how_roles

    rule = f"{roles.RULE_QUESTIONS}+{roles.RULE_CLIENT_REST}"
    assert _how_roles(rule, "nl") == "wie de meeste vragen stelt is therapeut, wie daarna het meest spreekt is cliënt"
    assert _how_roles(rule, "en") == ("who asks most questions is the therapist, "
                                      "who speaks most of the rest is the client")
    assert _how_roles("", "nl") == "niemand: er is geen spraak gevonden"
    assert _how_roles("", "en") == "nobody: no speech was found"


def test_the_overlaps_at_speaker_changes_add_up_their_own_time():
    """Fresh-user trial: '0,0 per minuut (0 keer in 0:30, samen 0,6 s)': the count was of overlaps at speaker changes,
    the total of all overlapped time (interruptions and backchannels inside a turn too)."""
    report = _report()
    report = dataclasses.replace(report, metrics=dataclasses.replace(report.metrics, overlaps_s=(),
                                                                     overlap_time_s=0.6))
    html = render_html(report, language="nl")
    row = re.search(r"<th>Door elkaar bij sprekerswissel</th><td[^>]*>([^<]+)<", html).group(1)
    assert row == "0,0 per minuut (0 keer in 1:00, samen 0,0 s)"
    html = render_html(_report(), language="nl")
    row = re.search(r"<th>Door elkaar bij sprekerswissel</th><td[^>]*>([^<]+)<", html).group(1)
    assert row == "3,0 per minuut (3 keer in 1:00, samen 1,2 s)"


def test_the_report_says_when_it_was_made_in_the_clinics_local_time():
    """Fresh-user trial: the header read 'gemaakt 2026-12-02T19:15:45+00:00' (raw ISO time in UTC) while the review
    app shows local time."""
    report = dataclasses.replace(_report(), created_at="2026-12-02T19:15:45+00:00")
    html = render_html(report, language="nl")
    assert "gemaakt 2026-12-02 20:15" in html and "T19:15:45" not in html
    summer = dataclasses.replace(_report(), created_at="2026-07-01T08:00:00+00:00",
                                 settings={"features": {"window_s": 30.0, "hop_s": 10.0}, "model": {},
                                           "web": {"timezone": "Europe/London"}})
    assert "created 2026-07-01 09:00" in render_html(summer, language="en")


def test_no_command_name_reaches_a_clinician():
    """Fresh-user trial: '(alliance web)' on every flag card, '(enrol with `alliance enroll-voice`)' in a warning:
    what a clinician reads names no command, no backticks (the command line says its commands itself)."""
    import tomllib
    from importlib import resources

    raw = tomllib.loads(resources.files("pipeline").joinpath("data/text.toml").read_text(encoding="utf-8"))
    found = [(section, key, lang) for section, entries in raw.items() if isinstance(entries, dict)
             for key, value in entries.items() if isinstance(value, dict)
             for lang, words in value.items() if isinstance(words, str)
             and ("`" in words or re.search(r"\balliance [a-z]", words))]
    assert found == []


def test_thresholds_are_said_as_precisely_as_the_model_card_holds_them():
    """Fresh-user trial: the note said '0,29 bij terugtrekking' for the card's 0.295."""
    card = {**CARD, "threshold": {"value": 0.295, "per_class": {"withdrawal": 0.295, "confrontation": 0.35}}}
    r = dataclasses.replace(_report(settings={"features": {}, "model": {"flag_threshold": 0.02}}), flag_threshold=0.02)
    nl = _summary(render_html(r, language="nl", model_card=card))
    assert "0,295" in nl and "0,35 " in nl + " " and "0,350" not in nl


def test_the_session_table_leaves_out_markers_measured_against_the_session_itself():
    """Fresh-user trial: five rows always read '0,0 × de gewone variatie': a marker measured against the client's
    own session average is 0 over the whole session by construction; it tells something per window only (the flags'
    observations, the appendix)."""
    html = render_html(_report(), language="nl")
    table = html[html.index("Alliantiemarkers over de sessie"):html.index("Bijlage")]
    assert "× de gewone variatie" not in table
    z_names = [n for n, u in zip(FEATURE_NAMES, FEATURE_UNITS) if u == "z"]
    assert z_names and all(n in html[html.index("Bijlage"):] for n in z_names)  # still in the appendix


def test_the_reports_figure_carries_no_clock_time_of_its_own():
    """CI failure: matplotlib wrote the render's own clock time into the SVG's metadata (``<dc:date>``), so a report
    made twice differed and the header test above failed when that time matched its made-up one."""
    html = render_html(_report(), language="nl")
    assert "<dc:date>" not in html
    assert render_html(_report(), language="nl") == html


def test_a_session_without_flags_is_not_said_to_have_no_stretch_at_the_threshold():
    """5 December trial: with a confirmation level (sim-v5), a confrontation stretch can reach the threshold and
    still not be flagged; the CLI and the report then said "no stretch reached the flag threshold", which was false.
    They now say that the model pointed out no stretch."""
    from pathlib import Path

    from flows.cli.analyze import closing_lines
    from pipeline.i18n import text

    for key in ("report.no_flags", "report.summary_none"):
        for language, word in (("en", "threshold"), ("nl", "drempel")):
            assert word not in text(key, language).lower(), (key, language)
    lines = "\n".join(closing_lines(_report(), Path("/tmp/x"))).lower()
    assert "threshold" not in lines and "nothing in this session needs review" in lines


def test_a_raised_threshold_is_not_said_to_flag_fewer_stretches_when_it_lifts_a_confirmation_level():
    """5 December trial: a threshold set by hand flags every stretch at it, without the model's confirmation level;
    set between the confrontation threshold (0.402) and its level (0.563) it adds confrontation flags, while the
    report said "fewer stretches are flagged than the model would point out"."""
    card = {"threshold": {"value": 0.3, "per_class": {"withdrawal": 0.3, "confrontation": 0.4},
                          "confirm": {"confrontation": 0.56}}}
    r = dataclasses.replace(_report(settings={"features": {}, "model": {"flag_threshold": 0.5}}), flag_threshold=0.5)
    note = _summary(render_html(r, language="en", model_card=card)).split('class="caveat"')[-1]
    assert "so fewer stretches are flagged" not in note and "set to 0.50 by a setting" in note
    above = dataclasses.replace(_report(settings={"features": {}, "model": {"flag_threshold": 0.6}}),
                                flag_threshold=0.6)
    assert "so fewer stretches are flagged" in _summary(render_html(above, language="en", model_card=card))


def test_every_3rs_marker_a_reason_resembles_has_words_and_deference_resembles_deferential():
    from models.flagging import DIRECTION, THREE_RS
    from pipeline.report import text

    for kind, table in THREE_RS.items():
        for marker, key in table.items():
            assert marker in DIRECTION[kind], (kind, marker)
            for language in ("nl", "en"):
                assert text(f"rupture3rs.{key}", language)
    assert THREE_RS["withdrawal"]["client_deference_per_min"] == "deferential"
    assert text("rupture3rs.deferential", "nl") == "meegaand en afhoudend, weinig eigen inbreng"


@pytest.mark.parametrize("language, value, shown", [
    ("en", -0.003, "0.0 s"), ("nl", -0.004, "0,0 s"), ("en", -0.006, "0.01 s over the therapist"),
    ("en", -0.4, "0.4 s over the therapist"), ("en", 0.0, "0.0 s")])
def test_a_response_time_that_rounds_to_nothing_is_no_talking_over(language, value, shown):
    """-0.003 s read "0.00 s over the therapist" (trial, 5 December): what rounds to zero is no overlap."""
    from pipeline.i18n import quantity

    assert quantity(value, "offset_s", language) == shown
