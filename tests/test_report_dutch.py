"""The clinician's report in Dutch: one text catalogue, no English or code names on a Dutch page, honest
probabilities, a summary first, and a page that prints on A4."""

from __future__ import annotations

import dataclasses
import json
import re
from html.parser import HTMLParser

import pytest

from pipeline.features import FEATURE_NAMES
from pipeline.i18n import LANGUAGES, catalogue, localise, placeholders, text

TELL_TALE_ENGLISH = ("the", "and", "client's", "client", "refusals", "session average", "SD", "pitch", "minute",
                     "warning", "probability", "window", "silence", "speech", "speaker", "flag", "flagged",
                     "meaning", "therapist", "questions", "words", "times", "above", "below", "average",
                     "settings", "with", "no")  # not "was", "of": Dutch words too
SNAKE_CASE = re.compile(r"\b[a-z]+(?:_[a-z0-9]+)+\b")  # client_f0_range_z


def code_names() -> set[str]:
    """Every rule code and method name the pipeline records (most-speech-is-therapist, ...)."""
    from pipeline import roles

    return {v for k, v in vars(roles).items() if k.startswith("RULE_") and isinstance(v, str)} | {
        "spectral", "channel-per-speaker", "resemblyzer"}


def test_every_key_has_both_languages_with_the_same_placeholders():
    assert len(catalogue()) > 150
    for key, texts in catalogue().items():
        assert set(texts) == set(LANGUAGES), key
        assert all(texts[lang].strip() for lang in LANGUAGES), key
        assert placeholders(texts["nl"]) == placeholders(texts["en"]), key


def test_every_marker_has_a_clinical_label_and_a_reason_in_both_languages():
    for name in FEATURE_NAMES:
        for lang in LANGUAGES:
            label = text(f"marker.{name}.label", lang)
            assert "_" not in label and name not in label
            assert "{value}" in catalogue()[f"marker.{name}.reason"][lang]


def test_an_unknown_key_or_language_is_refused_naming_it():
    with pytest.raises(KeyError, match="report.nonsense"):
        text("report.nonsense", "nl")
    with pytest.raises(ValueError, match="'de'"):
        text("report.summary", "de")


def test_stored_english_warnings_are_shown_in_dutch_with_their_values():
    from pipeline.report import input_warnings
    from pipeline.types import Recording, Transcript
    import numpy as np

    rec = Recording("/x/kort.wav", np.zeros(0, np.float32), 16000, 0.4, 16000, 1, "wav", 0.4)
    stored = input_warnings(rec, (), Transcript((), "nl", 0.0, 0.4))
    assert stored[0] == "the recording is only 0.4 s long: too short to analyse turn-taking"  # session.json: English
    shown = [localise(w, "nl") for w in stored]
    assert shown[0] == "de opname duurt maar 0,4 s: te kort om de beurtwisseling te beoordelen"
    assert shown[1].startswith("geen spraak gevonden")
    assert localise("something nobody wrote", "nl") == "something nobody wrote"


def test_probability_bands():
    from pipeline.report import probability_band

    assert [probability_band(p) for p in (0.0, 0.49, 0.5, 0.79, 0.8, 1.0)] == [
        "band_low", "band_low", "band_medium", "band_medium", "band_high", "band_high"]


def test_the_caveat_names_the_model_and_what_it_was_trained_on_from_its_card():
    import json

    from models.artifact import default_artifact
    from pipeline.report import model_caveat

    folder = default_artifact()
    card = json.loads((folder / "model_card.json").read_text())
    nl = model_caveat(card, card["version"], "nl")
    assert nl.startswith(f"Model {card['version']}: getraind op gesimuleerde sessies") and "niet op echte" in nl
    assert "not on real therapy recordings" in model_caveat(card, card["version"], "en")
    assert "staat niet in de modelkaart" in model_caveat(None, "x-1", "nl")


class _VisibleText(HTMLParser):
    """The words a reader sees: no style sheet, and no transcript text (the recording's own language)."""

    def __init__(self, skip: set[str]):
        super().__init__()
        self.skip, self.parts, self._in_style = skip, [], False

    def handle_starttag(self, tag, attrs):
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if not self._in_style and data.strip() and data.strip() not in self.skip:
            self.parts.append(data)


def visible_words(html: str, transcript: set[str]) -> str:
    p = _VisibleText(transcript)
    p.feed(html)
    return " ".join(p.parts)


def english_words_in(page: str) -> list[str]:
    return [w for w in TELL_TALE_ENGLISH if re.search(rf"(?<![\w'’]){re.escape(w)}(?![\w'’])", page)]


