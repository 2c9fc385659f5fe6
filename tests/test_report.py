"""The HTML report renders flags, reasons and the transcript, escaped and self-contained."""

from __future__ import annotations

import math

import numpy as np

from pipeline.features import FEATURE_NAMES, FEATURE_UNITS
from pipeline.report import render_html, write_report
from pipeline.types import (Diarization, FeatureFrame, Recording, RoleAssignment, RuptureFlag, SessionFeatures,
                            SessionReport, SpeakerTurn, Transcript, TurnMetrics, Utterance, Word)


def _report():
    words = (Word(1.0, 1.5, "<b>Hoi</b>?", 0.9, "A"), Word(3.0, 3.4, "ja", 0.9, "B"))
    rec = Recording("/x/s1.wav", np.zeros(0, np.float32), 16000, 60.0, 16000, 1, "wav", 60.0)
    turns = (SpeakerTurn(1.0, 2.0, "A"), SpeakerTurn(3.0, 3.5, "B"))
    roles = RoleAssignment({"A": "therapist", "B": "client"}, "test")
    utts = (Utterance("A", "therapist", 1.0, 1.5, words[:1]), Utterance("B", "client", 3.0, 3.4, words[1:]))
    metrics = TurnMetrics(60.0, {"A": 1.0, "B": 0.5}, {"A": 0.67, "B": 0.33}, {"therapist": 1.0, "client": 0.5},
                          {"A": 1, "B": 1}, (1.0,), (), 1.0, 1.0, 0.97)
    feats = SessionFeatures(FEATURE_NAMES, FEATURE_UNITS,
                            (FeatureFrame(0.0, 30.0, tuple([math.nan] + [0.5] * (len(FEATURE_NAMES) - 1))),))
    flag = RuptureFlag(0.0, 30.0, 0.81, "withdrawal", ("a silence of 9.2 s",), "test-model")
    return SessionReport("s1", rec, (), Transcript(words, "nl", 1.0, 60.0), Diarization(turns, ("A", "B"), "t"),
                         roles, utts, metrics, (), feats, (flag,), "test-model", 0.5, "abc", {}, "2026-11-29", "0.1")


def test_report_shows_flag_reasons_and_escapes_text():
    html = render_html(_report(), language="en")
    assert "withdrawal" in html and "high probability" in html and "(0.81)" in html and "a silence of 9.2 s" in html
    assert "&lt;b&gt;Hoi&lt;/b&gt;?" in html and "<b>Hoi</b>" not in html
    assert "0:00–0:30" in html
    assert "<script" not in html


def test_write_report_writes_html_json_and_csv(tmp_path):
    paths = write_report(_report(), tmp_path)
    assert paths["json"].read_text().count('"withdrawal"') == 1
    header = paths["features_csv"].read_text().splitlines()[0]
    assert header.startswith("start_s,end_s,client_speech_share [ratio]")
    assert "NaN" not in paths["json"].read_text()


def test_dutch_report_uses_the_clinical_terms_and_shows_the_header():
    import dataclasses

    r = dataclasses.replace(_report(), client_id="c-017", session_date="2026-11-28",
                            session_markers={"client_speech_share": {"value": 0.2, "unit": "ratio", "description": "d"}},
                            client_history={"client_speech_share": {"min": 0.35, "max": 0.5, "n": 4}})
    html = render_html(r, language="nl")
    assert '<html lang="nl">' in html and "cliënt <strong>c-017</strong>" in html and "2026-11-28" in html
    assert "terugtrekking" in html and "Gesignaleerd om terug te kijken" in html
    assert "35 % – 50 % (n = 4)" in html  # the client's own range over earlier sessions
    # and the summary says this session's 20 % lies below it
    assert "aandeel spraak van de cliënt: 20 % (eerder 35 % – 50 %)" in html
    assert "alliantie" in html


def test_timeline_marks_roles_overlap_silence_and_flags():
    from pipeline.report import overlap_spans, timeline_svg
    from pipeline.report_text import REPORT_TEXT

    turns = (SpeakerTurn(0.0, 4.0, "A"), SpeakerTurn(3.0, 6.0, "B"), SpeakerTurn(10.0, 12.0, "A"))
    assert overlap_spans(turns) == [(3.0, 4.0)]
    svg = timeline_svg(_report(), REPORT_TEXT["en"])
    assert svg.startswith("<svg") and "silence ≥ 3 s" in svg and "flag: withdrawal" in svg
    assert "therapist" in svg and "overlap" in svg


