"""Names from the session metadata never reach the outputs or the logs."""

from __future__ import annotations

import json
import logging

import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline.privacy import name_labels, redact_transcript
from pipeline.types import Transcript, Word
from tests.conftest import SAMPLE_WAV


def test_names_become_role_labels_with_punctuation_kept():
    labels = name_labels([{"role": "client", "name": "Sheila van Dam"}, {"role": "therapist"}], {"Tim": "sibling"})
    words = (Word(0, 1, "Sheila,", 1), Word(1, 2, "Tim's", 1), Word(2, 3, "dam", 1), Word(3, 4, "hello", 1))
    out = redact_transcript(Transcript(words, "en", 1.0, 4.0), labels)
    assert [w.text for w in out.words] == ["[client],", "[sibling]", "[client]", "hello"]
    assert [w.start for w in out.words] == [0, 1, 2, 3]


@pytest.mark.slow
def test_a_clients_name_appears_nowhere_in_the_outputs_or_logs(prefect_harness, tmp_path):
    meta = tmp_path / "s-priv.json"
    meta.write_text(json.dumps({"session_id": "s-priv", "language": "en",
                                "participants": [{"role": "therapist", "name": "Diane"},
                                                 {"role": "client", "name": "Sheila", "age": 15}],
                                "other_names": {"Chicago": "place"}}))
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = Collect()
    for name in ("", "prefect"):
        logging.getLogger(name).addHandler(handler)
    try:
        result = CliRunner().invoke(app, ["analyze", str(SAMPLE_WAV), "--metadata", str(meta),
                                          "--out", str(tmp_path / "out")])
    finally:
        for name in ("", "prefect"):
            logging.getLogger(name).removeHandler(handler)
    assert result.exit_code == 0, result.output
    files = list((tmp_path / "out").rglob("*"))
    assert files
    everything = "\n".join(p.read_text(errors="ignore") for p in files if p.is_file())
    everything += "\n".join(messages) + result.output
    for name in ("Sheila", "Diane", "Chicago"):
        assert name not in everything
    assert "[client]" in (tmp_path / "out" / "transcript.json").read_text()
