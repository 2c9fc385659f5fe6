"""Dataset folders: a session without its recording, and held-out sessions that are also training sessions, are
refused before any analysis, naming them (fresh-user trial, issue 15)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from models.dataset import discover_sessions
from pipeline.errors import InputError


def _session(folder, client="c-1", recording=True):
    folder.mkdir(parents=True)
    if recording:  # each session its own content: one recording under two sessions is refused
        level = (sum(folder.name.encode()) % 97 + 1) / 1000
        sf.write(folder / "recording.wav", np.full(16000, level, dtype=np.float32), 16000)
    (folder / "metadata.json").write_text(json.dumps({
        "session_id": folder.name, "client_id": client, "language": "nl",
        "consent": {"analysis": True, "research_use": True}}), encoding="utf-8")
    (folder / "ruptures.csv").write_text("start_s,end_s,label\n", encoding="utf-8")


def test_a_session_folder_without_its_recording_is_refused_not_skipped(tmp_path):
    _session(tmp_path / "ds" / "s1")
    _session(tmp_path / "ds" / "s2", recording=False)
    with pytest.raises(InputError, match="s2: no recording"):
        discover_sessions(tmp_path / "ds")
    (tmp_path / "ds" / "cache").mkdir()  # a folder without session files is still passed over
    shutil.rmtree(tmp_path / "ds" / "s2")
    assert [s.session_id for s in discover_sessions(tmp_path / "ds")] == ["s1"]


def test_held_out_sessions_that_are_also_training_sessions_are_refused(tmp_path):
    from models.training import check_holdout_apart

    _session(tmp_path / "train" / "s1")
    _session(tmp_path / "train" / "s2", client="c-2")
    _session(tmp_path / "held" / "s3", client="c-3")
    check_holdout_apart([tmp_path / "train"], [tmp_path / "held"])  # apart: fine
    with pytest.raises(InputError, match="held-out sessions are also training sessions: s1, s2"):
        check_holdout_apart([tmp_path / "train"], [tmp_path / "held", tmp_path / "train"])


def test_errors_in_a_sessions_generic_files_name_the_session(tmp_path):
    # every session has a metadata.json and a ruptures.csv: the message names the session folder too
    _session(tmp_path / "ds" / "s1")
    _session(tmp_path / "ds" / "s7")
    (tmp_path / "ds" / "s7" / "metadata.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match=r"^s7/metadata.json: "):
        discover_sessions(tmp_path / "ds")
    assert str(InputError(tmp_path / "x" / "call.wav", "file is empty")) == "call.wav: file is empty"


def test_assembled_rupture_free_sessions_are_a_dataset_of_their_own_generator(tmp_path):
    """Issue 15: rupture-free sessions of the real clips, for training (models/ship.py trains on them)."""
    from models.dataset import discover_sessions
    from models.real_clips import ASSEMBLED, assembled_sessions
    from models.transfer import session_generator
    from pipeline.annotations import read_annotations
    from pipeline.audio import decode

    mixes = ((("nl",), "nl"), (("children", "meeting"), "en"))
    folders = assembled_sessions(tmp_path / "a", mixes=mixes, seed=100, minutes=(0.3, 0.4))
    found = discover_sessions(tmp_path / "a")
    assert [s.folder for s in found] == folders and [s.language for s in found] == ["nl", "en"]
    assert len({s.client_id for s in found}) == 2
    for s in found:
        assert session_generator(s.metadata) == ASSEMBLED
        assert read_annotations(s.annotations, duration_s=60.0) == ()  # every window: no rupture
        assert 18.0 <= decode(s.recording).duration_s <= 40.0
    before = [(f / "recording.wav").read_bytes() for f in folders]
    again = assembled_sessions(tmp_path / "a", mixes=mixes, seed=100, minutes=(0.3, 0.4))
    assert again == folders and [(f / "recording.wav").read_bytes() for f in folders] == before
    assert before[0] != before[1]


def test_the_pool_kinds_share_no_clip_with_the_kinds_the_false_alarm_recordings_are_built_from():
    """The rupture-free training sessions (models/ship.py) draw from pool-nl and pool-en only, so the false alarms
    measured on recordings of the other kinds come from speech the model never heard."""
    import hashlib

    from models.real_clips import load_clips
    from models.ship import ASSEMBLED_MIXES, FALSE_ALARM_SETS

    def digests(kinds):
        return {hashlib.sha256(c.samples.tobytes()).hexdigest() for k in kinds for c in load_clips(k)}

    pool = digests(("pool-nl", "pool-en"))
    assert len(pool) == 22
    assert not pool & digests(("en", "children", "nl", "meeting"))
    used = {k for kinds, _ in ASSEMBLED_MIXES for k in kinds}
    assert used <= {"pool-nl", "pool-en"} and not used & {k for kinds, _ in FALSE_ALARM_SETS.values() for k in kinds}


def test_recordings_that_are_pipes_or_devices_and_linked_session_folders_are_refused_in_one_line(tmp_path):
    """Trial, 5 December: a recording.wav that was a pipe, or a link to /dev/zero, hung `evaluate` and `retrain`
    (the duplicate check read it for ever); a session folder linking to another dataset's session was trained on,
    and one linking to a whole dataset was passed over without a word; a metadata.json that was a folder was
    "missing"; the same recording in two sessions named only "recording.wav"."""
    import os

    from models.training import load_dataset
    from pipeline.settings import Settings

    ds = tmp_path / "ds"
    _session(ds / "s1")
    _session(tmp_path / "other" / "s9", client="c-9")
    os.symlink(tmp_path / "other" / "s9", ds / "s2")
    with pytest.raises(InputError, match=r"^s2: is a link to another folder"):
        discover_sessions(ds)
    os.unlink(ds / "s2")
    os.symlink(tmp_path / "other", ds / "s3")
    with pytest.raises(InputError, match=r"^s3: is a link to another folder"):
        discover_sessions(ds)
    os.unlink(ds / "s3")
    _session(ds / "s4", recording=False)
    os.symlink("/dev/zero", ds / "s4" / "recording.wav")
    with pytest.raises(InputError, match=r"^s4: recording.wav is a link"):  # any link is refused (stop 43 trial)
        discover_sessions(ds)
    os.unlink(ds / "s4" / "recording.wav")
    os.mkfifo(ds / "s4" / "recording.wav")
    with pytest.raises(InputError, match=r"^s4/recording.wav: is a device, a pipe or a socket, not a recording"):
        discover_sessions(ds)
    os.unlink(ds / "s4" / "recording.wav")
    shutil.copyfile(ds / "s1" / "recording.wav", ds / "s4" / "recording.wav")
    (ds / "s4" / "metadata.json").unlink()
    (ds / "s4" / "metadata.json").mkdir()
    with pytest.raises(InputError, match=r"^s4/metadata.json: is a folder, not a metadata file"):
        discover_sessions(ds)
    (ds / "s4" / "metadata.json").rmdir()
    (ds / "s4" / "metadata.json").write_text(json.dumps({
        "session_id": "s4", "client_id": "c-1", "language": "nl", "consent": {"analysis": True, "research_use": True}}))
    with pytest.raises(InputError, match=r"^s4/recording.wav: session s4 has the same recording as session s1"):
        load_dataset([ds], Settings(data_dir=tmp_path / "data"))


def test_a_held_out_recording_that_is_also_a_training_recording_is_refused_by_content(tmp_path):
    """Trial, 5 December: the same recording under another session id in --data and --holdout was not refused (only
    ids were compared), so the card's held-out figures could score a recording the model trained on."""
    from models.training import check_holdout_apart

    _session(tmp_path / "train" / "s1")
    _session(tmp_path / "held" / "s9", client="c-9")
    shutil.copyfile(tmp_path / "train" / "s1" / "recording.wav", tmp_path / "held" / "s9" / "recording.wav")
    with pytest.raises(InputError, match=r"held-out session s9 has the same recording as training session s1"):
        check_holdout_apart([tmp_path / "train"], [tmp_path / "held"])
    sf.write(tmp_path / "held" / "s9" / "recording.wav", np.full(16000, 0.2, dtype=np.float32), 16000)
    check_holdout_apart([tmp_path / "train"], [tmp_path / "held"])  # other content: fine


