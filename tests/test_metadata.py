"""Session metadata: valid files and clear errors naming the file."""

from __future__ import annotations

import json

import pytest

from pipeline.errors import MetadataError
from pipeline.sidecar import Sidecar


def _write(tmp_path, obj, name="s1.json"):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_valid_metadata(tmp_path):
    m = Sidecar.load(_write(tmp_path, {"session_id": "s-1", "language": "nl",
                                       "participants": [{"role": "therapist"}, {"role": "client", "age": 9},
                                                        {"role": "parent"}],
                                       "speaker_roles": {"SPEAKER_01": "client"}}))
    assert m.num_speakers == 3 and m.language == "nl" and m.speaker_roles == {"SPEAKER_01": "client"}


@pytest.mark.parametrize("obj, message", [
    ("{not json", "not valid JSON"),
    ([1, 2], "expected a JSON object"),
    ({"language": "fr"}, "'language' must be one of nl, en, auto"),
    ({"participants": [{"role": "uncle"}]}, r"participants\[0\].role must be one of"),
    ({"speaker_roles": {"SPEAKER_00": "doctor"}}, "'speaker_roles' must map"),
    ({"session_id": "../../etc"}, "'session_id' must be 1–64 letters, digits, '.', '_' or '-'"),
    ({"therapist_id": "t-a", "participants": [{"role": "therapist", "id": "t-b"}]}, "'therapist_id' 't-a' is not"),
    ({"participants": [{"role": "client", "age": "seven"}]}, r"participants\[0\].age must be a number"),
    ({"participants": [{"role": "client", "age": True}]}, r"participants\[0\].age must be a number of years; found true"),
    # 5 December trial: a date written as a number was stored as "20261128"; a name written as a number was
    # accepted, and names are what the transcript's redaction looks for
    ({"participants": [{"role": "client", "name": 5}]}, r"participants\[0\].name must be text; found 5"),
    ({"participants": [{"role": "client", "name": ""}]}, r"participants\[0\].name must be text; found \"\""),
    ({"other_names": {" ": "sibling"}}, "'other_names' must map names to labels"),
    ({"date": 20261128}, "'date' must be a date like 2026-11-28; found 20261128"),
    # 5 December trial: 1000 participants passed, and the analysis failed after decoding (at most 8 speakers)
    ({"participants": [{"role": "client"}] + [{"role": "parent"}] * 999}, "at most 8 people"),
    # 5 December trial: `alliance analyze` took session id timmy-1 for a client named Timmy (the folder, the
    # report title and the RTTM held the name); the nightly inbox refused it
    ({"session_id": "timmy-1", "participants": [{"role": "client", "name": "Timmy"}]},
     "'session_id' holds a name given in this file"),
    ({"client_id": "c-jip", "other_names": {"Jip": "sibling"}}, "'client_id' holds a name given in this file"),
])
def test_bad_metadata_names_the_file(tmp_path, obj, message):
    with pytest.raises(MetadataError, match=f"s1.json: .*{message}"):
        Sidecar.load(_write(tmp_path, obj))


def test_missing_metadata_file(tmp_path):
    with pytest.raises(MetadataError, match="gone.json: metadata file not found"):
        Sidecar.load(tmp_path / "gone.json")


@pytest.mark.parametrize("key, meant", [("other_name", "other_names"), ("sesion_id", "session_id"),
                                        ("langauge", "language"), ("participant", "participants")])
def test_a_misspelled_key_is_named_not_ignored(tmp_path, key, meant):
    """Fresh-user trial: {"other_name": {"Diana": "sibling"}} was ignored, and "Diana" reached the report."""
    from pipeline.errors import MetadataError
    from pipeline.sidecar import Sidecar

    path = tmp_path / "m.json"
    path.write_text(json.dumps({"session_id": "m-1", key: {"Diana": "sibling"} if "name" in key else "x"}))
    with pytest.raises(MetadataError, match=f"m.json: unknown key '{key}'; did you mean '{meant}'"):
        Sidecar.load(path)
    path.write_text(json.dumps({"session_id": "m-1", "notes": "a key of the clinic's own", "simulated": {}}))
    assert Sidecar.load(path).session_id == "m-1"


def test_a_sidecar_with_a_utf8_byte_order_mark_is_read(tmp_path):
    """Windows tools (Notepad, PowerShell) write UTF-8 with a byte order mark; such a sidecar was refused as
    invalid JSON (5 December trial)."""
    path = tmp_path / "s1.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"session_id": "s-1", "language": "nl"}).encode())
    assert Sidecar.load(path).language == "nl"


def test_a_huge_sidecar_is_refused_without_being_read(tmp_path):
    """Trial (stop 44): a 900 MB sparse sidecar took 2.4 GB of memory to be found not JSON; a larger one would end
    the nightly process. Metadata files are small: one over the limit is refused by its size."""
    import tracemalloc

    from pipeline.errors import MetadataError
    from pipeline.sidecar import MAX_SIDECAR_BYTES, read_sidecar

    big = tmp_path / "rec.wav.json"
    with open(big, "wb") as f:
        f.truncate(200 * 1024 * 1024)  # sparse: no disk used
    tracemalloc.start()
    try:
        with pytest.raises(MetadataError, match="rec.wav.json.*too large"):
            read_sidecar(big)
        assert tracemalloc.get_traced_memory()[1] < 4 * MAX_SIDECAR_BYTES
    finally:
        tracemalloc.stop()
