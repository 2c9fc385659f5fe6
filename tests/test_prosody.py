"""Prosody on synthetic signals with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.prosody import f0_track, intensity_db, turn_prosody
from pipeline.settings import FeatureSettings
from pipeline.types import SpeakerTurn

SR = 16000


def _tone(f0, seconds, amp=0.5):
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * f0 * t)).astype(np.float32)


def test_f0_of_a_220_hz_tone_is_220_hz():
    f0 = f0_track(_tone(220, 1.0), SR, fmin_hz=65, fmax_hz=600, hop_s=0.02)
    voiced = f0[np.isfinite(f0)]
    assert voiced.size > 0.8 * f0.size
    assert np.median(voiced) == pytest.approx(220, rel=0.01)


def test_intensity_of_a_sine_is_its_rms_in_dbfs():
    assert intensity_db(_tone(440, 1.0, amp=0.5)) == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.05)
    assert intensity_db(np.zeros(100)) == -120.0


def test_turn_prosody_known_answers_and_unvoiced_turn():
    signal = np.concatenate([_tone(150, 1.0), np.zeros(SR, np.float32), _tone(300, 1.0, amp=0.05)])
    out = turn_prosody(signal, SR, [SpeakerTurn(0, 1, "A"), SpeakerTurn(1, 2, "B"), SpeakerTurn(2, 3, "C")],
                       settings=FeatureSettings())
    assert out[0].f0_median_hz == pytest.approx(150, rel=0.01)
    assert out[0].f0_range_st == pytest.approx(0.0, abs=0.3)  # a steady tone has a flat contour
    assert math.isnan(out[1].f0_median_hz) and out[1].voiced_fraction == 0.0
    assert out[2].f0_median_hz == pytest.approx(300, rel=0.01)
    assert out[0].intensity_db - out[2].intensity_db == pytest.approx(20.0, abs=0.1)  # 10x amplitude


def test_a_glide_has_the_expected_range_in_semitones():
    t = np.arange(SR * 2) / SR
    f = 200 * 2 ** (t / 2)  # one octave up over 2 s
    phase = 2 * np.pi * np.cumsum(f) / SR
    out = turn_prosody((0.5 * np.sin(phase)).astype(np.float32), SR, [SpeakerTurn(0, 2, "A")],
                       settings=FeatureSettings())
    assert out[0].f0_range_st == pytest.approx(12 * 0.9, abs=1.0)  # 5th–95th percentile of a 12-semitone glide


@pytest.fixture
def share_short(monkeypatch):
    """Helpers for the 40 s of tones below (in use, a helper starts only from 5 minutes of turns)."""
    from pipeline import prosody

    monkeypatch.setattr(prosody, "SHARE_MIN_AUDIO_S", 20.0)


def _tone_turns(n=40, seconds=1.0):
    """``n`` one-second tones from 110 to 440 Hz with 0.25 s of silence between them, and their turns."""
    f0s = 110 * 2 ** (2 * np.arange(n) / (n - 1))
    gap = np.zeros(int(0.25 * SR), np.float32)
    signal = np.concatenate([np.concatenate([_tone(f, seconds), gap]) for f in f0s])
    turns = [SpeakerTurn(i * (seconds + 0.25), i * (seconds + 0.25) + seconds, "AB"[i % 2]) for i in range(n)]
    return signal, turns, f0s


def test_a_helper_process_shares_the_turns_and_the_figures_are_the_same(share_short):
    """pYIN holds Python's lock, so a second process shares the work; each turn's figures do not change."""
    from pipeline.prosody import SHARE_PIECES, _chunks, _segments_prosody, _shared_out

    signal, turns, f0s = _tone_turns()
    alone = turn_prosody(signal, SR, turns, settings=FeatureSettings(), processes=1)
    shared = turn_prosody(signal, SR, turns, settings=FeatureSettings(), processes=2)
    assert [repr(p) for p in shared] == [repr(p) for p in alone]  # repr: NaN equals NaN
    assert [p.f0_median_hz for p in shared] == pytest.approx(f0s, rel=0.02)
    segments = [signal[int(t.start * SR):int(t.end * SR)] for t in turns]
    chunks = _chunks(segments, SR)
    assert 1 < len(chunks) <= SHARE_PIECES and [i for c in chunks for i in c] == list(range(len(turns)))
    pitch = (65.0, 600.0, 0.02, 0.25)
    # enough work that the helper, about 2 s to start, takes some (pYIN on 40 s of tones: about 1 s)
    many = segments * 4
    figures, by_helpers = _shared_out(_chunks(many, SR), many, SR, pitch, helpers=1)
    assert by_helpers >= 1
    assert [repr(f) for f in figures] == [repr(f) for f in _segments_prosody(many, SR, pitch)]


def test_without_a_helper_or_with_one_that_fails_or_hangs_every_turn_is_still_done(monkeypatch, caplog, share_short):
    """No helper can start, a helper dies, a helper hangs: the same figures, nothing lost, the hung one stopped."""
    import threading

    from pipeline import prosody

    signal, turns, _ = _tone_turns()
    alone = turn_prosody(signal, SR, turns, settings=FeatureSettings(), processes=1)

    def shared():
        return [repr(p) for p in turn_prosody(signal, SR, turns, settings=FeatureSettings(), processes=2)]

    monkeypatch.setattr(prosody._Helper, "start", classmethod(lambda cls: None))
    assert shared() == [repr(p) for p in alone]

    class Dies:
        closed = 0

        def run(self, *args):
            return None

        def close(self):
            Dies.closed += 1

    monkeypatch.setattr(prosody._Helper, "start", classmethod(lambda cls: Dies()))
    assert shared() == [repr(p) for p in alone] and Dies.closed == 1

    class Hangs:
        killed = threading.Event()

        def run(self, *args):
            Hangs.killed.wait()
            return None

        def close(self):
            pass

        def kill(self):
            Hangs.killed.set()

    monkeypatch.setattr(prosody._Helper, "start", classmethod(lambda cls: Hangs()))
    monkeypatch.setattr(prosody, "HELPER_GRACE_S", 0.2)
    with caplog.at_level("WARNING", logger="pipeline.prosody"):
        assert shared() == [repr(p) for p in alone] and Hangs.killed.is_set()
    assert "pitch helper process stopped" in caplog.text  # said, not silent
    with pytest.raises(ValueError, match="processes must be >= 1"):
        turn_prosody(signal, SR, turns, settings=FeatureSettings(), processes=0)


def test_a_script_without_a_main_guard_runs_once_while_a_helper_shares_its_turns(tmp_path):
    """The helper is a fresh ``python -m pipeline.prosody``: it never imports the caller's script again (with
    multiprocessing's spawn it did, and an unguarded script ran its whole analysis a second time inside it)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import sys\n"
        f"sys.path[:0] = [{str(root)!r}, {str(Path(__file__).resolve().parent)!r}]\n"
        "from test_prosody import SR, _tone_turns\n"
        "from pipeline import prosody\n"
        "from pipeline.prosody import _chunks, _shared_out\n"
        "prosody.SHARE_MIN_AUDIO_S = 20.0\n"
        "print('script ran', flush=True)\n"
        "signal, turns, _ = _tone_turns()\n"
        "segments = [signal[int(t.start * SR):int(t.end * SR)] for t in turns] * 4\n"
        "figures, by_helpers = _shared_out(_chunks(segments, SR), segments, SR, (65.0, 600.0, 0.02, 0.25), "
        "helpers=1)\n"
        "print('helper chunks', by_helpers, len(figures), flush=True)\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("script ran") == 1
    ((chunks, n),) = [line.split()[2:] for line in out.stdout.splitlines() if line.startswith("helper chunks")]
    assert int(chunks) >= 1 and int(n) == 160


