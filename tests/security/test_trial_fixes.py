"""Findings of the fresh-user trial of issue 14 that concern set-up and the CLI (one test each, written first)."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _demo_args() -> list[str]:
    recipe = ROOT.joinpath("Makefile").read_text().split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    line = next(ln for ln in recipe.splitlines() if "alliance analyze" in ln)
    return shlex.split(line.split("alliance", 1)[1])


def test_make_demo_writes_where_the_analysis_accepts(tmp_path):
    """`make demo` must not ask for an output folder that the analysis refuses (it did: alliance-data/demo)."""
    from flows.analyze import _session_folder
    from pipeline.ids import id_from_name
    from pipeline.settings import Settings

    args = _demo_args()
    settings = Settings().model_copy(update={"data_dir": tmp_path / "alliance-data"})
    out = str(tmp_path / args[args.index("--out") + 1]) if "--out" in args else None
    sid = args[args.index("--session-id") + 1] if "--session-id" in args else id_from_name(Path(args[1]).stem)
    assert _session_folder(settings, sid, out).is_dir()


def test_prefect_waits_long_enough_for_its_temporary_server_on_a_busy_machine():
    """Prefect's default (20 s) ended `make demo` in a traceback on a loaded 2-core machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_SERVER_EPHEMERAL")}
    code = ("import flows; from prefect.settings import get_current_settings as g; "
            "print(g().server.ephemeral.startup_timeout_seconds)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert int(out.stdout.strip()) >= 120


def test_prefect_home_in_the_data_dir_is_private(tmp_path):
    env = {**os.environ, "ALLIANCE_DATA_DIR": str(tmp_path / "d")}
    env.pop("PREFECT_HOME", None)
    subprocess.run([sys.executable, "-c", "import os; os.umask(0o022); import flows.nightly"], env=env, cwd=ROOT, check=True)
    assert stat.S_IMODE((tmp_path / "d" / "prefect").stat().st_mode) == 0o700


def test_the_web_app_does_not_trust_forwarded_addresses():
    """Trusting proxy headers let X-Forwarded-For get around the per-address lockout and fake the audited address."""
    source = "\n".join(p.read_text() for p in ROOT.joinpath("flows").rglob("*.py"))
    configs = re.findall(r"uvicorn\.Config\((.*?)\)", source, flags=re.S)
    assert configs and all("proxy_headers=False" in c for c in configs)


def _analysed(data: Path, sid: str, client: str, sha: str):
    import json

    from flows.store import Store
    from pipeline.settings import Settings

    folder = data / "sessions" / sid
    folder.mkdir(parents=True)
    (folder / "session.json").write_text(json.dumps({"session_id": sid, "client_id": client}))
    Store.for_settings(Settings()).save_session(session_id=sid, client_id=client, status="analysed",
                                                recording_name=f"{sid}.wav", recording_sha256=sha, out_dir=str(folder))
    return folder


def test_analyze_never_replaces_another_recordings_session(tmp_path, monkeypatch):
    """Trial: `alliance analyze other.wav --session-id s-009` rewrote client c-009's nightly outputs, and
    `--out sessions/s-005 --session-id s-081` replaced c-005's report."""
    from typer.testing import CliRunner

    import flows.analyze
    from flows.cli import app

    data = tmp_path / "data"
    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(data))
    called = []
    monkeypatch.setattr(flows.analyze, "analyze_session", lambda *a, **k: called.append(a))
    s009 = _analysed(data, "s-009", "c-009", "a" * 64)
    s005 = _analysed(data, "s-005", "c-005", "b" * 64)
    before = (s009 / "session.json").read_text(), (s005 / "session.json").read_text()
    sample = ROOT / "sample_audio" / "sample.wav"
    runner = CliRunner()
    first = runner.invoke(app, ["analyze", str(sample), "--session-id", "s-009"])
    assert first.exit_code == 1, first.output
    assert "session id 's-009' is already used for another recording" in first.output
    second = runner.invoke(app, ["analyze", str(sample), "--session-id", "s-081", "--out", str(s005)])
    assert second.exit_code == 1, second.output
    assert "holds the results of session 's-005'" in second.output
    assert called == []
    assert ((s009 / "session.json").read_text(), (s005 / "session.json").read_text()) == before


