"""Issue 14: no raw tracebacks for bad configuration.

An unusable ``ALLIANCE_DATA_DIR`` (a file, a folder that cannot be created) or a bad ``ALLIANCE_DATABASE_URL``
stops every command that uses them with one line naming the setting and the problem, exit status 2. Run as
the clinic runs it: the installed ``alliance`` command in its own process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ALLIANCE = Path(sys.executable).with_name("alliance")


def _run(tmp_path: Path, args: list[str], **settings: str) -> subprocess.CompletedProcess:
    # the user's shell: no test-suite PREFECT_HOME, so Prefect's home follows the data directory as in use
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALLIANCE_", "PREFECT_"))}
    env.update({"ALLIANCE_DATA_DIR": str(tmp_path / "data"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "COLUMNS": "200", **settings})
    return subprocess.run([str(ALLIANCE), *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)


def _assert_one_line(r: subprocess.CompletedProcess, setting: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr[-2000:]
    assert setting in lines[0]


@pytest.fixture()
def a_file(tmp_path) -> Path:
    f = tmp_path / "not-a-folder"
    f.write_text("x")
    return f


@pytest.mark.parametrize("args", [["audit"], ["purge", "c-1"], ["nightly", "--inbox", "inbox"]])
def test_data_dir_that_is_a_file(tmp_path, a_file, args):
    (tmp_path / "inbox").mkdir()
    r = _run(tmp_path, args, ALLIANCE_DATA_DIR=str(a_file))
    _assert_one_line(r, "ALLIANCE_DATA_DIR")
    assert "not a folder" in r.stderr


def test_data_dir_that_cannot_be_created(tmp_path, a_file):
    r = _run(tmp_path, ["audit"], ALLIANCE_DATA_DIR=str(a_file / "data"))
    _assert_one_line(r, "ALLIANCE_DATA_DIR")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (a folder nobody can create in)")
def test_data_dir_whose_folder_cannot_be_made(tmp_path):
    r = _run(tmp_path, ["audit"], ALLIANCE_DATA_DIR="/proc/alliance-data")
    _assert_one_line(r, "ALLIANCE_DATA_DIR")


@pytest.mark.parametrize("url, args", [("nonsense://x", ["audit"]),
                                       ("nonsense://x", ["nightly", "--inbox", "inbox"]),
                                       ("sqlite:////nonexistent/dir/a.db", ["purge", "c-1"]),
                                       ("sqlite:////nonexistent/dir/a.db", ["nightly", "--inbox", "inbox"]),
                                       ("not a url", ["audit"])])
def test_database_url_that_cannot_be_used(tmp_path, url, args):
    (tmp_path / "inbox").mkdir()
    (tmp_path / "data").mkdir(mode=0o700)  # a missing one is refused first by `audit` and `purge`
    r = _run(tmp_path, args, ALLIANCE_DATABASE_URL=url)
    _assert_one_line(r, "ALLIANCE_DATABASE_URL")


def test_the_password_in_a_database_url_is_never_printed(tmp_path):
    (tmp_path / "data").mkdir(mode=0o700)
    r = _run(tmp_path, ["audit"], ALLIANCE_DATABASE_URL="nonsense://clinic:s3cret-pw@db.example/alliance")
    _assert_one_line(r, "ALLIANCE_DATABASE_URL")
    assert "s3cret-pw" not in r.stderr + r.stdout


SAMPLE = Path(__file__).resolve().parents[2] / "sample_audio" / "sample.wav"


@pytest.mark.parametrize("setting, value", [("ALLIANCE_ASR__COMPUTE_TYPE", "bogus"),  # failed after decoding, exit 1
                                            ("ALLIANCE_ASR__MAX_S_PER_AUDIO_MIN", "1e308"),  # accepted: no limit
                                            ("ALLIANCE_ASR__DECODERS", "1000"),  # accepted, silently 4
                                            ("ALLIANCE_ASR__BEST_OF", "1000000"),  # ran out of memory mid-run
                                            ("ALLIANCE_ASR__BEAM_SIZE", "500")])
def test_asr_settings_out_of_range_are_refused_before_any_work(tmp_path, setting, value):
    """Fresh-user trial of issue 19: each of these was accepted and failed late, or silently meant something else."""
    r = _run(tmp_path, ["analyze", str(SAMPLE)], **{setting: value})
    _assert_one_line(r, setting)
    assert not (tmp_path / "data" / "sessions").exists()


def test_a_recording_whose_file_name_is_not_utf8_is_refused_in_one_line(tmp_path):
    """It ended in a traceback from Prefect's client (fresh-user trial, 4 December)."""
    odd = os.path.join(os.fsencode(tmp_path), b"x\xff.wav")
    with open(odd, "wb") as f:
        f.write(SAMPLE.read_bytes())
    r = _run(tmp_path, ["analyze", os.fsdecode(odd)])
    _assert_one_line(r, "x\\udcff.wav")
    assert "not valid UTF-8" in r.stderr


