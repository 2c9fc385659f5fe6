"""Rupture annotations: the three formats and every kind of bad annotation, each naming the file."""

from __future__ import annotations

import json

import pytest

from pipeline.annotations import RuptureAnnotation, read_annotations, read_rupture_csv, write_rupture_csv
from pipeline.errors import InputError


def _csv(tmp_path, body, name="ruptures.csv"):
    path = tmp_path / name
    path.write_text("start_s,end_s,label,marker\n" + body)
    return path


def test_csv_round_trip_in_time_order(tmp_path):
    path = _csv(tmp_path, "40,55.5,confrontation,complaints about the therapist\n10,20,withdrawal,\n")
    notes = read_rupture_csv(path, duration_s=60)
    assert notes == (RuptureAnnotation(10, 20, "withdrawal", None),
                     RuptureAnnotation(40, 55.5, "confrontation", "complaints about the therapist"))
    back = read_rupture_csv(write_rupture_csv(tmp_path / "copy.csv", notes))
    assert back == notes


@pytest.mark.parametrize("body,message", [
    ("10,20,withdrawal\n15,30,confrontation\n", r"ruptures.csv: line 3 overlaps line 2"),
    ("20,10,withdrawal\n", r"ruptures.csv: line 2: ends at 10 s, not after its start 20 s"),
    ("10,20,anger\n", r"ruptures.csv: line 2: unknown label 'anger'; use one of withdrawal, confrontation"),
    ("50,70,withdrawal\n", r"ruptures.csv: line 2: ends at 70 s, past the end of the recording \(60.0 s\)"),
    ("ten,20,withdrawal\n", r"ruptures.csv: line 2: start_s and end_s must be numbers"),
    ("1_0,20,withdrawal\n", r"ruptures.csv: line 2: start_s and end_s must be numbers"),  # read as 10 (trial)
    ("10,20\n", r"ruptures.csv: line 2: needs start_s, end_s and label"),
])
def test_bad_csv_annotations_name_file_and_line(tmp_path, body, message):
    with pytest.raises(InputError, match=message):
        read_rupture_csv(_csv(tmp_path, body), duration_s=60)