def test_a_bad_session_is_set_aside_in_one_line_and_the_rest_of_the_dataset_is_kept(tmp_path):
    """The guide: bad input never stops the rest of a batch. Asked to (``set_aside``), discovery keeps every usable
    session and names each one it leaves out, with why, in one line; a session without research consent is among
    them (its recording is never read)."""
    import os

    ds = tmp_path / "ds"
    _session(ds / "a-fine")
    _session(ds / "b-no-meta")
    (ds / "b-no-meta" / "metadata.json").unlink()
    _session(ds / "c-refused", client="c-3")
    (ds / "c-refused" / "metadata.json").write_text(json.dumps({
        "session_id": "c-refused", "client_id": "c-3", "language": "nl",
        "consent": {"analysis": True, "research_use": False}}), encoding="utf-8")
    _session(ds / "d-two-notes", client="c-4")
    (ds / "d-two-notes" / "extra.TextGrid").write_text("", encoding="utf-8")
    _session(tmp_path / "other" / "s9", client="c-9")
    os.symlink(tmp_path / "other" / "s9", ds / "e-link")
    _session(ds / "f-fine", client="c-6")
    _session(ds / "g-same-id", client="c-7")
    (ds / "g-same-id" / "metadata.json").write_text(json.dumps({
        "session_id": "a-fine", "client_id": "c-7", "language": "nl", "simulated": {"seed": 7}}), encoding="utf-8")
    aside: list = []
    found = discover_sessions(ds, set_aside=aside)
    assert [s.session_id for s in found] == ["f-fine"]  # a-fine's id is g-same-id's too: which is which is unknown
    why = {a["session"]: a["why"] for a in aside}
    assert set(why) == {"a-fine", "b-no-meta", "c-refused", "d-two-notes", "e-link", "g-same-id"}
    assert all("\n" not in w and str(ds) not in w for w in why.values())
    assert "missing metadata.json" in why["b-no-meta"] and "research use" in why["c-refused"]
    assert "link" in why["e-link"] and "found 2" in why["d-two-notes"] and "a-fine" in why["g-same-id"]
    assert "g-same-id" in why["a-fine"]
    assert {a["folder"] for a in aside} == {str(ds)}
    with pytest.raises(InputError):  # without the list: the first problem refuses the dataset, as before
        discover_sessions(ds)
    shutil.rmtree(ds / "a-fine")
    shutil.rmtree(ds / "f-fine")
    shutil.rmtree(ds / "g-same-id")
    aside = []  # nothing usable at all: an empty list, each reason in `set_aside` (the caller decides)
    assert discover_sessions(ds, set_aside=aside) == [] and len(aside) == 4, aside