@pytest.fixture(scope="module")
def analysed_report():
    """sample.wav analysed (fake ASR and voices, real decoding, VAD and pYIN), flagged by the shipped model
    with a threshold low enough that it flags, and a client with three earlier sessions."""
    from models.artifact import load_model
    from models.flagging import flag_windows
    from pipeline.settings import Settings
    from pipeline.sidecar import Sidecar
    from pipeline.session import Backends, analyze
    from pipeline.types import SessionReport
    from tests.conftest import SAMPLE_WAV
    from tests.test_session import ReferenceAsr, ReferenceEmbedder, ReferenceOverlap

    import tempfile

    meta = Sidecar(language="en", participants=({"role": "therapist"}, {"role": "client", "age": 11}),
                   client_id="c-017", date="2026-11-28", therapist_id="t-zonder-profiel")
    with tempfile.TemporaryDirectory() as data:
        a = analyze(SAMPLE_WAV, meta, Settings(data_dir=data),
                    backends=Backends(ReferenceAsr(), ReferenceEmbedder(), ReferenceOverlap()))
    # the 30 s call is one window: repeat it as six, the fourth withdrawn (the client silent and late), so a
    # flag has the rest of the session to be compared with
    from pipeline.types import FeatureFrame

    frame = a.features.frames[0]
    names = list(a.features.feature_names)
    withdrawn = list(frame.values)
    for name, value in (("silence_share", 0.6), ("longest_silence_s", 12.0), ("client_speech_share", 0.05),
                        ("therapist_speech_share", 0.35), ("client_response_latency_s", 4.0),
                        ("client_question_latency_s", 4.0), ("client_words_per_utterance", 1.5),
                        ("client_minimal_response_share", 0.9), ("therapist_question_rate_per_min", 8.0),
                        ("therapist_question_run_max", 5.0), ("client_framed_pauses_per_min", 4.0)):
        withdrawn[names.index(name)] = value
    frames = tuple(FeatureFrame(10.0 * i, 10.0 * i + 30.0, tuple(withdrawn if i == 3 else frame.values),
                                frame.speech_s) for i in range(6))
    a = dataclasses.replace(a, features=dataclasses.replace(a.features, frames=frames))
    bundle = load_model()
    # flagged once, as the analysis does (in Dutch): each language's page words the reasons from their facts
    flags = flag_windows(a.features, bundle, threshold=0.02, min_speech_s=0.0, language="nl")
    history = {k: {"min": v["value"] * 1.5 + 0.1, "max": v["value"] * 2 + 0.2, "n": 3}  # all above this session
               for k, v in list(a.session_markers.items())[:6] if v["value"] == v["value"]}
    report = SessionReport.from_analysis(
        a, flags=flags, model_version=bundle.version, flag_threshold=0.02, created_at="2026-12-02T10:00:00+00:00",
        software_version="0.1.0", client_history=history)
    return {lang: report for lang in LANGUAGES}, bundle.card


@pytest.mark.slow  # decodes, VADs and runs pYIN on real audio (fake models only for ASR and voices)
def test_the_dutch_report_of_a_real_session_holds_no_english_and_no_code_names(analysed_report):
    from pipeline.report import render_html

    reports, card = analysed_report
    r = reports["nl"]
    kinds = {f.marker_type for f in r.flags}
    assert kinds  # the calm call flags at this low threshold
    assert any(w.startswith("therapist 't-zonder-profiel' has no enrolled voice profile") for w in r.warnings)
    html = render_html(r, language="nl", model_card=card)
    transcript = {u.text.strip() for u in r.utterances} | {u.text.strip() for u in r.utterances}
    page = visible_words(html, transcript)
    appendix_at = page.index("Bijlage: markers per venster")
    body, appendix = page[:appendix_at], page[appendix_at:]
    assert english_words_in(body) == [], english_words_in(body)
    assert SNAKE_CASE.findall(body) == [], SNAKE_CASE.findall(body)
    assert [c for c in code_names() if c in body] == []
    assert "client_f0_range_z" in appendix  # code names only in the data appendix
    # the summary comes first, in clinical words, then the timeline
    assert html.index("Samenvatting") < html.index("Wie sprak wanneer")
    # the kinds by name; a 3RS marker only as what a flag's own observations resemble (issue 18 trial)
    summary = page[page.index("Samenvatting"):page.index("Wie sprak wanneer")]
    assert all({"withdrawal": "terugtrekking", "confrontation": "confrontatie"}[k] in summary for k in kinds)
    like = [text(f"rupture3rs.{m}", "nl") for f in r.flags for m in f.resembles]
    assert all(m in summary for m in like) and (summary.count("lijkt op: ") >= 1 if like else True)
    assert "Anders dan in de eerdere sessies van deze cliënt (3 sessies)" in page
    assert f"Model {card['version']}: getraind op gesimuleerde sessies" in page
    assert re.search(r"kans (laag|midden|hoog)\s+\(\d,\d\d\)", page)
    assert "Lijkt op (3RS)" in page
    assert "therapeut 't-zonder-profiel' heeft geen stemprofiel" in page
    # every cited reference [n] is in the list at the end
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", page)}
    assert cited and len(re.findall(r"<li>[A-Z][^<]+\(\d{4}\)", html.split("Literatuur")[-1])) >= max(cited)