def test_analyze_never_replaces_the_direct_results_of_another_recording(tmp_path, monkeypatch):
    """Trial: `alliance analyze one_sec.wav --session-id demo` replaced the demo's results of sample.wav (direct
    analyses have no database row); analysing the same recording again still replaces its own results."""
    from typer.testing import CliRunner

    import flows.analyze
    from flows.cli import app

    data = tmp_path / "data"
    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(data))
    called = []
    monkeypatch.setattr(flows.analyze, "analyze_session", lambda *a, **k: called.append(a))
    folder = data / "sessions" / "demo"
    folder.mkdir(parents=True)
    (folder / "session.json").write_text(json.dumps({"session_id": "demo", "client_id": None,
                                                     "recording": {"path": "sample_audio/sample.wav"}}))
    other = tmp_path / "one_sec.wav"
    other.write_bytes((ROOT / "sample_audio" / "sample.wav").read_bytes())
    runner = CliRunner()
    refused = runner.invoke(app, ["analyze", str(other), "--session-id", "demo"])
    assert refused.exit_code == 1, refused.output
    assert "holds the results of session 'demo' from another recording (sample.wav)" in " ".join(refused.output.split())
    assert called == []
    again = runner.invoke(app, ["analyze", str(ROOT / "sample_audio" / "sample.wav"), "--session-id", "demo"])
    assert again.exit_code != 1 or "another recording" not in again.output, again.output
    assert len(called) == 1


def test_an_unusable_out_folder_is_refused_in_one_line_before_any_work(tmp_path, monkeypatch):
    """`alliance analyze --out /proc/x` or `--out <the data folder>` ended inside the flow with tracebacks."""
    from typer.testing import CliRunner

    from flows.cli import app
    from tests.conftest import SAMPLE_WAV

    data = tmp_path / "data"
    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(data))
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o500)
    theirs = tmp_path / "mine"
    theirs.mkdir()
    (theirs / "report.html").write_text("<p>my own report</p>")
    theirs.chmod(0o755)
    inbox_done = tmp_path / "inbox" / "done"  # 5 December trial: the results landed beside other clients' recordings
    inbox_done.mkdir(parents=True)
    (inbox_done / "s-1.wav").write_bytes(b"another client's recording")
    cases = [(Path("/proc/alliance-out"), "cannot write there"), (data, "is the service's data folder"),
             (inbox_done, "holds recordings (s-1.wav)"),
             (tmp_path, "is the service's data folder or holds it"),
             (data / "sessions", "is a folder in the service's data folder other than sessions/<session id>"),
             (theirs, "holds report.html but no session results")]
    if os.geteuid() != 0:  # root writes anywhere
        cases.append((read_only / "s", "cannot write there"))
    for out, message in cases:
        result = CliRunner().invoke(app, ["analyze", str(SAMPLE_WAV), "--out", str(out)])
        assert result.exit_code == 2, (out, result.output)
        text = " ".join(result.output.split())
        assert f"--out {out}" in text and message in text and "Traceback" not in result.output, (out, text)
    assert not (data / "sessions").exists()  # nothing was analysed
    assert (theirs / "report.html").read_text() == "<p>my own report</p>" and (theirs.stat().st_mode & 0o777) == 0o755


def test_checking_a_new_out_folder_leaves_nothing_behind(tmp_path):
    """5 December trial: `alliance analyze --out NEW/sub` refused later (a damaged model card) left the empty
    private folders NEW/sub, made by the check that the folder can be written; the flow, finding them already there,
    did not remove them. The check now removes what it made."""
    from flows.cli.analyze import _unusable_out

    new = tmp_path / "new" / "sub"
    assert _unusable_out(new, tmp_path / "data") is None
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    assert _unusable_out(kept, tmp_path / "data") is None and kept.is_dir()  # a folder the user had stays