def test_a_linked_done_folder_stops_the_nightly_command_in_one_line(tmp_path):
    """It ended in the flow's traceback (after the flow had started); nothing may be moved through the link."""
    inbox, elsewhere = tmp_path / "inbox", tmp_path / "elsewhere"
    inbox.mkdir()
    elsewhere.mkdir()
    (inbox / "done").symlink_to(elsewhere, target_is_directory=True)
    r = _run(tmp_path, ["nightly", "--inbox", str(inbox)])
    _assert_one_line(r, "done: is a link")
    assert list(elsewhere.iterdir()) == []


def test_help_writes_nothing_in_the_working_folder(tmp_path):
    """`alliance --help` in any folder made ./alliance-data/prefect there (4 December trial): Prefect's home is
    made only by a command that runs Prefect."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALLIANCE_", "PREFECT_"))}
    for args in (["--help"], ["analyze", "--help"], ["nightly", "--help"]):
        r = subprocess.run([str(ALLIANCE), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        assert list(tmp_path.iterdir()) == [], args


@pytest.mark.parametrize("name, value", [
    ("ALLIANCE_WEB", "notjson"), ("ALLIANCE_ASR", "{not json"), ("ALLIANCE_FEATURES", "x"),
    ("ALLIANCE_FEATURES__HOP_S", "1e-9"), ("ALLIANCE_FEATURES__WINDOW_S", "0.001"),
    ("ALLIANCE_DIARIZATION__HOP_S", "1e-9"), ("ALLIANCE_FEATURES__PITCH_HOP_S", "1e-7"),
])
def test_a_group_setting_that_is_not_json_or_a_hop_near_zero_is_one_line(tmp_path, name, value):
    """5 December trial: ALLIANCE_WEB=notjson printed a 137-line traceback; ALLIANCE_FEATURES__HOP_S=1e-9 was
    accepted and the analysis then asked for 224 GiB."""
    r = _run(tmp_path, ["audit"], **{name: value})
    _assert_one_line(r, name)


@pytest.mark.parametrize("args", [["audit"], ["purge", "c-1"], ["export-reviews", "--out", "exports"],
                                  ["web"], ["disable-therapist", "t-1"], ["remove-therapist", "t-1"]])
def test_a_command_that_only_reads_the_data_folder_refuses_a_missing_one_and_creates_nothing(tmp_path, args):
    """A mistyped ALLIANCE_DATA_DIR made a new, empty data folder, and `audit` said it had no events (stop 43):
    a command that only reads or removes what was recorded says that the folder does not exist instead."""
    missing = tmp_path / "alliance-dtaa"
    r = _run(tmp_path, args, ALLIANCE_DATA_DIR=str(missing))
    _assert_one_line(r, "ALLIANCE_DATA_DIR")
    assert str(missing) in r.stderr and "does not exist" in r.stderr
    assert not missing.exists() and not (tmp_path / "exports").exists()


@pytest.mark.parametrize("kind", ["symlink loop", "name too long"])
def test_a_data_folder_that_cannot_be_resolved_is_one_line_not_a_traceback(tmp_path, kind):
    """Trial (stop 44): a symlink loop or an over-long ALLIANCE_DATA_DIR gave a traceback from the package's import,
    before the setting was checked, in every command, `--help` included."""
    if kind == "symlink loop":
        (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
        (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
        value = str(tmp_path / "loop1")
    else:
        value = str(tmp_path / ("a" * 300))
    for args in (["audit"], ["add-therapist", "t-1", "--password", "a long pass phrase 42"]):
        r = _run(tmp_path, args, ALLIANCE_DATA_DIR=value)
        _assert_one_line(r, "ALLIANCE_DATA_DIR")
    r = _run(tmp_path, ["--help"], ALLIANCE_DATA_DIR=value)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]


@pytest.mark.parametrize("value", [" {d} ", "{d}\n", "{d} ", " ", "\n"])  # second trial: only spaces was taken as unset
def test_a_data_folder_with_spaces_or_a_line_break_at_its_ends_is_refused(tmp_path, value):
    """Trial (stop 44): ALLIANCE_DATA_DIR=" /x/ws " put the database in a folder named " " below the current folder
    and Prefect's records in /x/ws/prefect (one part of the code stripped the value, the other did not)."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    r = _run(tmp_path, ["add-therapist", "t-1", "--password", "a long pass phrase 42"],
             ALLIANCE_DATA_DIR=value.format(d=data))
    _assert_one_line(r, "ALLIANCE_DATA_DIR")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"] and list(data.iterdir()) == []