def test_loading_a_dataset_sets_aside_unreadable_copied_or_badly_annotated_sessions(tmp_path, monkeypatch):
    from models import dataset
    from models.training import load_dataset
    from pipeline.settings import Settings
    from tests.test_training import _fake_session_features

    ds = tmp_path / "ds"
    for name in ("a-fine", "b-broken", "c-copy", "d-bad-notes", "e-refused", "f-fails", "g-orig"):
        _session(ds / name, client=f"c-{name}")
    sf.write(ds / "a-fine" / "recording.wav", np.full(16000 * 60, 0.01, dtype=np.float32), 16000)
    sf.write(ds / "f-fails" / "recording.wav", np.full(16000 * 60, 0.02, dtype=np.float32), 16000)
    (ds / "a-fine" / "ruptures.csv").write_text("start_s,end_s,label\n5,25,withdrawal\n", encoding="utf-8")
    (ds / "b-broken" / "recording.wav").write_bytes(b"RIFF, but no audio")
    sf.write(ds / "g-orig" / "recording.wav", np.full(16000 * 60, 0.03, dtype=np.float32), 16000)
    shutil.copyfile(ds / "g-orig" / "recording.wav", ds / "c-copy" / "recording.wav")
    (ds / "d-bad-notes" / "ruptures.csv").write_text("start_s,end_s,label\n5,2,withdrawal\n", encoding="utf-8")
    meta = json.loads((ds / "e-refused" / "metadata.json").read_text())
    (ds / "e-refused" / "metadata.json").write_text(json.dumps({**meta, "consent": {"analysis": True}}))
    analysed = []

    def features(session, settings, *, backends=None):
        analysed.append(session.session_id)
        if session.session_id == "f-fails":
            raise InputError(session.recording, "no speech found")
        return _fake_session_features(session, settings)

    monkeypatch.setattr(dataset, "session_features", features)
    aside: list = []
    lines: list = []
    data = load_dataset([ds], Settings(data_dir=tmp_path / "data"), progress=lines.append, set_aside=aside)
    assert data["n_sessions"] == 1 and set(data["sessions"]) == {"a-fine"} and analysed == ["a-fine", "f-fails"]
    why = {a["session"]: a["why"] for a in aside}
    assert set(why) == {"b-broken", "c-copy", "d-bad-notes", "e-refused", "f-fails", "g-orig"}
    assert "same recording as session g-orig" in why["c-copy"] and "same recording as session c-copy" in why["g-orig"]
    assert "no speech found" in why["f-fails"]
    assert data["skipped"] == aside
    for name in why:  # each said once, in one line, as it happened
        assert sum(line.startswith(f"set aside {name}: ") for line in lines) == 1, (name, lines)
    with pytest.raises(InputError):  # the researcher's --strict: the first problem stops the run, as before
        load_dataset([ds], Settings(data_dir=tmp_path / "data"), progress=lines.append)
    for name in ("a-fine", "c-copy", "f-fails", "g-orig"):
        shutil.rmtree(ds / name)
    with pytest.raises(InputError, match="no session of the dataset could be used"):
        load_dataset([ds], Settings(data_dir=tmp_path / "data"), progress=lines.append, set_aside=[])