def test_a_taken_session_id_made_from_the_file_name_says_so():
    """Trial, 5 December: `..wav` and `...wav` without a session_id both became session 'session', and the second
    was refused with "session id 'session' is already used", an id the clinic never gave."""
    from flows.nightly import id_taken_reason

    made = id_taken_reason("...wav", "session", from_file_name=True)
    assert "'session'" in made and "made from the file name" in made and "session_id" in made and "\n" not in made
    given = id_taken_reason("b.wav", "s-x", from_file_name=False)
    assert given.startswith("b.wav: session id 's-x' is already used for another recording")
    assert "file name" not in given


def test_export_reviews_prints_an_odd_output_path_on_one_line(tmp_path, monkeypatch):
    """Trial, 5 December: `export-reviews --out $'a\\nb'` printed the path over two lines (a forged second line)."""
    from typer.testing import CliRunner

    from flows.cli import app

    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "data").mkdir(mode=0o700)
    (tmp_path / "inbox").mkdir()
    out = tmp_path / "exp" / "a\nerror: forged"
    result = CliRunner().invoke(app, ["export-reviews", "--out", str(out), "--inbox", str(tmp_path / "inbox")])
    assert result.exit_code == 0, result.output
    assert not any(line.startswith("error: forged") for line in result.output.splitlines()), result.output


@pytest.mark.parametrize("where", ["/proc/alliance-export", "/dev/null/alliance-export"])
def test_export_reviews_refuses_an_output_folder_it_cannot_make_even_with_nothing_to_export(tmp_path, monkeypatch,
                                                                                            where):
    """Stop 42's note: `export-reviews --out /proc/x` said "Exported 0 reviewed sessions to /proc/x" when there was
    nothing to export; the folder cannot exist, so the next export (with sessions) would fail only then."""
    from typer.testing import CliRunner

    from flows.cli import app

    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "data").mkdir(mode=0o700)
    (tmp_path / "inbox").mkdir()
    result = CliRunner().invoke(app, ["export-reviews", "--out", where, "--inbox", str(tmp_path / "inbox")])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"error: --out {where}") and "Exported" not in result.output


def test_a_bad_lexicon_setting_is_a_bad_setting_named_with_its_path_exit_2(tmp_path, monkeypatch):
    """Trial (stop 43): ALLIANCE_FEATURES__LEXICON_PATH at a binary file gave 'error: rand.bin: not a valid TOML
    lexicon (...)', exit 1, naming neither the variable nor the full path, where every other model setting exits 2."""
    from typer.testing import CliRunner

    from flows.cli import app
    from tests.conftest import SAMPLE_WAV

    bad = tmp_path / "words" / "rand.bin"
    bad.parent.mkdir()
    bad.write_bytes(bytes(range(256)) * 4)
    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ALLIANCE_FEATURES__LEXICON_PATH", str(bad))
    result = CliRunner().invoke(app, ["analyze", str(SAMPLE_WAV), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert str(bad) in line and "ALLIANCE_FEATURES__LEXICON_PATH" in line
    assert not (tmp_path / "out").exists()


def test_audit_with_no_events_says_which_data_directory_it_read(tmp_path, monkeypatch):
    """Trial (stop 43): `alliance audit` run from another folder without ALLIANCE_DATA_DIR read a new, empty
    database and printed an empty table, with no hint that it was the wrong one."""
    from typer.testing import CliRunner

    from flows.cli import app

    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path / "elsewhere"))
    (tmp_path / "elsewhere").mkdir(mode=0o700)  # a data folder that does not exist is refused (test_config_errors)
    result = CliRunner().invoke(app, ["audit"])
    assert result.exit_code == 0, result.output
    note = [line for line in result.stderr.splitlines() if "no audit events" in line]
    assert len(note) == 1 and str(tmp_path / "elsewhere") in note[0] and "ALLIANCE_DATA_DIR" in note[0]