def test_flag_clips_can_be_embedded_for_offline_listening():
    from pipeline.report import clip_data_uris

    r = _report()
    x = (0.1 * np.sin(2 * np.pi * 220 * np.arange(60 * 16000) / 16000)).astype(np.float32)
    clips = clip_data_uris(x, 16000, r.flags)
    assert clips[0].startswith("data:audio/wav;base64,")
    import base64

    raw = base64.b64decode(clips[0].split(",", 1)[1])
    assert len(raw) == 44 + 2 * 16000 * 31  # the flag (0–30 s) plus 1 s after it, 16-bit mono
    html = render_html(r, clips=clips)
    assert '<audio controls preload="none" src="data:audio/wav;base64,' in html
    assert "review app" in render_html(r, language="en")  # without embedding, the card points to the review app


def _flagged_in_dutch():
    """``_report()`` as a Dutch analysis writes it: the flag's sentences in Dutch, the facts behind them kept."""
    import dataclasses

    from pipeline.types import ReasonFact

    r = _report()
    dutch = "de cliënt weigerde 3,0 keer per minuut (‘wil niet’) (rest van de sessie 0,0)"
    flag = dataclasses.replace(r.flags[0], reasons=(dutch,),
                               reason_facts=(ReasonFact("client_refusals_per_min", 3.0, 0.0),))
    return dataclasses.replace(r, flags=(flag,))


def test_the_report_words_a_flags_reasons_in_its_own_language_from_the_facts():
    """Issue 18: the reasons of a flag made in Dutch read in English in the English report, and back."""
    r = _flagged_in_dutch()
    english = render_html(r, language="en")
    assert "the client refused 3.0 times a minute (‘I won&#39;t’) (rest of the session 0.0)" in english
    assert "weigerde" not in english
    dutch = render_html(r, language="nl")
    assert "de cliënt weigerde 3,0 keer per minuut (‘wil niet’) (rest van de sessie 0,0)" in dutch
    assert "refused" not in dutch


def test_a_flag_stored_without_facts_keeps_its_sentences_in_every_language():
    """A session analysed before the facts were kept shows the sentences it was analysed with."""
    html = render_html(_report(), language="nl")
    assert "a silence of 9.2 s" in html


def test_write_report_writes_the_report_in_every_language_with_its_own_reasons(tmp_path):
    """Issue 18: the review app in English opened a Dutch report; each language gets its own file, from one
    set of flags (their reasons worded from the facts in each file's language)."""
    from pipeline.report import report_file

    paths = write_report(_flagged_in_dutch(), tmp_path, language="nl", other_languages=("en",))
    assert paths["html"] == tmp_path / "report.html" and paths["html_en"] == tmp_path / "report.en.html"
    dutch, english = paths["html"].read_text(), paths["html_en"].read_text()
    assert '<html lang="nl">' in dutch and "de cliënt weigerde 3,0 keer per minuut" in dutch and "refused" not in dutch
    assert '<html lang="en">' in english and "the client refused 3.0 times a minute" in english
    assert "weigerde" not in english
    assert "<script" not in english and 'href="http' not in english  # self-contained, like the main report
    assert '"reason_facts": [' in paths["json"].read_text()  # session.json keeps the facts for the review app
    assert report_file(tmp_path, "en") == tmp_path / "report.en.html"
    assert report_file(tmp_path, "nl") == tmp_path / "report.html"  # the main report is in Dutch
    paths["html_en"].unlink()  # a session analysed before this change: its one report, whatever its language
    assert report_file(tmp_path, "en") == tmp_path / "report.html"


def test_too_little_speech_names_the_recording_length_when_it_is_shorter_than_the_minimum():
    """Trial finding: on a 2-s recording the warning said "no 2-s window holds at least 3 s of speech", which cannot
    happen and so explains nothing; it now says how long the recording is and what a judgement needs."""
    from pipeline.i18n import localise
    from pipeline.report import judgement_warnings, nothing_judged
    from pipeline.types import SpeechRegion

    speech = (SpeechRegion(0.2, 1.8),)
    short = SessionFeatures(FEATURE_NAMES, FEATURE_UNITS,
                            (FeatureFrame(0.0, 2.0, tuple([0.0] * len(FEATURE_NAMES)), 1.6),))
    (w,) = judgement_warnings(short, speech, min_window_speech_s=3.0)
    assert w.startswith("too little speech to judge") and "lasts 2 s" in w and "at least 3 s of speech" in w, w
    assert "window" not in w
    assert nothing_judged([w]) == "summary_too_little_speech"
    assert "duurt 2 s" in localise(w, "nl")
    long = SessionFeatures(FEATURE_NAMES, FEATURE_UNITS,
                           (FeatureFrame(0.0, 30.0, tuple([0.0] * len(FEATURE_NAMES)), 2.5),))
    (w,) = judgement_warnings(long, speech, min_window_speech_s=3.0)
    assert "no 30-s window holds at least 3 s of speech" in w