def test_the_helper_does_not_import_modules_from_the_current_folder(tmp_path, monkeypatch):
    """A ``librosa.py`` planted in the folder the analysis runs from is never imported by the helper."""
    from pipeline import prosody

    marker = tmp_path / "planted-module-ran"
    (tmp_path / "librosa.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise SystemExit(3)\n")
    monkeypatch.chdir(tmp_path)
    helper = prosody._Helper.start()
    assert helper is not None
    try:
        signal, turns, _ = _tone_turns(n=2)
        segments = [signal[int(t.start * SR):int(t.end * SR)] for t in turns]
        figures = helper.run(segments, SR, (65.0, 600.0, 0.02, 0.25))
    finally:
        helper.close()
    assert not marker.exists()
    assert figures is not None and [f[0] for f in figures] == pytest.approx([110.0, 440.0], rel=0.02)


def test_no_more_helpers_than_cores_or_chunks(monkeypatch, share_short):
    """8 processes asked for on 2 cores start one helper; on 64 cores no more helpers than pieces of work."""
    from pipeline import prosody

    started = []

    def start(cls):
        started.append(1)
        return None  # no helper: this process does the work

    monkeypatch.setattr(prosody._Helper, "start", classmethod(start))
    signal, turns, _ = _tone_turns()
    monkeypatch.setattr(prosody, "available_cores", lambda: 2)
    turn_prosody(signal, SR, turns, settings=FeatureSettings(), processes=8)
    assert len(started) == 1
    started.clear()
    monkeypatch.setattr(prosody, "available_cores", lambda: 64)
    segments = [signal[int(t.start * SR):int(t.end * SR)] for t in turns]
    turn_prosody(signal, SR, turns, settings=FeatureSettings(), processes=64)
    assert len(started) == len(prosody._chunks(segments, SR)) - 1


def test_a_session_with_less_speech_than_a_helper_is_worth_is_measured_in_one_process(monkeypatch):
    """Measured (2 cores, idle): a helper takes about 2.8 s to start, so below about 4.5 minutes of turns it made
    the stage slower (2 minutes of turns: 2.7 s alone, 4.9 s shared); 5 minutes and more are shared."""
    from pipeline import prosody

    def never(cls):
        raise AssertionError("a helper process was started")

    monkeypatch.setattr(prosody._Helper, "start", classmethod(never))
    four_minutes = [np.zeros(4 * SR, np.float32)] * 60
    assert prosody._chunks(four_minutes, SR) == [list(range(60))]
    signal = np.zeros(240 * SR, np.float32)
    turns = [SpeakerTurn(4.0 * i, 4.0 * i + 4.0, "AB"[i % 2]) for i in range(60)]
    assert len(turn_prosody(signal, SR, turns, settings=FeatureSettings(), processes=2)) == 60
    six_minutes = [np.zeros(6 * SR, np.float32)] * 60
    assert len(prosody._chunks(six_minutes, SR)) == prosody.SHARE_PIECES
