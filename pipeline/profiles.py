"""Therapist voice profiles: enrol from a few clean clips, store, load.

A profile is the mean speaker embedding (resemblyzer d-vector, unit length)
of windows over the speech in the clips, stored as JSON under
``<data dir>/profiles/<name>.json`` with the encoder's name, the number of
clips and the seconds of speech used.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.errors import InputError
from pipeline.roles import PROFILE_MIN_SIMILARITY
from pipeline.types import Recording

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIN_ENROL_SPEECH_S = 5.0
MIN_CLIP_S = 1.0  # shorter clips cannot hold a stretch of speech the encoder can use
MIN_CHANNEL_SPEECH_S = 1.0  # a channel with less speech is not compared (cross-talk, a second microphone)
# Two channels of one clip are one voice when their resemblyzer embeddings are at least as similar as a session
# speaker must be to the profile to be taken for the therapist (pipeline.roles.PROFILE_MIN_SIMILARITY): below it,
# the two could not both be recognised as the therapist. Measured on the read Dutch clips in tests/data
# (5 December): two speakers at most 0.62 (median 0.55); the channels of one recording of one person are closer
# than two clips of that person (0.67-0.94, median 0.81).
SAME_VOICE_MIN_SIMILARITY = PROFILE_MIN_SIMILARITY


def profile_path(data_dir: Path, name: str) -> Path:
    """Where a therapist's profile lives.

    Only the name is checked; the file need not exist.

    Parameters
    ----------
    data_dir : Path
        The data directory.
    name : str
        Therapist id: 1 to 64 letters, digits, ``_``, ``.`` or ``-``,
        starting with a letter or digit.

    Returns
    -------
    Path
        ``<data_dir>/profiles/<name>.json``.

    Raises
    ------
    InputError
        The name has characters other than letters, digits, ``_ . -``.
    """
    if not _NAME.match(name):
        raise InputError(None, f"therapist name {name!r} must be 1–64 letters, digits, '_', '.' or '-'")
    return Path(data_dir) / "profiles" / f"{name}.json"


def same_audio(a: np.ndarray, b: np.ndarray, sample_rate_hz: int, *, max_shift_s: float = 0.1,
               min_correlation: float = 0.95) -> bool:
    """Whether two decoded clips are one recording saved twice (another format, bit depth or channel layout).

    The clips must last the same within ``max_shift_s``, and their normalised cross-correlation, over shifts of up
    to ``max_shift_s`` (an encoder's delay), must reach ``min_correlation``; two takes of the same words by the same
    person stay far below it.

    Parameters
    ----------
    a, b : np.ndarray, shape (n_samples,)
        Mono samples at ``sample_rate_hz``.
    sample_rate_hz : int
    max_shift_s : float >= 0
        Largest difference in length and shift, in s.
    min_correlation : float in (0, 1]

    Returns
    -------
    bool
    """
    from scipy.signal import correlate

    shift = int(max_shift_s * sample_rate_hz)
    if abs(a.size - b.size) > shift or min(a.size, b.size) == 0:
        return False
    n = min(a.size, b.size, 30 * sample_rate_hz)  # the first 30 s decide
    x, y = a[:n].astype(np.float64), b[:n].astype(np.float64)
    norm = np.sqrt(np.sum(x * x) * np.sum(y * y))
    if norm == 0:
        return False
    c = correlate(x, y, mode="full", method="fft")[n - 1 - shift: n + shift] / norm
    return bool(c.max() >= min_correlation)


def enrol(name: str, recordings: Sequence[Recording], *, embedder, vad_settings, data_dir: Path) -> Path:
    """Build a therapist's voice profile from clean clips and store it.

    Parameters
    ----------
    name : str
        Therapist id (letters, digits, ``_ . -``).
    recordings : sequence of Recording
        Decoded clips of the therapist alone, 16 kHz.
    embedder : SpeakerEmbedder
    vad_settings : VadSettings
    data_dir : Path

    Returns
    -------
    Path
        The profile file (replaced if it existed).

    Raises
    ------
    InputError
        A clip holds no speech, its channels (when ``channels`` was kept) hold different voices, or all clips
        together hold less than 5 s.
    """
    from pipeline.embedders import speaker_embeddings
    from pipeline.vad import detect_speech

    path = profile_path(data_dir, name)
    vectors, speech_s = [], 0.0
    for rec in recordings:
        if rec.duration_s < MIN_CLIP_S:  # the speech detector's windows need more; "no speech" would mislead
            raise InputError(rec.path, f"lasts {rec.duration_s:.1f} s, too short for an enrolment clip; give clips "
                                       f"of at least {MIN_CLIP_S:.0f} s of the therapist speaking")
        regions = detect_speech(rec.samples, rec.sample_rate_hz, settings=vad_settings)
        if not regions:
            raise InputError(rec.path, "no speech found in this enrolment clip; give clean clips of the therapist")
        if rec.channels is not None:  # the mix averages the channels: two people would make one profile of two voices
            voices = []
            for channel in rec.channels:
                heard = detect_speech(channel, rec.sample_rate_hz, settings=vad_settings)
                if sum(r.duration for r in heard) >= MIN_CHANNEL_SPEECH_S:
                    v = speaker_embeddings(channel, rec.sample_rate_hz, heard, embedder=embedder)["all"]
                    voices.append(v / max(np.linalg.norm(v), 1e-12))
            similarity = min((float(a @ b) for i, a in enumerate(voices) for b in voices[i + 1:]), default=1.0)
            if similarity < SAME_VOICE_MIN_SIMILARITY:
                raise InputError(rec.path, f"its channels hold different voices (similarity {similarity:.2f}, under "
                                           f"{SAME_VOICE_MIN_SIMILARITY:.2f}); give clips of the therapist alone")
        speech_s += sum(r.duration for r in regions)
        vectors.append(speaker_embeddings(rec.samples, rec.sample_rate_hz, regions, embedder=embedder)["all"])
    if speech_s < MIN_ENROL_SPEECH_S:
        raise InputError(None, f"enrolment clips hold {speech_s:.1f} s of speech; give at least "
                               f"{MIN_ENROL_SPEECH_S:.0f} s of the therapist speaking")
    mean = np.mean(vectors, axis=0)
    mean /= max(np.linalg.norm(mean), 1e-12)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "name": name, "encoder": getattr(embedder, "name", "unknown"), "n_clips": len(recordings),
        "speech_s": round(speech_s, 2), "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "embedding": [round(float(v), 6) for v in mean]}, indent=1))
    return path


def load_profile(data_dir: Path, name: str) -> np.ndarray:
    """A stored therapist profile's embedding, shape (dim,).

    Parameters
    ----------
    data_dir : Path
        The data directory.
    name : str
        Therapist id, as given to :func:`enrol`.

    Returns
    -------
    np.ndarray, shape (dim,), float32
        The mean speaker embedding, unit length as stored (``dim`` is the
        encoder's size, 256 for resemblyzer).

    Raises
    ------
    InputError
        The name is not a valid therapist id, there is no profile by that
        name, or the file is not a profile.
    """
    path = profile_path(data_dir, name)
    if not path.is_file():
        raise InputError(path, f"no voice profile for therapist {name!r}; enrol one with "
                               f"`alliance enroll-voice {name} CLIP...`")
    try:
        return np.asarray(json.loads(path.read_text())["embedding"], dtype=np.float32)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(path, f"not a voice profile ({exc})") from exc
