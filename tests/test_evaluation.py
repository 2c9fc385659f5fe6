"""Scoring: DER on constructed turns with known answers, WER normalisation, and the eval-diarization command."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline.evaluation import normalise_text, read_uem, score_diarization, word_error_rate
from pipeline.types import SpeakerTurn as T
from tests.conftest import SAMPLE_RTTM, SAMPLE_WAV


def test_der_known_answers():
    ref = [T(0, 10, "a"), T(10, 20, "b")]
    assert score_diarization(ref, [T(0, 10, "x"), T(10, 20, "y")], collar_s=0).der == 0.0
    s = score_diarization(ref, [T(0, 10, "x"), T(10, 15, "y")], collar_s=0)  # 5 s of b missed
    assert s.der == pytest.approx(0.25) and s.missed_s == pytest.approx(5.0)
    s = score_diarization(ref, [T(0, 20, "x")], collar_s=0)  # b's 10 s given to a's label
    assert s.confusion_s == pytest.approx(10.0) and s.der == pytest.approx(0.5)
    # a collar of 0.5 s forgives ±0.25 s at each reference boundary
    s = score_diarization(ref, [T(0, 10.2, "x"), T(10.2, 20, "y")], collar_s=0.5)
    assert s.der == 0.0


def test_wer_normalisation():
    assert normalise_text("Oh, I didn't know!") == "oh i didnt know"
    assert word_error_rate("Hello? Hello.", "hello hello") == 0.0
    assert word_error_rate("ask not what", "ask what") == pytest.approx(1 / 3)


def test_read_uem(tmp_path):
    p = tmp_path / "x.uem"
    p.write_text("dev00 NA 0.000 30.000\ndev01 1 2.5 20\n")
    assert read_uem(p) == {"dev00": (0.0, 30.0), "dev01": (2.5, 20.0)}


@pytest.mark.slow
def test_eval_diarization_command_prints_der_with_its_collar():
    """Piped or redirected output (80 columns) keeps one line per file: the table wrapped "sample.wa" / "v" and
    each figure over two lines (fresh-user trial, stop 41)."""
    result = CliRunner().invoke(app, ["eval-diarization", str(SAMPLE_WAV), "--reference", str(SAMPLE_RTTM)],
                                env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "collar 0.5 s = ±0.25 s" in " ".join(result.output.split())
    row = next(line for line in result.output.splitlines() if "sample.wav" in line)
    cells = [c.strip() for c in row.split("│")[1:-1]]
    assert len(cells) == 7 and cells[0] == "sample.wav" and all(cells), cells
    assert cells[3].endswith("%)") and cells[6].endswith(" s"), cells  # missed: seconds and share on one line
    der_pct = float(cells[2].rstrip("%").strip())
    assert der_pct <= 8.0


@pytest.mark.slow
def test_eval_diarization_names_a_file_with_a_line_break_on_one_row(tmp_path):
    """Trial, 5 December: a file name holding a line break or a tab split its row over two table lines."""
    import shutil

    odd = tmp_path / "b\nc.wav"
    shutil.copyfile(SAMPLE_WAV, odd)
    (tmp_path / "ref.rttm").write_text(SAMPLE_RTTM.read_text())
    result = CliRunner().invoke(app, ["eval-diarization", str(odd), "--reference", str(tmp_path / "ref.rttm")],
                                env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│")]
    assert len(rows) == 1 and "b\\nc.wav" in rows[0], rows


@pytest.mark.slow
def test_eval_diarization_scores_a_dataset_session_by_its_folder_name(tmp_path):
    """A simulated or annotated session is <id>/recording.wav with <id>/reference.rttm, whose turns are filed under
    <id>: the command said "no turns for 'recording'" (fresh-user trial)."""
    import shutil

    session = tmp_path / "s-1"
    session.mkdir()
    shutil.copy(SAMPLE_WAV, session / "recording.wav")
    (session / "reference.rttm").write_text(SAMPLE_RTTM.read_text().replace(" sample ", " s-1 "))
    result = CliRunner().invoke(app, ["eval-diarization", str(session / "recording.wav"), "--reference",
                                      str(session / "reference.rttm")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "recording.wav" in line)
    assert float(row.split("│")[3].strip().rstrip("%").strip()) <= 8.0


def test_eval_diarization_errors_name_the_file(tmp_path):
    runner = CliRunner()
    not_rttm = tmp_path / "notes.txt"
    not_rttm.write_text("just some text\n")
    two = tmp_path / "two.rttm"
    two.write_text("SPEAKER a 1 0.0 1.0 <NA> <NA> x <NA> <NA>\nSPEAKER b 1 0.0 1.0 <NA> <NA> y <NA> <NA>\n")
    cases = [
        ([str(SAMPLE_WAV), "--reference", str(not_rttm)], "notes.txt: not an RTTM file"),
        ([str(SAMPLE_WAV), "--reference", str(tmp_path / "gone.rttm")], "gone.rttm: reference RTTM not found"),
        ([str(tmp_path / "gone.wav"), "--reference", str(SAMPLE_RTTM)], "gone.wav: file not found"),
        ([str(SAMPLE_WAV), "--reference", str(two)], "sample.wav: no turns for 'sample' or 'sample_audio' in two.rttm"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["eval-diarization", *args])
        assert result.exit_code == 1 and message in result.output
        assert "DER" not in result.output  # no empty table after an error


@pytest.mark.parametrize("name, value", [("ALLIANCE_DIARIZATION__CHANNEL_MODE", "stereo"),
                                         ("ALLIANCE_ASR__RANDOM_SEED", str(2**32)),  # CTranslate2's seed is 32-bit
                                         ("ALLIANCE_FEATURES__PROSODY_PROCESSES", "100000"),
                                         ("ALLIANCE_OVERLAP__CPU_THREADS", "100000"),
                                         ("ALLIANCE_ASR__CPU_THREADS", "100000")])  # it crashed CTranslate2
def test_invalid_setting_is_one_clear_line(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["analyze", str(SAMPLE_WAV)])
    assert result.exit_code == 2
    assert f"invalid setting: {name}" in result.output
    assert "Traceback" not in result.output


def test_the_pre_check_uses_the_configured_longest_recording(monkeypatch):
    """The cheap check before Prefect starts applied the default 4 h, so a limit raised for long recordings
    refused them anyway (fresh-user trial)."""
    from pipeline import audio
    from pipeline.errors import InputError

    seen = []

    def probe(path, *, settings=None):
        seen.append(settings.max_duration_s if settings is not None else None)
        raise InputError(path, "stop here")

    monkeypatch.setattr(audio, "probe", probe)
    monkeypatch.setenv("ALLIANCE_AUDIO__MAX_DURATION_S", str(6 * 3600))
    result = CliRunner().invoke(app, ["analyze", str(SAMPLE_WAV)])
    assert result.exit_code == 1 and "stop here" in result.output
    assert seen == [6 * 3600.0]
