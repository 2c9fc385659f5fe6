"""Issue 14, severe 1: session, client and therapist ids follow one strict rule wherever they enter.

A session id of "..", ".", "a/b" or "../../x" once made `alliance analyze` (and the nightly run) write a session
into the data directory itself or outside it; `alliance purge` of that client then removed every client's data.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline.errors import MetadataError, PipelineError
from pipeline.sidecar import Sidecar
from tests.security._fast_session import fast_analysis, files_under, run_session, silent_wav

BAD_IDS = ["..", ".", "a/b", "../../x"]
runner = CliRunner()


@pytest.fixture()
def clinic(tmp_path, monkeypatch):
    """A data directory of its own and a short silent recording next to it (outside it)."""
    data = tmp_path / "data"
    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(data))
    return dict(root=tmp_path, data=data, wav=silent_wav(tmp_path / "rec.wav"))


def _write_metadata(path, **values):
    path.write_text(json.dumps(values))
    return path


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("field", ["session_id", "client_id", "therapist_id"])
def test_metadata_refuses_an_id_that_could_become_a_path(tmp_path, field, bad):
    path = _write_metadata(tmp_path / "s1.json", **{field: bad})
    with pytest.raises(MetadataError) as info:
        Sidecar.load(path)
    message = str(info.value)
    assert message.startswith(f"s1.json: '{field}' must be 1–64 letters, digits") and "\n" not in message


def test_metadata_refuses_a_bad_participant_id(tmp_path):
    path = _write_metadata(tmp_path / "s1.json", participants=[{"role": "therapist", "id": "../t-anna"}])
    with pytest.raises(MetadataError, match=r"^s1.json: participants\[0\].id must be 1–64 letters"):
        Sidecar.load(path)


def test_metadata_keeps_accepting_valid_ids(tmp_path):
    path = _write_metadata(tmp_path / "s1.json", session_id="s-0412", client_id="c_017", therapist_id="t.anna",
                           participants=[{"role": "therapist", "id": "t.anna"}, {"role": "client", "age": 9}])
    m = Sidecar.load(path)
    assert (m.session_id, m.client_id, m.therapist_id) == ("s-0412", "c_017", "t.anna")


@pytest.mark.parametrize("bad", BAD_IDS)
def test_analyze_session_refuses_a_bad_session_id_before_writing_anything(clinic, monkeypatch, bad):
    calls = fast_analysis(monkeypatch)
    before = files_under(clinic["root"])
    with pytest.raises(PipelineError, match="session_id must be 1–64 letters"):
        run_session(clinic["wav"], session_id=bad)
    assert calls["decode"] == []
    assert files_under(clinic["root"]) == before  # nothing written anywhere, data dir not even created


@pytest.mark.parametrize("bad", BAD_IDS)
def test_analyze_session_refuses_a_sidecar_with_a_bad_session_id(clinic, monkeypatch, bad):
    calls = fast_analysis(monkeypatch)
    meta = _write_metadata(clinic["root"] / "rec.wav.json", session_id=bad, client_id="c-017")
    before = files_under(clinic["root"])
    with pytest.raises(MetadataError, match="rec.wav.json: 'session_id' must be"):
        run_session(clinic["wav"], metadata_path=str(meta))
    assert calls["decode"] == [] and files_under(clinic["root"]) == before


@pytest.mark.slow  # the whole flow with Prefect's temporary server: about 40 s
def test_default_session_id_from_a_file_name_with_spaces(clinic, monkeypatch):
    fast_analysis(monkeypatch)
    wav = silent_wav(clinic["root"] / "sessie 3.wav")
    report = run_session(wav, language="nl")
    assert report == str(clinic["data"] / "sessions" / "sessie-3" / "report.html")
    assert json.loads((clinic["data"] / "sessions" / "sessie-3" / "session.json").read_text())["session_id"] == \
        "sessie-3"


@pytest.fixture()
def no_flow(monkeypatch):
    """Replace the flow the CLI calls, so a test sees whether the command got that far."""
    import flows.analyze as analyze_module

    started: list[dict] = []
    monkeypatch.setattr(analyze_module, "analyze_session", lambda *a, **k: started.append(k) or "never")
    return started


@pytest.mark.parametrize("bad", BAD_IDS)
def test_cli_refuses_a_bad_session_id_in_one_line(clinic, no_flow, bad):
    result = runner.invoke(app, ["analyze", str(clinic["wav"]), "--session-id", bad])
    assert result.exit_code == 2, result.output
    assert result.output == (f"error: --session-id must be 1–64 letters, digits, '.', '_' or '-', starting with a "
                             f"letter or digit. Got {bad!r} instead.\n")
    assert no_flow == [] and not (clinic["data"] / "sessions").exists()
    assert not any(p.name in ("session.json", "report.html") for p in clinic["root"].rglob("*"))


@pytest.mark.parametrize("bad", ["../t-anna", "a/b", ".."])
def test_cli_refuses_a_bad_therapist_id_in_one_line(clinic, no_flow, bad):
    result = runner.invoke(app, ["analyze", str(clinic["wav"]), "--therapist", bad])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: --therapist must be 1–64 letters") and result.output.count("\n") == 1
    assert no_flow == []


def test_cli_metadata_given_a_folder_is_one_line(clinic, no_flow):
    folder = clinic["root"] / "meta"
    folder.mkdir()
    result = runner.invoke(app, ["analyze", str(clinic["wav"]), "--metadata", str(folder)])
    assert result.exit_code == 1, result.output
    assert result.output == "error: meta: is a folder, not a metadata file; give the session's JSON file\n"
    assert no_flow == []


def test_unreadable_metadata_file_is_one_line(tmp_path, monkeypatch):
    from pathlib import Path

    path = _write_metadata(tmp_path / "s1.json", session_id="s-1")
    real = Path.open

    def locked(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", locked)  # root reads any file, so chmod 000 proves nothing here
    with pytest.raises(MetadataError, match=r"^s1.json: cannot be read \(Permission denied\)$"):
        Sidecar.load(path)