def _meta(folder, **changes):
    path = folder / "metadata.json"
    meta = {**json.loads(path.read_text()), **changes}
    path.write_text(json.dumps({k: v for k, v in meta.items() if v is not None}), encoding="utf-8")


def test_trial_real_sessions_without_consent_copies_of_refused_recordings_and_links_are_set_aside(tmp_path,
                                                                                                   monkeypatch):
    """Fresh-user trial, 5 December (stop 43):
    - a real session (no ``simulated`` record) without a consent record was trained on; so was a copy of a
      recording whose own session refused research use (the copy check only compared the kept sessions);
    - a consent record with a field the inbox refuses (``"withdrawn": true``) was trained on;
    - a ``recording.wav`` that linked to another client's inbox file was analysed;
    - a complete session in a hidden folder was passed over without a word;
    - two folders with one session id: the first by name was kept, the other set aside;
    - a copy was named a copy before its own broken annotations were read."""
    import os

    from models import dataset
    from models.training import load_dataset
    from pipeline.settings import Settings
    from tests.test_training import _fake_session_features

    ds = tmp_path / "ds"
    _session(ds / "a-fine")
    _session(ds / "b-real-no-consent", client="c-2")
    _meta(ds / "b-real-no-consent", consent=None)
    _session(ds / "c-refused", client="c-3")
    _meta(ds / "c-refused", consent={"analysis": True, "research_use": False})
    _session(ds / "d-copy-of-refused", client="c-4")
    _meta(ds / "d-copy-of-refused", consent=None, simulated={"seed": 1})  # a simulated session's metadata
    shutil.copyfile(ds / "c-refused" / "recording.wav", ds / "d-copy-of-refused" / "recording.wav")
    _session(ds / "e-withdrawn", client="c-5")
    _meta(ds / "e-withdrawn", consent={"analysis": True, "research_use": True, "withdrawn": True})
    _session(ds / "f-link", client="c-6")
    (tmp_path / "inbox").mkdir()
    sf.write(tmp_path / "inbox" / "bob.wav", np.full(16000, 0.3, dtype=np.float32), 16000)
    (ds / "f-link" / "recording.wav").unlink()
    os.symlink(tmp_path / "inbox" / "bob.wav", ds / "f-link" / "recording.wav")
    _session(ds / ".g-hidden", client="c-7")
    _session(ds / "h-same-id", client="c-8")
    _session(ds / "i-same-id", client="c-9")
    _meta(ds / "h-same-id", session_id="shared")
    _meta(ds / "i-same-id", session_id="shared")
    _session(ds / "j-bad-notes", client="c-10")
    (ds / "j-bad-notes" / "ruptures.csv").write_bytes(os.urandom(64))
    _session(ds / "k-copy-of-bad-notes", client="c-11")
    shutil.copyfile(ds / "j-bad-notes" / "recording.wav", ds / "k-copy-of-bad-notes" / "recording.wav")
    (ds / "k-copy-of-bad-notes" / "ruptures.csv").write_text("start_s,end_s,label\n0.1,0.5,joy\n")
    (ds / ".work-123").mkdir()  # a scratch folder without session files stays unnamed
    monkeypatch.setattr(dataset, "session_features", _fake_session_features)
    aside: list = []
    data = load_dataset([ds], Settings(data_dir=tmp_path / "data"), progress=lambda line: None, set_aside=aside)
    why = {a["session"]: a["why"] for a in aside}
    assert data["n_sessions"] == 1, aside  # a-fine (1 s: no window of 30 s, so no window in data["sessions"])
    assert set(why) == {"b-real-no-consent", "c-refused", "d-copy-of-refused", "e-withdrawn", "f-link", ".g-hidden",
                        "h-same-id", "i-same-id", "j-bad-notes", "k-copy-of-bad-notes"}
    assert "no consent record" in why["b-real-no-consent"]
    assert "c-refused" in why["d-copy-of-refused"] and "same recording" in why["d-copy-of-refused"]
    assert "withdrawn" in why["e-withdrawn"]
    assert "link" in why["f-link"] and "bob" not in why["f-link"]
    assert "hidden" in why[".g-hidden"]
    assert "i-same-id" in why["h-same-id"] and "h-same-id" in why["i-same-id"]
    assert "ruptures.csv" in why["j-bad-notes"] and "joy" in why["k-copy-of-bad-notes"]
    assert all(str(ds) not in w for w in why.values())
    with pytest.raises(InputError, match=r"^\.g-hidden: "):  # --strict: the first problem, in folder order
        discover_sessions(ds)
    ds2 = tmp_path / "ds2"
    _session(ds2 / "a-fine")
    shutil.copytree(ds / "b-real-no-consent", ds2 / "b-real-no-consent")
    with pytest.raises(InputError, match=r"^b-real-no-consent: metadata.json: no consent record"):
        discover_sessions(ds2)  # a consent refusal starts with the folder's name, as every other problem


