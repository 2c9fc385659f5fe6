"""Issue 14, severe 2: a dataset session whose metadata says research use was not given is never trained on.

The whole run is refused (not the session silently left out), so the researcher removes it. Metadata without
any consent record (simulated sessions, the shipped training data) keeps working.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import InputError

YES = {"analysis": True, "research_use": True, "given_by": ["parent"], "date": "2025-01-05"}
NO = {"analysis": True, "research_use": False, "given_by": ["parent"], "date": "2025-01-05"}


def _session(root: Path, name: str, consent: object = "absent") -> Path:
    """A dataset session folder: 1 s of silence, metadata.json (with ``consent`` unless absent), ruptures.csv."""
    from pipeline.audio import save_wav

    folder = root / name
    folder.mkdir(parents=True)
    samples = np.zeros(16000, dtype=np.float32)
    samples[0] = (sum(name.encode()) % 997 + 1) / 1000  # each session its own recording (copies are set aside)
    save_wav(folder / "recording.wav", samples, 16000)
    meta = {"session_id": name, "client_id": f"c-{name}", "language": "nl",
            "participants": [{"role": "therapist"}, {"role": "client", "age": 10}]}
    if consent != "absent":
        meta["consent"] = consent
    else:  # what the simulators write: no consent record, their own "simulated" one
        meta["simulated"] = {"seed": 1}
    (folder / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    (folder / "ruptures.csv").write_text("start_s,end_s,label,marker\n", encoding="utf-8")
    return folder


def test_sessions_with_research_consent_or_without_a_consent_record_are_accepted(tmp_path):
    from models.dataset import discover_sessions

    _session(tmp_path / "data", "exported", YES)
    _session(tmp_path / "data", "simulated")  # the simulator writes no consent record, but its own "simulated" one
    meta = json.loads((tmp_path / "data" / "simulated" / "metadata.json").read_text())
    (tmp_path / "data" / "simulated" / "metadata.json").write_text(json.dumps({**meta, "simulated": {"seed": 1}}))
    assert [s.session_id for s in discover_sessions(tmp_path / "data")] == ["exported", "simulated"]


@pytest.mark.parametrize("consent", [NO, {"analysis": True, "given_by": ["parent"]}, None, "yes",
                                     {"analysis": False, "research_use": True},
                                     {"research_use": True}])  # no analysis consent: accepted (5 December trial)
def test_a_session_without_research_consent_refuses_the_dataset(tmp_path, consent):
    from models.dataset import discover_sessions

    _session(tmp_path / "data", "a-fine")
    _session(tmp_path / "data", "b-refused", consent)
    with pytest.raises(InputError) as err:
        discover_sessions(tmp_path / "data")
    message = str(err.value)
    assert "\n" not in message and "b-refused" in message and "a-fine" not in message
    assert "consent" in message


def test_the_simulator_writes_metadata_the_consent_check_accepts():
    """What models/simulate.py writes: no consent key at all (simulated voices, no client)."""
    import inspect

    from models import simulate

    source = inspect.getsource(simulate)
    assert '"consent"' not in source and "'consent'" not in source


def test_retrain_sets_a_session_without_research_consent_aside_and_never_analyses_it(prefect_harness, tmp_path,
                                                                                    monkeypatch):
    """The guide: missing consent never stops the rest of a batch. The session is named, set aside, and its
    recording never analysed; the rest of the dataset is trained on (here the other session fails too, so nothing
    is left and the run says so)."""
    from typer.testing import CliRunner

    import models.dataset
    from flows.cli import app
    from pipeline.errors import InputError as Refused

    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path / "alliance-data"))
    analysed = []

    def features(s, settings, **kwargs):
        analysed.append(s.session_id)
        raise Refused(s.recording, "no speech found")

    monkeypatch.setattr(models.dataset, "session_features", features)
    _session(tmp_path / "data", "a-fine", YES)
    _session(tmp_path / "data", "b-refused", NO)
    _session(tmp_path / "data", "c-fine", YES)  # a second client: one alone is refused before any analysis
    r = CliRunner().invoke(app, ["retrain", "--data", str(tmp_path / "data"), "--version", "v-test"])
    assert analysed == ["a-fine", "c-fine"]  # the refused session's recording was never analysed
    assert r.exit_code == 1  # (Prefect's log handler may still hold an earlier test's closed output: not checked)
    text = " ".join(r.output.split())
    # each session's line goes to the flow's log (models.training.load_dataset, tested in test_dataset_folders.py);
    # Prefect's console handler may still write to an earlier test's closed output, so only the last line is read
    assert "no session of the dataset could be used (3 sessions were set aside" in text
    assert not (tmp_path / "alliance-data" / "models" / "v-test").exists()


def test_retrain_strict_refuses_the_run_in_one_line_before_any_analysis(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import models.dataset
    from flows.cli import app

    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path / "alliance-data"))
    analysed = []
    monkeypatch.setattr(models.dataset, "session_features", lambda s, settings: analysed.append(s) or 1 / 0)
    _session(tmp_path / "data", "a-fine", YES)
    _session(tmp_path / "data", "b-refused", NO)
    r = CliRunner().invoke(app, ["retrain", "--data", str(tmp_path / "data"), "--version", "v-test", "--strict"])
    assert r.exit_code == 1
    assert analysed == []  # nothing was analysed, so nothing was trained on
    (line,) = r.stderr.strip().splitlines()
    assert "b-refused" in line and "research" in line and "Traceback" not in r.output
    assert not (tmp_path / "alliance-data" / "models" / "v-test").exists()


def test_one_recording_under_two_sessions_refuses_the_dataset_before_any_analysis(tmp_path, monkeypatch):
    """5 December trial: the same recording under four session and client ids was trained and scored as four
    clients, so the cross-validation scored windows it had trained on (AUROC 1.000)."""
    from models import dataset
    from models.training import load_dataset
    from pipeline.settings import Settings

    _session(tmp_path / "data", "a-one")
    _session(tmp_path / "data", "b-other")
    shutil.copyfile(tmp_path / "data" / "a-one" / "recording.wav", tmp_path / "data" / "b-other" / "recording.wav")
    monkeypatch.setattr(dataset, "session_features", lambda *a, **k: pytest.fail("analysed"))
    with pytest.raises(InputError) as err:
        load_dataset([tmp_path / "data"], Settings(), progress=lambda line: None)
    message = str(err.value)
    assert "a-one" in message and "b-other" in message and "same recording" in message and "\n" not in message
