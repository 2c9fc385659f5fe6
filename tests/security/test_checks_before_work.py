"""Issue 14: a bad therapist id, an unusable model artifact or output path fail before decoding, in the flow itself.

The nightly run calls ``analyze_session`` without the CLI's own checks, so each of these used to cost a full
decode, ASR and diarization, and left a partial transcript in the session folder.
"""

from __future__ import annotations

import json

import pytest

from pipeline.errors import InputError, ModelArtifactError, PipelineError, StageError
from tests.security._fast_session import fast_analysis, files_under, run_session, silent_wav


@pytest.fixture()
def clinic(tmp_path, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(data))
    calls = fast_analysis(monkeypatch)
    return dict(root=tmp_path, data=data, wav=silent_wav(tmp_path / "rec.wav"), calls=calls)


def _nothing_started(clinic, before: set[str]) -> None:
    assert clinic["calls"]["decode"] == []
    assert files_under(clinic["root"]) == before  # no session folder, no transcript


def test_a_therapist_without_a_profile_fails_before_decoding(clinic):
    before = files_under(clinic["root"])
    with pytest.raises(InputError, match="no voice profile for therapist 't-nobody'"):
        run_session(clinic["wav"], session_id="s-1", therapist="t-nobody")
    _nothing_started(clinic, before)


def test_a_damaged_profile_named_in_the_metadata_fails_before_decoding(clinic):
    (clinic["data"] / "profiles").mkdir(parents=True)
    (clinic["data"] / "profiles" / "t-anna.json").write_text("{broken")
    meta = clinic["root"] / "s.json"
    meta.write_text(json.dumps({"session_id": "s-1", "therapist_id": "t-anna"}))
    before = files_under(clinic["root"])
    with pytest.raises(InputError, match="t-anna.json: not a voice profile"):
        run_session(clinic["wav"], metadata_path=str(meta))
    _nothing_started(clinic, before)


def test_a_missing_model_fails_before_decoding(clinic, monkeypatch):
    monkeypatch.setenv("ALLIANCE_MODEL__ACTIVE_MODEL", str(clinic["root"] / "no-such-model"))
    before = files_under(clinic["root"])
    with pytest.raises(ModelArtifactError,
                       match=r"no-such-model: cannot be loaded as a classifier \(the model folder does not exist"):
        run_session(clinic["wav"], session_id="s-1")
    _nothing_started(clinic, before)


def test_an_unloadable_model_fails_before_decoding_in_one_line(clinic, monkeypatch):
    model = clinic["root"] / "damaged"
    model.mkdir()
    (model / "model_card.json").write_text("{not json")
    (model / "model.skops").write_bytes(b"PK")
    monkeypatch.setenv("ALLIANCE_MODEL__ACTIVE_MODEL", str(model))
    before = files_under(clinic["root"])
    with pytest.raises(ModelArtifactError) as info:
        run_session(clinic["wav"], session_id="s-1")
    assert str(info.value).startswith(f"{model}: cannot be loaded as a classifier") and "\n" not in str(info.value)
    _nothing_started(clinic, before)


def test_an_active_pointer_to_a_removed_model_fails_before_decoding(clinic):
    (clinic["data"] / "models").mkdir(parents=True)
    (clinic["data"] / "models" / "ACTIVE").write_text("v-gone")
    before = files_under(clinic["root"])
    with pytest.raises(ModelArtifactError, match="names model 'v-gone'"):
        run_session(clinic["wav"], session_id="s-1")
    _nothing_started(clinic, before)


@pytest.mark.parametrize("where", ["data dir", "sessions", "profiles", "inside another session",
                                   "another session's folder"])  # the last was accepted (trial, 4 December)
def test_an_output_folder_that_would_mix_sessions_is_refused(clinic, where):
    clinic["data"].mkdir()
    out = {"data dir": clinic["data"], "sessions": clinic["data"] / "sessions",
           "profiles": clinic["data"] / "profiles",
           "inside another session": clinic["data"] / "sessions" / "s-0" / "s-1",
           "another session's folder": clinic["data"] / "sessions" / "s-0"}[where]
    before = files_under(clinic["root"])
    with pytest.raises(StageError, match="so this session's files would mix with other data there"):
        run_session(clinic["wav"], session_id="s-1", out_dir=str(out))
    _nothing_started(clinic, before)


def test_an_output_path_below_a_file_fails_before_decoding(clinic):
    blocker = clinic["root"] / "afile"
    blocker.write_text("x")
    before = files_under(clinic["root"])
    with pytest.raises(StageError, match="cannot create the session folder"):
        run_session(clinic["wav"], session_id="s-1", out_dir=str(blocker / "sub"))
    _nothing_started(clinic, before)


def test_a_stage_failing_after_asr_leaves_no_partial_transcript(clinic, monkeypatch):
    import flows.analyze as analyze_module

    def broken(*args, **kwargs):
        raise StageError("diarization failed (simulated)")

    monkeypatch.setattr(analyze_module, "diarization_task", broken)
    with pytest.raises(PipelineError, match="simulated"):
        run_session(clinic["wav"], session_id="s-1", language="nl")
    assert clinic["calls"]["decode"]  # it did get that far
    assert not (clinic["data"] / "sessions" / "s-1").exists()


def test_a_failed_rerun_keeps_the_earlier_results_as_they_were(clinic, monkeypatch):
    import flows.analyze as analyze_module

    out = clinic["data"] / "sessions" / "s-1"
    out.mkdir(parents=True)
    (out / "session.json").write_text('{"earlier": true}')
    monkeypatch.setattr(analyze_module, "diarization_task",
                        lambda *a, **k: (_ for _ in ()).throw(StageError("diarization failed (simulated)")))
    with pytest.raises(PipelineError):
        run_session(clinic["wav"], session_id="s-1", language="nl")
    assert files_under(out) == {"session.json"} and json.loads((out / "session.json").read_text()) == {"earlier": True}


def test_broken_word_lists_fail_before_decoding(clinic, monkeypatch):
    bad = clinic["root"] / "woorden.toml"
    bad.write_text("[nl]\nnegations = 'niet'\n")
    monkeypatch.setenv("ALLIANCE_FEATURES__LEXICON_PATH", str(bad))
    before = files_under(clinic["root"])
    with pytest.raises(PipelineError, match=r"woorden.toml: \[nl\] negations must be a list"):
        run_session(clinic["wav"], session_id="s-1")
    _nothing_started(clinic, before)


def test_the_flow_writes_the_report_in_both_languages(clinic, monkeypatch):
    """Issue 18: ``report.html`` in ``ALLIANCE_UI_LANGUAGE``, and ``report.<other>.html`` for the review app."""
    from pathlib import Path

    monkeypatch.setenv("ALLIANCE_UI_LANGUAGE", "nl")
    report = Path(run_session(clinic["wav"], session_id="s-1"))
    assert '<html lang="nl">' in report.read_text(encoding="utf-8")
    english = report.with_name("report.en.html")
    assert '<html lang="en">' in english.read_text(encoding="utf-8")
    assert not report.with_name("report.nl.html").exists()  # the main report is already Dutch