def test_a_session_folder_name_with_a_line_break_is_printed_on_one_line(tmp_path, monkeypatch):
    """Trial: a folder named 'x\\nset aside good1: FORGED' printed a forged second line in evaluate and retrain."""
    from models import dataset
    from models.training import format_card_figures, load_dataset
    from pipeline.settings import Settings
    from tests.test_training import _fake_session_features

    ds = tmp_path / "ds"
    _session(ds / "good1")
    _session(ds / "x\nset aside good1: FORGED", client="c-2")
    (ds / "x\nset aside good1: FORGED" / "ruptures.csv").write_text("start_s,end_s,label\n1,2,joy\n")
    _session(ds / "y\nFORGED", client="c-3")
    _meta(ds / "y\nFORGED", session_id=None)  # the folder name becomes the session id
    monkeypatch.setattr(dataset, "session_features", _fake_session_features)
    lines: list = []
    aside: list = []
    load_dataset([ds], Settings(data_dir=tmp_path / "data"), progress=lines.append, set_aside=aside)
    assert not any("\n" in line for line in lines), lines
    card = {"metrics": {"cross_validation": {"grouped_by": "client", "n_splits": 2, "types": {}}},
            "skipped_sessions": aside}
    text = format_card_figures(card)
    assert not any(line.startswith("set aside good1") or line.startswith("FORGED") for line in text.splitlines())