@pytest.mark.parametrize("kind", ["fifo", "device", "huge", "line break", "not a language"])
def test_word_lists_a_setting_points_at_are_refused_in_one_line_without_hanging(tmp_path, kind):
    """Second trial (stop 43): ALLIANCE_FEATURES__LEXICON_PATH at a pipe or /dev/zero hung `analyze` (read for ever);
    a path with a line break printed two lines; a lexicon of one table '[withdrawal]' was taken for word lists."""
    import threading

    from flows.analyze import check_lexicon
    from pipeline.errors import BackendUnavailableError
    from pipeline.settings import Settings

    path = tmp_path / "woorden.toml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path = Path("/dev/zero")
    elif kind == "huge":
        path.write_text("[nl]\nnegations = [" + ", ".join(['"niet"'] * 400_000) + "]\n")
    elif kind == "line break":
        path = tmp_path / "bad\nline.toml"
        path.write_text("")
    else:
        path.write_text('[withdrawal]\nnegations = ["niet"]\n')
    settings = Settings(data_dir=tmp_path / "data", features={"lexicon_path": str(path)})
    raised = []
    worker = threading.Thread(target=lambda: raised.append(_raised(check_lexicon, settings)), daemon=True)
    worker.start()
    worker.join(20)
    assert raised, "check_lexicon did not return within 20 s"
    assert isinstance(raised[0], BackendUnavailableError), raised
    message = str(raised[0])
    assert "\n" not in message and "ALLIANCE_FEATURES__LEXICON_PATH" in message


def _raised(fn, *args):
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - the test looks at what was raised
        return exc
    return None


def test_export_reviews_refuses_an_inbox_that_does_not_exist(tmp_path, monkeypatch):
    """Second trial (stop 43): `export-reviews --inbox /nonexist` said "Exported 0 reviewed sessions" and made the
    output folder: a mistyped inbox looked like nothing to export."""
    from typer.testing import CliRunner

    from flows.cli import app

    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "data").mkdir(mode=0o700)
    result = CliRunner().invoke(app, ["export-reviews", "--out", str(tmp_path / "out"), "--inbox",
                                      str(tmp_path / "nonexist")])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert "nonexist" in line and "not found" in line and not (tmp_path / "out").exists()
    (tmp_path / "inbox").mkdir()  # third trial: an inbox whose done/ is a file said "Exported 0"
    (tmp_path / "inbox" / "done").write_text("not a folder")
    result = CliRunner().invoke(app, ["export-reviews", "--out", str(tmp_path / "out"), "--inbox",
                                      str(tmp_path / "inbox")])
    assert result.exit_code == 2 and "done" in result.output and not (tmp_path / "out").exists(), result.output


@pytest.mark.parametrize("command", ["evaluate", "retrain"])
def test_a_bad_word_list_setting_stops_evaluate_and_retrain_once_not_at_every_session(tmp_path, monkeypatch,
                                                                                       command):
    """Third trial (stop 43): with ALLIANCE_FEATURES__LEXICON_PATH at a pipe, `evaluate --data` set aside every session
    in turn for it, without naming the variable."""
    from typer.testing import CliRunner

    from flows.cli import app

    os.mkfifo(tmp_path / "woorden.toml")
    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ALLIANCE_FEATURES__LEXICON_PATH", str(tmp_path / "woorden.toml"))
    (tmp_path / "ds").mkdir()
    args = ["--data", str(tmp_path / "ds")] + (["--version", "v-x"] if command == "retrain" else [])
    result = CliRunner().invoke(app, [command, *args])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert "ALLIANCE_FEATURES__LEXICON_PATH" in line and "set aside" not in line
