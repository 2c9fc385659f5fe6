"""Sessions of any length built from the real recordings shipped in this repository.

The benchmarks need long recordings, and no real therapy audio may be
committed, so sessions are assembled from the labelled clips in
``sample_audio/`` and ``tests/data/`` (see their ATTRIBUTION.md):

* ``en``: ``sample.wav`` (30 s, two speakers on the phone, with its STM
  transcript) and the nine speechocean762 clips (children and an adult
  reading English);
* ``nl``: the ten Dutch clips (one woman, one Flemish man, read speech);
* ``meeting``: the two AMI meeting-room excerpts (30 s each, no transcript);
* ``pool-nl`` and ``pool-en``: real speech that none of the kinds above holds, from ``tests/data/speech_pool/``
  (Dutch: 15 more clips of the same woman as ``nl``, a man reading a novel, single words; English: J. F.
  Kennedy's address and two meeting-room excerpts of one speaker each) and the four-speaker meeting excerpt
  ``tests/data/ami/tst00.flac`` (English). Rupture-free training sessions are assembled from these, so that
  the false-alarm recordings (built from the kinds above) share no clip with them.

Clips are drawn in a seeded random order, each with a gain of ±6 dB, separated
by silences of 0.2–2 s (the range of gaps between turns in conversation).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests/data"


@dataclass(frozen=True)
class Clip:
    """One real recording used as a building block of an assembled session.

    Attributes
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono float32 audio at 16 kHz, in [-1, 1].
    text : str or None
        What is said (the clip's reference transcript); None when the clip
        has none.
    language : str
        ``"nl"`` or ``"en"``.
    """

    samples: np.ndarray
    text: str | None
    language: str


def _stm_text(path: Path) -> str:
    return " ".join(line.split(maxsplit=5)[5].strip() for line in path.read_text().splitlines() if line.strip())


def load_clips(kind: str) -> list[Clip]:
    """The clips of one kind (``en``, ``children``, ``nl``, ``meeting``, ``pool-nl`` or ``pool-en``), decoded to 16 kHz
    mono float32.

    ``en`` is the phone call excerpt and the children's read English (speechocean762); ``children`` the latter
    alone; ``nl`` the Dutch read speech; ``meeting`` the two meeting-room excerpts (no transcript); ``pool-nl`` and
    ``pool-en`` the speech no other kind holds (see the module's text).

    Parameters
    ----------
    kind : {"en", "children", "nl", "meeting", "pool-nl", "pool-en"}
        Which clips.

    Returns
    -------
    list of Clip
        In a fixed order (the order of the reference files), each decoded
        at 16 kHz.

    Raises
    ------
    ValueError
        ``kind`` is not one of the names above.
    InputError
        A clip file is missing or cannot be decoded (the message names it).
    """
    from pipeline.audio import decode

    if kind in ("en", "children"):
        clips = [] if kind == "children" else [
            Clip(decode(ROOT / "sample_audio/sample.wav").samples, _stm_text(ROOT / "sample_audio/sample.stm"), "en")]
        for line in (DATA / "speechocean762/text").read_text().splitlines():
            utt, text = line.split(maxsplit=1)
            clips.append(Clip(decode(DATA / f"speechocean762/{utt}.wav").samples, text.lower(), "en"))
        return clips
    if kind == "nl":
        clips = []
        for speaker in ("nathalie", "rdh"):
            with open(DATA / f"dutch/{speaker}/transcripts.tsv", encoding="utf-8") as f:
                for row in csv.DictReader(f, delimiter="\t"):
                    path = DATA / f"dutch/{speaker}" / Path(row["file"]).with_suffix(".flac").name
                    clips.append(Clip(decode(path).samples, row["text"], "nl"))
        return clips
    if kind == "meeting":
        return [Clip(decode(DATA / f"ami/{name}.flac").samples, None, "en") for name in ("dev00", "dev01")]
    pool = DATA / "speech_pool"
    if kind == "pool-nl":
        clips = []
        for folder in ("nathalie", "css10"):
            with open(pool / folder / "transcripts.tsv", encoding="utf-8") as f:
                for row in csv.DictReader(f, delimiter="\t"):
                    clips.append(Clip(decode(pool / folder / Path(row["file"]).with_suffix(".flac").name).samples,
                                      row["text"], "nl"))
        return clips + [Clip(decode(p).samples, None, "nl") for p in sorted((pool / "porcupine").glob("*.flac"))]
    if kind == "pool-en":
        paths = [pool / "jfk/jfk.flac", pool / "ami/trn03.flac", pool / "ami/trn05.flac", DATA / "ami/tst00.flac"]
        return [Clip(decode(p).samples, None, "en") for p in paths]
    raise ValueError(f"kind must be en, children, nl, meeting, pool-nl or pool-en. Got {kind!r} instead.")


def build(minutes: float, out_wav: Path, kinds: tuple[str, ...], *, seed: int = 0) -> tuple[Path, str | None]:
    """Write a 16-bit WAV of about ``minutes`` minutes; return it and its reference text.

    Parameters
    ----------
    minutes : float
        Target length; the last clip may run over by up to its own length.
    out_wav : Path
        The file to write.
    kinds : tuple of str
        Clip kinds to draw from (see :func:`load_clips`), all mixed.
    seed : int
        Random order, gains and gaps.

    Returns
    -------
    (Path, str or None)
        The WAV file, and the reference words in order (None when a clip
        without a transcript was used).
    """
    from pipeline.audio import save_wav

    pool = [c for kind in kinds for c in load_clips(kind)]
    rng = np.random.default_rng(seed)
    parts, texts, t = [], [], 0.0
    while t < minutes * 60:
        for i in rng.permutation(len(pool)):
            gap = rng.uniform(0.2, 2.0)
            parts.append(np.zeros(int(gap * 16000), np.float32))
            parts.append(pool[i].samples * np.float32(10 ** (rng.uniform(-6, 6) / 20)))
            texts.append(pool[i].text)
            t += gap + pool[i].samples.size / 16000
            if t >= minutes * 60:
                break
    save_wav(out_wav, np.clip(np.concatenate(parts), -1, 1), 16000)
    return out_wav, None if any(x is None for x in texts) else " ".join(texts)


#: generator name of rupture-free sessions assembled from the real clips (:func:`assembled_sessions`)
ASSEMBLED = "assembled"


def assembled_sessions(out_dir: Path, *, mixes: tuple[tuple[tuple[str, ...], str], ...], seed: int,
                       minutes: tuple[float, float] = (5.0, 6.0)) -> list[Path]:
    """Labelled sessions without ruptures, assembled from the real clips: ordinary real speech for training.

    A model trained only on simulated sessions takes what is odd about real speech (long gaps between
    readers, a voice that changes from clip to clip, a "no" in a meeting) for a rupture (issue 15). These
    sessions show it real speech that holds none: each folder gets ``recording.wav`` (:func:`build`),
    ``metadata.json`` (language, its own client pseudonym, ``"simulated": {"generator": "assembled", ...}``
    so that cross-validation keeps it apart from the simulators' sessions) and an empty ``ruptures.csv``.
    No participants are given, as for a recording without a sidecar.

    Parameters
    ----------
    out_dir : Path
        Dataset folder (created); a session folder already there is kept as it is.
    mixes : tuple of ((kind, ...), language)
        One session per entry: the clip kinds it draws from (see :func:`load_clips`) and the language the
        flow is given (``"auto"``: detected).
    seed : int
        Seed of the first session (the next ones count up); use seeds the false-alarm recordings do not use.
    minutes : (float, float)
        Range of session lengths, minutes (drawn per session).

    Returns
    -------
    list of Path
        The session folders.
    """
    import json

    out_dir.mkdir(parents=True, exist_ok=True)
    folders = []
    for i, (kinds, language) in enumerate(mixes):
        s = seed + i
        folder = out_dir / f"assembled-{s}"
        if not (folder / "ruptures.csv").is_file():
            folder.mkdir(exist_ok=True)
            length = float(np.random.default_rng(s).uniform(*minutes))
            build(length, folder / "recording.wav", kinds, seed=s)
            meta = {"session_id": folder.name, "client_id": f"assembled-{s}",
                    "language": language,
                    "simulated": {"generator": ASSEMBLED, "seed": s, "kinds": list(kinds),
                                  "from": "real clips of sample_audio/ and tests/data/, no ruptures"}}
            (folder / "metadata.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
            (folder / "ruptures.csv").write_text("start_s,end_s,label,marker\n", encoding="utf-8")
        folders.append(folder)
    return folders