def test_consent_is_read_before_any_other_folder_check_so_a_copy_of_a_refused_recording_never_passes(tmp_path,
                                                                                                    monkeypatch):
    """Second trial (stop 43): a refused real session that also lacked its annotation file was set aside for the
    annotations, so its recording never reached the copy check, and a simulated session holding the same recording
    was trained on. Nested sessions (one level down) were passed over silently."""
    from models import dataset
    from models.training import load_dataset
    from pipeline.settings import Settings
    from tests.test_training import _fake_session_features

    ds = tmp_path / "ds"
    _session(ds / "a-fine")
    _session(ds / "b-refused-no-notes", client="c-2")
    _meta(ds / "b-refused-no-notes", consent={"analysis": True, "research_use": False})
    (ds / "b-refused-no-notes" / "ruptures.csv").unlink()
    _session(ds / "c-copy", client="c-3")
    _meta(ds / "c-copy", consent=None, simulated={"seed": 3})
    shutil.copyfile(ds / "b-refused-no-notes" / "recording.wav", ds / "c-copy" / "recording.wav")
    _session(ds / "group" / "d-nested", client="c-4")
    monkeypatch.setattr(dataset, "session_features", _fake_session_features)
    aside: list = []
    data = load_dataset([ds], Settings(data_dir=tmp_path / "data"), progress=lambda line: None, set_aside=aside)
    why = {a["session"]: a["why"] for a in aside}
    assert data["n_sessions"] == 1 and set(why) == {"b-refused-no-notes", "c-copy", "group"}, why
    assert "research use" in why["b-refused-no-notes"] and "b-refused-no-notes" in why["c-copy"]
    assert "d-nested" in why["group"]
    with pytest.raises(InputError, match=r"^group: "):
        discover_sessions(ds / ".." / "ds")  # --strict: the nested session stops the run, named


def test_strict_errors_print_an_odd_folder_name_on_one_line(tmp_path, monkeypatch):
    """Second trial (stop 43): with --strict, a folder named 'evil\\nset aside ...\\x1b[31m...' printed a forged
    line and a terminal colour (the default mode escaped it)."""
    from typer.testing import CliRunner

    from flows.cli import app

    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path / "data"))
    evil = tmp_path / "ds" / "evil\nset aside s1: \x1b[31mfake\x1b[0m"
    _session(evil)
    (evil / "recording.wav").write_bytes(b"")
    (evil / "ruptures.csv").unlink()
    result = CliRunner().invoke(app, ["evaluate", "--data", str(tmp_path / "ds"), "--strict"])
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: evil\\nset aside") and "\x1b" not in line


def test_third_trial_every_refused_recording_bars_its_copies_wherever_both_lie(tmp_path, monkeypatch):
    """Third trial (stop 43): a copy of a refused recording was still used when the refused session's recording was a
    link, its folder hidden or one level down, its metadata.json a link, or when the refused session and the copy lay
    in --data and --holdout; a session sharing a refused session's id was used; a global setting's failure was blamed
    on each session in turn; a backslash in a folder name was doubled."""
    import os

    from models import dataset
    from models.training import load_dataset
    from pipeline.errors import BackendUnavailableError
    from pipeline.settings import Settings
    from tests.test_training import _fake_session_features

    refuse = {"analysis": True, "research_use": False}
    ds, held, store = tmp_path / "ds", tmp_path / "held", tmp_path / "store"
    store.mkdir()
    _session(ds / "a-fine")
    for name, where in (("r1", ds / "r1"), ("r2", ds / ".r2"), ("r3", ds / "outer" / "r3"), ("r4", ds / "r4"),
                        ("r7", held / "r7")):
        _session(where, client=f"c-{name}")
        _meta(where, consent=refuse)
        _session(ds / f"copy-{name}", client=f"c-copy-{name}")
        _meta(ds / f"copy-{name}", consent=None, simulated={"seed": 1})
        shutil.copyfile(where / "recording.wav", ds / f"copy-{name}" / "recording.wav")
    os.replace(ds / "r1" / "recording.wav", store / "r1.wav")
    os.symlink(store / "r1.wav", ds / "r1" / "recording.wav")
    os.replace(ds / "r4" / "metadata.json", store / "r4.json")
    os.symlink(store / "r4.json", ds / "r4" / "metadata.json")
    _session(ds / "r5", client="c-5")
    _meta(ds / "r5", consent=refuse, session_id="dup")
    _session(ds / "r6", client="c-6")
    _meta(ds / "r6", session_id="dup")
    _session(ds / "back\\slash", client="c-8")
    _meta(ds / "back\\slash", session_id="x\\y")  # not an id: set aside, named with one backslash
    monkeypatch.setattr(dataset, "session_features", _fake_session_features)
    aside: list = []
    lines: list = []
    data = load_dataset([ds], Settings(data_dir=tmp_path / "data"), progress=lines.append, set_aside=aside,
                        consent_dirs=[held])
    why = {a["session"]: a["why"] for a in aside}
    assert data["n_sessions"] == 1, why  # a-fine only
    for name in ("r1", "r2", "r3", "r4", "r7"):
        assert name in why[f"copy-{name}"] and "same recording" in why[f"copy-{name}"], (name, why)
    assert "r5" in why["r6"]
    assert any(line.startswith("set aside back\\slash: ") for line in lines), lines
    assert not any("\\" * 4 in line for line in lines), lines  # repr() doubles once; nothing doubles it again

    def broken(*args, **kwargs):
        raise BackendUnavailableError("woorden.toml: is not a regular file (ALLIANCE_FEATURES__LEXICON_PATH)")

    monkeypatch.setattr(dataset, "session_features", broken)
    with pytest.raises(BackendUnavailableError):  # a setting, not a session: the run stops, once
        load_dataset([ds], Settings(data_dir=tmp_path / "data"), progress=lambda line: None, set_aside=[])


