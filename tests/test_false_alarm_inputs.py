"""Flags per hour on unannotated recordings: a bad or silent file is set aside in one line, the rest still count
(fresh-user trial, issue 15: one empty file threw away a whole evaluate run; silence lowered the rate)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models import false_alarms as fa
from models.artifact import ModelBundle
from pipeline.errors import PipelineError
from pipeline.features import FEATURE_NAMES, FEATURE_UNITS
from pipeline.types import FeatureFrame, SessionFeatures


class _Calm:
    classes_ = np.array([0, 1, 2])

    def predict_proba(self, X):
        return np.tile([0.9, 0.05, 0.05], (X.shape[0], 1))


def _distinct(name):
    """1 s of a constant level of its own: each recording its own content (a copy is counted once)."""
    import zlib

    return np.full(16000, (zlib.crc32(name.encode()) % 997 + 1) / 10_000, np.float32)


def _features(speech_s):
    values = tuple([math.nan] * len(FEATURE_NAMES))
    return SessionFeatures(FEATURE_NAMES, FEATURE_UNITS,
                           tuple(FeatureFrame(10.0 * i, 10.0 * i + 30.0, values, speech_s) for i in range(10)))


def _evaluate_folder(folder, monkeypatch, lines=None):
    """``false_alarms`` on ``folder`` with a fake analysis; returns the recordings analysed and the result."""
    from models import dataset

    analysed = []
    monkeypatch.setattr(dataset, "session_features",
                        lambda session, settings, backends=None: (analysed.append(session.recording.name)
                                                                  or (_features(20.0), 60.0)))
    bundle = ModelBundle(_Calm(), {"version": "t", "feature_names": list(FEATURE_NAMES),
                                   "threshold": {"value": 0.5, "per_class": {}}}, folder)
    settings = type("S", (), {"model": type("M", (), {"min_window_speech_s": 3.0})(), "audio": None})()
    out = fa.false_alarms(bundle, [folder], settings=settings, progress=(lines if lines is not None else []).append)
    return analysed, out


def test_a_broken_or_silent_recording_is_set_aside_and_the_others_still_count(tmp_path, monkeypatch):
    for name in ("a-good.wav", "b-empty.wav", "c-silent.wav", "d-few-words.wav"):
        (tmp_path / name).write_bytes(name.encode())  # each its own content: a copy is counted once

    def features(path, settings, backends=None):
        if path.name == "b-empty.wav":
            raise PipelineError(f"{path.name}: file is empty")
        return _features({"c-silent.wav": 0.0, "d-few-words.wav": 1.5}.get(path.name, 20.0)), 120.0

    monkeypatch.setattr(fa, "recording_features", features)
    bundle = ModelBundle(_Calm(), {"version": "t", "feature_names": list(FEATURE_NAMES),
                                   "threshold": {"value": 0.5, "per_class": {}}}, tmp_path)
    lines = []
    out = fa.false_alarms(bundle, [tmp_path], settings=type("S", (), {"model": type("M", (), {
        "min_window_speech_s": 3.0})()})(), progress=lines.append)
    assert [f["file"] for f in out["files"]] == ["a-good.wav"]
    assert out["overall"]["minutes"] == 2.0 and out["overall"]["files"] == 1
    assert [(s["file"], s["why"]) for s in out["skipped"]] == [
        ("b-empty.wav", "file is empty"), ("c-silent.wav", "no speech found"),
        # speech, but not enough in any window: as `alliance analyze` says it (trial, 5 December)
        ("d-few-words.wav", "too little speech to judge (no window holds 3 s of speech)")]
    assert any(line.startswith("b-empty.wav: set aside") for line in lines)
    table = fa.format_false_alarms(out)
    assert "set aside" in table and "c-silent.wav" in table
    assert "b-empty.wav: set aside (file is empty)" in table  # the file named once, not twice
    assert "overall (1 file)" in table  # not "1 files" (trial)


def test_a_truncated_recording_is_counted_on_what_was_decoded_and_said(tmp_path, monkeypatch):
    """A file cut short (its header declares more than it holds) still counts, with one line saying so."""
    from pipeline.audio import save_wav

    whole = tmp_path / "whole.wav"
    save_wav(whole, np.zeros(30 * 16000, np.float32), 16000)
    data = whole.read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 3])  # the header still says 30 s
    whole.unlink()

    import models.flagging

    one = type("Flag", (), {"marker_type": "withdrawal"})()
    monkeypatch.setattr(models.flagging, "flag_windows", lambda *args, **kwargs: [one])
    monkeypatch.setattr(fa, "recording_features", lambda path, settings, backends=None: (_features(20.0), 10.0))
    bundle = ModelBundle(_Calm(), {"version": "t", "feature_names": list(FEATURE_NAMES),
                                   "threshold": {"value": 0.5, "per_class": {}}}, tmp_path)
    lines = []
    settings = type("S", (), {"model": type("M", (), {"min_window_speech_s": 3.0})(), "audio": None})()
    out = fa.false_alarms(bundle, [tmp_path], settings=settings, progress=lines.append)
    (row,) = out["files"]
    assert row["minutes"] == pytest.approx(10 / 60, abs=0.01) and row["flags"] == 1
    assert "truncated" in row["warning"] and "30.0" in row["warning"]
    assert lines == [f"cut.wav: 1 flag in 0.2 min; {row['warning']}"]
    assert f"cut.wav: {row['warning']}" in fa.format_false_alarms(out)


def test_a_short_truncated_recording_set_aside_says_it_was_cut_short(tmp_path, monkeypatch):
    """10 s left of a 30 s file: no window of enough speech, set aside; the reason also says it was cut short."""
    from pipeline.audio import save_wav

    whole = tmp_path / "whole.wav"
    save_wav(whole, np.zeros(30 * 16000, np.float32), 16000)
    data = whole.read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 3])
    whole.unlink()
    monkeypatch.setattr(fa, "recording_features", lambda path, settings, backends=None: (_features(0.0), 10.0))
    bundle = ModelBundle(_Calm(), {"version": "t", "feature_names": list(FEATURE_NAMES),
                                   "threshold": {"value": 0.5, "per_class": {}}}, tmp_path)
    lines = []
    settings = type("S", (), {"model": type("M", (), {"min_window_speech_s": 3.0})(), "audio": None})()
    out = fa.false_alarms(bundle, [tmp_path], settings=settings, progress=lines.append)
    (skipped,) = out["skipped"]
    assert skipped["why"].startswith("no speech found") and "truncated" in skipped["why"] and "30.0" in skipped["why"]
    assert lines == [f"cut.wav: set aside: {skipped['why']}"]


def test_a_sidecar_refusing_consent_is_obeyed(tmp_path, monkeypatch):
    """`alliance analyze` refuses a recording whose sidecar says consent.analysis is false; so does evaluate."""
    import json

    from pipeline.audio import save_wav

    for name in ("no.wav", "yes.wav"):
        save_wav(tmp_path / name, _distinct(name), 16000)
    (tmp_path / "no.json").write_text(json.dumps({"consent": {"analysis": False}}))
    lines = []
    analysed, out = _evaluate_folder(tmp_path, monkeypatch, lines)
    assert analysed == ["yes.wav"]
    assert [f["file"] for f in out["files"]] == ["yes.wav"]
    (skipped,) = out["skipped"]
    assert skipped["file"] == "no.wav" and "consent" in skipped["why"]


def test_file_names_with_line_breaks_or_terminal_escapes_print_on_one_line(tmp_path, monkeypatch):
    """A name holding a line break or an ANSI escape cannot forge a line or recolour the terminal."""
    name = "a\nb-0 flags in 9.0 min\x1b[31m.wav"
    (tmp_path / name).write_bytes(name.encode())
    (tmp_path / "bad\n.wav").write_bytes(b"bad")

    def features(path, settings, backends=None):
        if path.name == "bad\n.wav":
            raise PipelineError(f"{path}: file is empty")
        return _features(20.0), 120.0

    monkeypatch.setattr(fa, "recording_features", features)
    bundle = ModelBundle(_Calm(), {"version": "t", "feature_names": list(FEATURE_NAMES),
                                   "threshold": {"value": 0.5, "per_class": {}}}, tmp_path)
    lines = []
    settings = type("S", (), {"model": type("M", (), {"min_window_speech_s": 3.0})(), "audio": None})()
    out = fa.false_alarms(bundle, [tmp_path], settings=settings, progress=lines.append)
    table = fa.format_false_alarms(out)
    for text in lines + [table]:
        assert "\x1b" not in text
    assert all("\n" not in line for line in lines) and len(lines) == 2
    assert len(table.splitlines()) == 4  # header, one file, overall, one set aside
    assert "a\\nb-0 flags in 9.0 min\\x1b[31m.wav" in table
    assert out["files"][0]["file"] == name  # the JSON keeps the exact name (json escapes it)
    import json

    from models.artifact import default_artifact, render_card_markdown

    shipped = json.loads((default_artifact() / "model_card.json").read_text(encoding="utf-8"))
    shipped["metrics"]["false_alarms"] = out
    card = render_card_markdown(shipped)
    assert "\x1b" not in card and "| a\\nb-0 flags in 9.0 min\\x1b[31m.wav | 2.0 |" in card


def test_entries_that_are_not_files_are_named_and_a_right_to_left_name_is_escaped(tmp_path, monkeypatch):
    """A folder named x.wav, links that lead nowhere or loop, a pipe: each named with its problem, none silently
    left out; a name with a right-to-left override cannot show as another name (fresh-user trial)."""
    import os

    (tmp_path / "x.wav").mkdir()
    (tmp_path / "dangling.wav").symlink_to(tmp_path / "nowhere.wav")
    (tmp_path / "loop1.wav").symlink_to(tmp_path / "loop2.wav")
    (tmp_path / "loop2.wav").symlink_to(tmp_path / "loop1.wav")
    os.mkfifo(tmp_path / "fifo.wav")
    (tmp_path / "bidi\u202egnp.wav").write_bytes(b"bidi")
    (tmp_path / "short.wav").write_bytes(b"short")

    def features(path, settings, backends=None):
        return (_features(20.0), 120.0) if path.name != "short.wav" else (_features(0.0), 12.0)

    monkeypatch.setattr(fa, "recording_features", features)
    bundle = ModelBundle(_Calm(), {"version": "t", "feature_names": list(FEATURE_NAMES),
                                   "threshold": {"value": 0.5, "per_class": {}}}, tmp_path)
    lines = []
    settings = type("S", (), {"model": type("M", (), {"min_window_speech_s": 3.0})(), "audio": None,
                              "features": type("F", (), {"window_s": 30.0})()})()
    out = fa.false_alarms(bundle, [tmp_path], settings=settings, progress=lines.append)
    skipped = {s["file"]: s["why"] for s in out["skipped"]}
    assert {"x.wav", "dangling.wav", "loop1.wav", "loop2.wav", "fifo.wav"} <= set(skipped)
    assert all("not a regular file" in skipped[n] for n in ("x.wav", "dangling.wav", "loop1.wav", "fifo.wav"))
    assert skipped["short.wav"].startswith("12.0 s long, shorter than one analysis window (30 s)")
    assert [f["file"] for f in out["files"]] == ["bidi\u202egnp.wav"]
    text = "\n".join(lines) + fa.format_false_alarms(out)
    assert "\u202e" not in text and "bidi\\u202egnp.wav" in text


@pytest.mark.parametrize("kind", ["folder", "dangling link", "looping link"])
def test_a_sidecar_that_cannot_be_read_as_a_file_sets_the_recording_aside(tmp_path, monkeypatch, kind):
    """A sidecar name that is a folder or a link leading nowhere is refused, never ignored: it may be a consent
    record that cannot be read, so the recording is not analysed as if it had none (fresh-user trial)."""
    from pipeline.audio import save_wav

    for name in ("odd.wav", "plain.wav"):
        save_wav(tmp_path / name, _distinct(name), 16000)
    sidecar = tmp_path / "odd.wav.json"
    if kind == "folder":
        sidecar.mkdir()
    elif kind == "dangling link":
        sidecar.symlink_to(tmp_path / "nowhere.json")
    else:
        sidecar.symlink_to(sidecar)
    lines = []
    analysed, out = _evaluate_folder(tmp_path, monkeypatch, lines)
    assert analysed == ["plain.wav"]
    (skipped,) = out["skipped"]
    assert skipped["file"] == "odd.wav"
    assert "odd.wav.json" in skipped["why"] and "not a regular file" in skipped["why"]
    assert any(line.startswith("odd.wav: set aside") and "\n" not in line for line in lines)


def test_a_recording_with_two_sidecars_is_set_aside_as_the_inbox_refuses_it(tmp_path, monkeypatch):
    """Only NAME.wav.json was read, so a NAME.json refusing consent beside it was ignored and the recording
    analysed (fresh-user trial); the nightly inbox refuses a recording with two sidecars, and so does evaluate."""
    import json

    from pipeline.audio import save_wav

    for name in ("rec.wav", "plain.wav"):
        save_wav(tmp_path / name, _distinct(name), 16000)
    (tmp_path / "rec.wav.json").write_text(json.dumps({"language": "en"}))
    (tmp_path / "rec.json").write_text(json.dumps({"consent": {"analysis": False}}))
    analysed, out = _evaluate_folder(tmp_path, monkeypatch)
    assert analysed == ["plain.wav"]
    (skipped,) = out["skipped"]
    assert skipped["file"] == "rec.wav" and "two sidecars" in skipped["why"] and "rec.json" in skipped["why"]


def test_a_sidecar_refusing_research_use_is_obeyed(tmp_path, monkeypatch):
    """5 December trial: `evaluate --unannotated` analysed a recording whose consent record refused research use
    (its features cached, its name and figures bound for a model card); counting false alarms is research."""
    import json

    from pipeline.audio import save_wav

    consent = {"analysis": True, "given_by": ["parent"], "date": "2026-11-01"}
    for name in ("no.wav", "yes.wav", "plain.wav"):
        save_wav(tmp_path / name, _distinct(name), 16000)
    (tmp_path / "no.wav.json").write_text(json.dumps({"client_age": 9, "consent": {**consent,
                                                                                   "research_use": False}}))
    (tmp_path / "yes.wav.json").write_text(json.dumps({"client_age": 9, "consent": {**consent, "research_use": True}}))
    analysed, out = _evaluate_folder(tmp_path, monkeypatch)
    assert sorted(analysed) == ["plain.wav", "yes.wav"]
    (skipped,) = out["skipped"]
    assert skipped["file"] == "no.wav" and "research_use is false" in skipped["why"]


def test_a_recording_that_is_a_link_is_set_aside_not_followed(tmp_path, monkeypatch):
    """Trial (stop 43): in --unannotated, a link to another client's inbox recording would be analysed (its own
    sidecar, and so its consent, stays beside the target), and a link to /etc/passwd was opened; the inbox and the
    datasets refuse links."""
    folder = tmp_path / "real"
    folder.mkdir()
    (folder / "a-own.wav").write_bytes(b"own")
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "bob.wav").write_bytes(b"bob")
    (folder / "b-link.wav").symlink_to(tmp_path / "inbox" / "bob.wav")
    (folder / "c-passwd.wav").symlink_to("/etc/passwd")
    lines: list = []
    analysed, out = _evaluate_folder(folder, monkeypatch, lines)
    assert analysed == ["a-own.wav"]
    why = {s["file"]: s["why"] for s in out["skipped"]}
    assert set(why) == {"b-link.wav", "c-passwd.wav"} and all("is a link" in w for w in why.values()), why
    assert not any("bob" in line or "passwd" in line.replace("c-passwd.wav", "") for line in lines), lines


def test_a_linked_subfolder_is_named_and_a_recording_given_twice_counts_once(tmp_path, monkeypatch):
    """Second trial (stop 43): in --unannotated, a subfolder that was a link was passed over without a word, and
    the same recording under two names was counted twice in the flags per hour."""
    folder = tmp_path / "real"
    folder.mkdir()
    (folder / "a.wav").write_bytes(b"same bytes")
    (folder / "b-copy.wav").write_bytes(b"same bytes")
    (folder / "c-other.wav").write_bytes(b"other bytes")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "d.wav").write_bytes(b"more")
    (folder / "sub").symlink_to(tmp_path / "elsewhere")
    analysed, out = _evaluate_folder(folder, monkeypatch)
    assert analysed == ["c-other.wav"]  # every copy set aside (third trial: which one may be a refused one)
    why = {s["file"]: s["why"] for s in out["skipped"]}
    assert set(why) == {"a.wav", "b-copy.wav", "sub"}, why
    assert "a.wav" in why["b-copy.wav"] and "b-copy.wav" in why["a.wav"] and "link" in why["sub"]


def test_a_refusal_of_research_use_is_named_before_other_faults_of_the_consent_record(tmp_path, monkeypatch):
    """Second trial (stop 43): a sidecar refusing research use but without the client's age was set aside for
    "the client's age is missing", not for the refusal that matters."""
    import json

    from pipeline.audio import save_wav

    save_wav(tmp_path / "refused.wav", _distinct("refused.wav"), 16000)
    (tmp_path / "refused.wav.json").write_text(json.dumps({"consent": {
        "analysis": True, "research_use": False, "given_by": ["parent"], "date": "2026-11-01"}}))
    save_wav(tmp_path / "other.wav", _distinct("other.wav"), 16000)
    analysed, out = _evaluate_folder(tmp_path, monkeypatch)
    assert analysed == ["other.wav"]
    (skipped,) = out["skipped"]
    assert "research_use is false" in skipped["why"], skipped


def test_a_copy_of_a_refused_dataset_recording_is_not_counted_as_a_false_alarm_recording(tmp_path, monkeypatch):
    """Third trial (stop 43): `evaluate --data W --unannotated U`, U holding a copy of a W session whose consent
    refused research use: the copy was analysed and counted."""
    import json

    from pipeline.audio import save_wav

    session = tmp_path / "W" / "r1"
    session.mkdir(parents=True)
    save_wav(session / "recording.wav", _distinct("r1"), 16000)
    (session / "metadata.json").write_text(json.dumps({"session_id": "r1", "client_id": "c1", "consent": {
        "analysis": True, "research_use": False}}))
    unannotated = tmp_path / "U"
    unannotated.mkdir()
    (unannotated / "x.wav").write_bytes((session / "recording.wav").read_bytes())
    save_wav(unannotated / "y.wav", _distinct("y"), 16000)
    from models import dataset

    analysed = []
    monkeypatch.setattr(dataset, "session_features", lambda session, settings, backends=None: (
        analysed.append(session.recording.name) or (_features(20.0), 60.0)))
    bundle = ModelBundle(_Calm(), {"version": "t", "feature_names": list(FEATURE_NAMES),
                                   "threshold": {"value": 0.5, "per_class": {}}}, unannotated)
    settings = type("S", (), {"model": type("M", (), {"min_window_speech_s": 3.0})(), "audio": None})()
    out = fa.false_alarms(bundle, [unannotated], settings=settings, progress=lambda line: None,
                          other_dirs=[tmp_path / "W"])
    assert analysed == ["y.wav"]
    (skipped,) = out["skipped"]
    assert skipped["file"] == "x.wav" and "W/r1/recording.wav" in skipped["why"], skipped
    # a session folder given as recordings: its metadata.json is its consent record (fourth trial)
    out = fa.false_alarms(bundle, [tmp_path / "W"], settings=settings, progress=lambda line: None)
    (skipped,) = out["skipped"]
    assert skipped["file"] == "r1/recording.wav" and "research_use is false" in skipped["why"], skipped