def test_a_mistyped_data_folder_is_refused_by_reading_commands_with_a_database_url_too(tmp_path):
    """Trial (stop 44): with ALLIANCE_DATABASE_URL set, `audit` made the mistyped data folder and read on."""
    missing = tmp_path / "nodir"
    db = tmp_path / "db"
    db.mkdir()
    for args in (["audit"], ["purge", "c-1"], ["remove-therapist", "t-1"]):
        r = _run(tmp_path, args, ALLIANCE_DATA_DIR=str(missing),
                 ALLIANCE_DATABASE_URL=f"sqlite:///{db / 'alliance.db'}")
        _assert_one_line(r, "ALLIANCE_DATA_DIR")
        assert not missing.exists()


def test_purge_with_a_missing_data_folder_says_that_nothing_was_purged(tmp_path):
    """Trial (stop 44): `purge c-034 --inbox DIR` with a mistyped data folder said there was "nothing recorded",
    while the inbox held the client's files."""
    (tmp_path / "inbox").mkdir()
    r = _run(tmp_path, ["purge", "c-034", "--inbox", str(tmp_path / "inbox")],
             ALLIANCE_DATA_DIR=str(tmp_path / "gone"))
    _assert_one_line(r, "ALLIANCE_DATA_DIR")
    assert "nothing was purged" in r.stderr and "nothing recorded" not in r.stderr


def test_a_data_folder_that_is_a_link_to_nothing_is_said_so(tmp_path):
    """Trial (stop 44): a dangling link as the data folder gave "cannot create the data folder ... (File exists)"."""
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")
    for args in (["audit"], ["add-therapist", "t-1", "--password", "a long pass phrase 42"]):
        r = _run(tmp_path, args, ALLIANCE_DATA_DIR=str(tmp_path / "dangling"))
        _assert_one_line(r, "ALLIANCE_DATA_DIR")
        assert "link" in r.stderr and "File exists" not in r.stderr
        assert not (tmp_path / "missing").exists()


def test_web_refuses_an_inbox_that_does_not_exist(tmp_path):
    """Trial (stop 44): `alliance web --inbox /does/not/exist` started serving without a word (export-reviews
    refuses the same inbox)."""
    (tmp_path / "data").mkdir(mode=0o700)
    r = _run(tmp_path, ["web", "--inbox", str(tmp_path / "nowhere"), "--port", "18765"])
    assert r.returncode == 2 and "nowhere" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_audit_without_events_names_the_database_url_it_read(tmp_path):
    """Trial (stop 44): with ALLIANCE_DATABASE_URL set, `audit`'s note named the data folder as the place it read."""
    (tmp_path / "data").mkdir(mode=0o700)
    r = _run(tmp_path, ["audit"], ALLIANCE_DATABASE_URL=f"sqlite:///{tmp_path / 'elsewhere.db'}")
    assert r.returncode == 0, r.stderr
    (note,) = r.stderr.strip().splitlines()
    assert "ALLIANCE_DATABASE_URL" in note and "elsewhere.db" in note and "ALLIANCE_DATA_DIR" not in note