def test_fourth_trial_unreadable_deep_or_linked_refusals_still_bar_their_copies_and_ids(tmp_path, monkeypatch):
    """Fourth trial (stop 43): a refused session whose metadata held a key twice or was not UTF-8, one two folders
    down, and one inside a linked folder, each let its copy through; so did a session taking the folder name of a
    refused session without a session_id as its id."""
    import os

    from models import dataset
    from models.training import load_dataset
    from pipeline.settings import Settings
    from tests.test_training import _fake_session_features

    refuse = {"analysis": True, "research_use": False}
    ds = tmp_path / "ds"
    _session(ds / "a-fine")
    places = {"twice": ds / "twice", "latin": ds / "latin", "deep": ds / "x" / "y" / "deep",
              "linked": tmp_path / "other" / "linked"}
    for name, where in places.items():
        _session(where, client=f"c-{name}")
        _meta(where, consent=refuse)
        _session(ds / f"copy-{name}", client=f"c-copy-{name}")
        _meta(ds / f"copy-{name}", consent=None, simulated={"seed": 1})
        shutil.copyfile(where / "recording.wav", ds / f"copy-{name}" / "recording.wav")
    text = (places["twice"] / "metadata.json").read_text()
    (places["twice"] / "metadata.json").write_text(text[:-1] + ', "language": "en"}')
    (places["latin"] / "metadata.json").write_bytes((places["latin"] / "metadata.json").read_bytes()[:-1]
                                                     + b', "note": "caf\\xe9"}'.replace(b"\\xe9", b"\xe9"))
    os.symlink(tmp_path / "other", ds / "link")
    _session(ds / "foo", client="c-foo")
    _meta(ds / "foo", consent=refuse, session_id=None)
    _session(ds / "bar", client="c-bar")
    _meta(ds / "bar", session_id="foo")
    monkeypatch.setattr(dataset, "session_features", _fake_session_features)
    aside: list = []
    data = load_dataset([ds], Settings(data_dir=tmp_path / "data"), progress=lambda line: None, set_aside=aside)
    why = {a["session"]: a["why"] for a in aside}
    assert data["n_sessions"] == 1, why  # a-fine
    for name in places:
        assert "same recording" in why[f"copy-{name}"], (name, why)
    assert "foo" in why["bar"]


def test_retrain_on_sessions_of_one_client_stops_before_any_analysis(tmp_path, monkeypatch):
    """Trial (stop 44): `simulate --sessions 2` then `retrain` analysed both sessions for 3 minutes, then said that
    grouped cross-validation needs sessions of at least 2 clients, which their metadata showed from the start."""
    import models.dataset
    import models.training as training
    from pipeline.settings import Settings

    def no_analysis(*args, **kwargs):
        raise AssertionError("the sessions were analysed")

    monkeypatch.setattr(models.dataset, "session_features", no_analysis)
    monkeypatch.setenv("ALLIANCE_DATA_DIR", str(tmp_path / "data"))
    _session(tmp_path / "ds" / "s1", client="sim-nl-3")
    _session(tmp_path / "ds" / "s2", client="sim-nl-3")
    with pytest.raises(InputError, match="at least 2 clients.*sim-nl-3"):
        training.train([tmp_path / "ds"], version="t-1", settings=Settings(), root=tmp_path / "models",
                       progress=lambda m: None)