def test_bad_header_and_missing_file(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("begin,end,type\n1,2,withdrawal\n")
    with pytest.raises(InputError, match="r.csv: line 1: header must be start_s,end_s,label"):
        read_rupture_csv(path)
    with pytest.raises(InputError, match="gone.csv: annotation file not found"):
        read_annotations(tmp_path / "gone.csv")
    with pytest.raises(InputError, match="notes.txt: unsupported annotation format"):
        read_annotations(tmp_path / "notes.txt")


def test_elan_tier_is_read_with_label_and_marker(tmp_path):
    import pympi

    eaf = pympi.Elan.Eaf()
    eaf.add_tier("rupture")
    eaf.add_annotation("rupture", 12000, 30500, "withdrawal: minimal response")
    eaf.add_annotation("rupture", 40000, 52000, "confrontation")
    path = tmp_path / "s1.eaf"
    pympi.Elan.to_eaf(str(path), eaf)
    assert read_annotations(path, duration_s=60) == (
        RuptureAnnotation(12.0, 30.5, "withdrawal", "minimal response"), RuptureAnnotation(40.0, 52.0, "confrontation"))
    eaf.add_annotation("rupture", 51000, 70000, "withdrawal")
    pympi.Elan.to_eaf(str(path), eaf)
    with pytest.raises(InputError, match=r"s1.eaf: tier rupture annotation 3: ends at 70 s, past the end"):
        read_annotations(path, duration_s=60)


def test_textgrid_tier_is_read_and_a_missing_tier_is_named(tmp_path):
    from praatio import textgrid
    from praatio.utilities.constants import Interval

    tg = textgrid.Textgrid()
    tg.addTier(textgrid.IntervalTier("rupture", [Interval(5.0, 9.0, "confrontation: rejection of intervention")],
                                     0, 20))
    path = tmp_path / "s2.TextGrid"
    tg.save(str(path), format="short_textgrid", includeBlankSpaces=True)
    assert read_annotations(path, duration_s=20) == (
        RuptureAnnotation(5.0, 9.0, "confrontation", "rejection of intervention"),)
    other = textgrid.Textgrid()
    other.addTier(textgrid.IntervalTier("words", [Interval(0.0, 1.0, "ja")], 0, 20))
    other.save(str(tmp_path / "s3.TextGrid"), format="short_textgrid", includeBlankSpaces=True)
    with pytest.raises(InputError, match="s3.TextGrid: no tier named 'rupture' \\(tiers: words\\)"):
        read_annotations(tmp_path / "s3.TextGrid")


def test_a_rupture_point_tier_is_one_line_not_a_traceback(tmp_path):
    """Trial, 5 December: a TextGrid whose 'rupture' tier was a point tier ended `evaluate` in a traceback
    ('Point' object has no attribute 'start') that never named the file."""
    from praatio import textgrid
    from praatio.utilities.constants import Point

    tg = textgrid.Textgrid()
    tg.addTier(textgrid.PointTier("rupture", [Point(5.0, "withdrawal")], 0, 20))
    path = tmp_path / "s4.TextGrid"
    tg.save(str(path), format="short_textgrid", includeBlankSpaces=True)
    with pytest.raises(InputError, match=r"/s4.TextGrid: tier 'rupture' is a point tier; rupture episodes need an "
                                         r"interval tier"):
        read_annotations(path, duration_s=20)


def test_dataset_folder_problems_name_the_folder_or_file(tmp_path):
    from models.dataset import discover_sessions

    with pytest.raises(InputError, match="nothing-here: dataset folder not found"):
        discover_sessions(tmp_path / "nothing-here")
    s = tmp_path / "data" / "s1"
    s.mkdir(parents=True)
    (s / "recording.wav").write_bytes(b"RIFF")
    with pytest.raises(InputError, match="s1: missing metadata.json"):
        discover_sessions(tmp_path / "data")
    (s / "metadata.json").write_text(json.dumps({"session_id": "s1", "language": "nl", "simulated": {"seed": 1}}))
    with pytest.raises(InputError, match="metadata.json: missing 'client_id'"):
        discover_sessions(tmp_path / "data")
    (s / "metadata.json").write_text(json.dumps({"session_id": "s1", "client_id": "c1", "language": "nl",
                                                 "simulated": {"seed": 1}}))
    with pytest.raises(InputError, match="s1: needs exactly one annotation file"):
        discover_sessions(tmp_path / "data")
    _csv(s, "1,2,withdrawal\n")
    (s / "metadata.json").write_text(json.dumps({"session_id": "s1", "client_id": "c1", "language": "nl"}))
    with pytest.raises(InputError, match="s1: metadata.json: no consent record"):  # a real session needs one
        discover_sessions(tmp_path / "data")
    (s / "metadata.json").write_text(json.dumps({"session_id": "s1", "client_id": "c1", "language": "nl",
                                                 "simulated": {"seed": 1}}))
    assert [x.client_id for x in discover_sessions(tmp_path / "data")] == ["c1"]


def test_empty_annotation_file_says_so(tmp_path):
    path = tmp_path / "ruptures.csv"
    path.write_text("")
    with pytest.raises(InputError, match="ruptures.csv: file is empty"):
        read_rupture_csv(path)


@pytest.mark.parametrize("kind", ["folder", "fifo", "huge field", "too big"])
def test_an_annotation_file_that_is_not_a_small_text_file_is_refused_in_one_line(tmp_path, kind):
    """5 December trial: a ruptures.csv that was a folder or held a field over 131,072 characters ended
    `alliance retrain` with a traceback after Prefect had started, and a FIFO hung it for good."""
    import os
    import threading

    path = tmp_path / "ruptures.csv"
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "huge field":
        path.write_text("start_s,end_s,label,marker\n0,10,withdrawal,\"" + "x" * 200_000 + "\"\n")
    else:
        path.write_text("start_s,end_s,label\n" + "0,10,withdrawal\n" * 2_000_000)
    out = {}

    def read():
        try:
            read_annotations(path)
        except InputError as exc:
            out["error"] = str(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # unblock the reader of the FIFO so the test process can end
        with open(path, "w"):
            pass
        pytest.fail("reading a FIFO blocked")
    assert "error" in out and "ruptures.csv" in out["error"] and "\n" not in out["error"], out


def test_times_in_other_scripts_digits_are_not_read_as_numbers(tmp_path):
    """Trial, 5 December: an annotation time written in Arabic-Indic digits ("١٢") was read as 12 s: a time in a
    file is written with the digits 0-9."""
    from pipeline.rttm import plain_number

    assert plain_number("١٢") is None and plain_number("１２") is None and plain_number("12.5") == 12.5
    path = tmp_path / "ruptures.csv"
    path.write_text("start_s,end_s,label\n١٢,20,withdrawal\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 2: start_s and end_s must be numbers of seconds"):
        read_annotations(path, duration_s=60)


def test_an_elan_time_slot_without_a_time_is_said_in_words(tmp_path):
    """Trial, 5 December: an ELAN file whose episode ends at a time slot without a time said "(KeyError)"."""
    path = tmp_path / "s5.eaf"
    path.write_text('''<?xml version="1.0" encoding="UTF-8"?>
<ANNOTATION_DOCUMENT AUTHOR="" DATE="2026-12-05T00:00:00+00:00" FORMAT="3.0" VERSION="3.0"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
 xsi:noNamespaceSchemaLocation="http://www.mpi.nl/tools/elan/EAFv3.0.xsd">
<HEADER MEDIA_FILE="" TIME_UNITS="milliseconds"/>
<TIME_ORDER><TIME_SLOT TIME_SLOT_ID="ts1" TIME_VALUE="1000"/><TIME_SLOT TIME_SLOT_ID="ts2"/></TIME_ORDER>
<TIER LINGUISTIC_TYPE_REF="default-lt" TIER_ID="rupture"><ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="a1"
 TIME_SLOT_REF1="ts1" TIME_SLOT_REF2="ts2"><ANNOTATION_VALUE>withdrawal</ANNOTATION_VALUE></ALIGNABLE_ANNOTATION>
</ANNOTATION></TIER>
<LINGUISTIC_TYPE GRAPHIC_REFERENCES="false" LINGUISTIC_TYPE_ID="default-lt" TIME_ALIGNABLE="true"/>
</ANNOTATION_DOCUMENT>''', encoding="utf-8")
    with pytest.raises(InputError, match=r"/s5.eaf: .*time slot without a time") as info:
        read_annotations(path, duration_s=60)
    assert "KeyError" not in str(info.value)


def test_annotation_file_problems_name_the_session_and_say_what_is_wrong(tmp_path):
    """Trial, 5 December: errors in a session's .eaf or .TextGrid named only the file (every session may hold an
    ann.eaf), and some said only "(ValueError)", "(DuplicateTierName)" or a cut namespace."""
    from praatio import textgrid
    from praatio.utilities.constants import Interval

    folder = tmp_path / "s7"
    folder.mkdir()
    eaf = folder / "ann.eaf"
    head = ('<?xml version="1.0" encoding="UTF-8"?>\n<ANNOTATION_DOCUMENT AUTHOR="" DATE="2026-12-05T00:00:00+00:00" '
            'FORMAT="3.0" VERSION="3.0"{ns}>\n<HEADER MEDIA_FILE="" TIME_UNITS="milliseconds"/>\n'
            '<TIME_ORDER><TIME_SLOT TIME_SLOT_ID="ts1" TIME_VALUE="{t}"/></TIME_ORDER>\n</ANNOTATION_DOCUMENT>')
    ns = (' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
          'xsi:noNamespaceSchemaLocation="http://www.mpi.nl/tools/elan/EAFv3.0.xsd"')
    for namespace, t, said in (("", "1000", "ELAN header"), (ns, "", "not a whole number of milliseconds")):
        eaf.write_text(head.format(ns=namespace, t=t), encoding="utf-8")
        with pytest.raises(InputError) as info:
            read_annotations(eaf)
        message = str(info.value)
        assert message.startswith("s7/ann.eaf: ") and said in message, message
        assert "Error" not in message and "{http" not in message, message
    tg = textgrid.Textgrid()
    tg.addTier(textgrid.IntervalTier("rupture", [Interval(1.0, 2.0, "withdrawal")], 0, 20))
    path = folder / "ann.TextGrid"
    tg.save(str(path), format="long_textgrid", includeBlankSpaces=True)
    text = path.read_text()
    path.write_text(text + text[text.index("    item [1]:"):].replace("item [1]", "item [2]").replace(
        "size = 1", "size = 2"), encoding="utf-8")
    path.write_text(path.read_text().replace("size = 1", "size = 2"), encoding="utf-8")
    with pytest.raises(InputError) as info:
        read_annotations(path)
    assert str(info.value).startswith("s7/ann.TextGrid: ") and "two tiers have the same name" in str(info.value), \
        str(info.value)
    path.write_text(text.replace("xmax = 2", "xmax = two"), encoding="utf-8")
    with pytest.raises(InputError) as info:
        read_annotations(path)
    assert str(info.value).startswith("s7/ann.TextGrid: ") and "Error" not in str(info.value), str(info.value)


def test_times_in_other_scripts_digits_are_refused_in_elan_and_textgrid_too(tmp_path):
    """Second trial, 5 December: "١" (Arabic-Indic one) as a TextGrid or ELAN time was read as 1; the CSV refused
    it."""
    from praatio import textgrid
    from praatio.utilities.constants import Interval

    tg = textgrid.Textgrid()
    tg.addTier(textgrid.IntervalTier("rupture", [Interval(1.0, 2.0, "withdrawal")], 0, 20))
    path = tmp_path / "s8.TextGrid"
    tg.save(str(path), format="long_textgrid", includeBlankSpaces=True)
    path.write_text(path.read_text().replace("xmax = 2", "xmax = \u0662"), encoding="utf-8")
    with pytest.raises(InputError, match="times must be written with the digits 0-9"):
        read_annotations(path, duration_s=20)