@pytest.mark.slow  # decodes, VADs and runs pYIN on real audio (fake models only for ASR and voices)
def test_the_english_report_on_request_and_the_reasons_in_its_language(analysed_report):
    from pipeline.report import render_html

    reports, card = analysed_report
    html = render_html(reports["en"], language="en", model_card=card)
    assert "Summary" in html and ("<strong>withdrawal</strong> — " in html or "<strong>confrontation</strong> — " in html)
    assert "not on real therapy recordings" in html
    # the flags were made once, in Dutch: the English page words their reasons in English from the facts
    from markupsafe import escape

    from pipeline.report import flag_reasons

    flags = reports["en"].flags
    assert flags and all(len(f.reason_facts) == len(f.reasons) for f in flags)
    assert all("rest van de sessie" in x or "elders" in x for f in flags for x in f.reasons)
    reasons_en = [x for f in flags for x in flag_reasons(f.reason_facts, f.reasons, "en")]
    assert reasons_en and all("rest of the session" in x or "elsewhere" in x for x in reasons_en)
    assert all(str(escape(x)) in html for x in reasons_en)
    assert not any(x in html for f in flags for x in f.reasons)


@pytest.mark.slow  # decodes, VADs and runs pYIN on real audio (fake models only for ASR and voices)
def test_the_wide_window_table_is_in_features_csv_not_in_the_page(analysed_report, tmp_path):
    import csv
    import json

    from pipeline.report import write_report

    reports, card = analysed_report
    r = reports["nl"]
    paths = write_report(r, tmp_path, language="nl", model_card=card)
    html = paths["html"].read_text()
    assert "@page { size: A4 portrait" in html and "<script" not in html and "http://" not in html.split("<svg")[0]
    rows = list(csv.reader(paths["features_csv"].open()))
    assert len(rows) == 1 + len(r.features.frames) and len(rows[0]) == 2 + len(FEATURE_NAMES)
    assert max(len(re.findall(r"<t[dh][ >]", row)) for row in html.split("<tr>")) <= 5  # no 40-column row
    assert len(json.loads(paths["json"].read_text())["features"]["frames"]) == len(r.features.frames)


def test_every_role_rule_has_words():
    from pipeline import roles
    from pipeline.report import _how_roles

    for name, code in vars(roles).items():
        if name.startswith("RULE_"):
            assert _how_roles(code, "nl") != text("roles.other", "nl"), code
    assert _how_roles("most-speech-is-therapist+client-most-speech-of-the-rest", "nl") == (
        "wie het meest spreekt is therapeut, wie daarna het meest spreekt is cliënt")


def test_a_transcript_finished_quickly_after_the_time_limit_is_said_in_both_languages():
    import numpy as np

    from pipeline.report import input_warnings
    from pipeline.types import Recording, SpeechRegion, Transcript, Word

    rec = Recording(path="x.wav", samples=np.zeros(16000 * 600, np.float32), sample_rate_hz=16000, duration_s=600.0,
                    source_sample_rate_hz=16000, source_channels=1, source_format="wav")
    words = (Word(1.0, 1.5, "ja", 0.9),)
    careful = Transcript(words=words, language="nl", language_probability=1.0, duration_s=600.0)
    quick = dataclasses.replace(careful, limited_spans=((125.0, 300.0), (412.0, 600.0)))
    speech = (SpeechRegion(1.0, 599.0),)
    assert input_warnings(rec, speech, careful) == ()
    (said,) = input_warnings(rec, speech, quick)
    assert "2:05" in said and "time limit" in said
    dutch = localise(said, "nl")
    assert "2:05" in dutch and dutch != said and "ALLIANCE" not in dutch


@pytest.mark.slow  # uses the analysed sample (real decoding, VAD and pYIN)
def test_markers_measured_otherwise_than_the_model_was_trained_are_said_in_both_languages(analysed_report):
    """Speech found by the segmentation model, or voices told apart by CAM++, while the shipped classifier learned
    from Silero's speech and resemblyzer's voices: the markers differ, and the reader is told (trial, 5 December)."""
    from pipeline.report import render_html

    reports, card = analysed_report
    plain = reports["nl"]
    assert "anders geanalyseerd" not in render_html(plain, language="nl", model_card=card)
    settings = json.loads(json.dumps(plain.settings))
    settings["vad"]["method"] = "segmentation"
    settings["diarization"]["embedder"] = "campplus"
    other = dataclasses.replace(plain, settings=settings)
    nl = " ".join(render_html(other, language="nl", model_card=card).split())
    en = " ".join(render_html(other, language="en", model_card=card).split())
    assert "anders geanalyseerd dan" in nl and "spraakdetectie: het segmentatiemodel in plaats van Silero" in nl
    assert "sprekerherkenning: CAM++ in plaats van Resemblyzer" in nl
    assert "analysed differently from" in en and "speech detection: the segmentation model instead of Silero" in en
    # a card that says it was trained so: no note
    trained = dict(card, analysis={"vad_method": "segmentation", "speaker_encoder": "campplus"})
    assert "anders geanalyseerd" not in render_html(other, language="nl", model_card=trained)
