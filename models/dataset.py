"""Labelled sessions on disk: discovery, validation, features and window labels.

A dataset is a folder with one subfolder per session. A session folder holds

* one recording (wav, flac, mp3, ogg, opus, m4a);
* ``metadata.json``: ``session_id``, ``client_id`` (a pseudonym; sessions of one
  client are kept together in cross-validation), ``language``, and
  ``participants`` with their roles (and the client's ``age``), as for
  ``alliance analyze --metadata``;
* the rupture annotations: ``ruptures.csv`` (``start_s,end_s,label[,marker]``),
  or one ELAN ``.eaf`` or Praat ``.TextGrid`` file with a tier named ``rupture``
  (see :mod:`pipeline.annotations`).

A session of a real client carries its consent record in ``metadata.json``
(``"consent": {"analysis": true, "research_use": true, ...}``, as
``alliance export-reviews`` writes it); one whose record does not give research
use refuses the whole dataset, so it is removed rather than silently trained
on. Metadata without a consent record (simulated sessions) is accepted.

Features come from the same analysis the clinic's flow runs
(:func:`pipeline.session.analyze`), so a model is trained on exactly what it
will see; no report is written and no classifier is loaded. They are cached
under ``<data dir>/feature-cache/`` by recording hash, settings hash and the
hash of the analysis code (``pipeline/``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from models.artifact import CLASSES
from pipeline.audio import AUDIO_SUFFIXES, recording_sha256
from pipeline.errors import InputError, not_a_file
from pipeline.ids import PRIVATE_FILE_MODE, make_private_dir
from pipeline.sidecar import read_sidecar
from pipeline.types import FeatureFrame, SessionFeatures

if TYPE_CHECKING:
    from pipeline.session import Backends

MIN_COVER_S = 10.0  # a window is labelled with a rupture type when at least this much of it is annotated


@dataclass(frozen=True)
class LabelledSession:
    """One annotated session found on disk."""

    folder: Path
    recording: Path
    metadata: Path
    annotations: Path
    session_id: str
    client_id: str
    language: str | None


def discover_sessions(data_dir: str | Path, *, set_aside: list[dict] | None = None,
                      refused: list[dict] | None = None) -> list[LabelledSession]:
    """Find and check every session folder under ``data_dir``.

    Parameters
    ----------
    data_dir : str or Path
        Dataset folder (one subfolder per session).
    set_aside : list, optional
        Where a session that cannot be used is recorded instead of refusing the dataset (the guide: bad input
        never stops the rest of a batch): one ``{"session": folder name, "folder": data_dir, "why": one line}``
        per session, in folder order, and the other sessions are returned. A session without research consent is
        set aside before any of its files but the metadata is read. Without it (``None``), the first problem
        raises, as ``alliance retrain --strict`` wants.
    refused : list, optional
        Receives :func:`refused_sessions` of ``data_dir``: every session under it whose consent refuses research use
        or whose metadata cannot be read, wherever it lies, so that a session carrying its id can be refused too
        (:func:`models.training.load_dataset`; copies of its recording are refused by content there).

    Returns
    -------
    list of LabelledSession
        Sorted by folder name; empty only when every session was set aside.

    Raises
    ------
    InputError
        The folder does not exist or holds no session folder at all; without ``set_aside``, also a session folder
        that is hidden or a link, or with no or several recordings, a recording, ``metadata.json`` or annotation
        file that is a link, no ``metadata.json``, metadata without a ``client_id``, no or several annotation files,
        a session id used by two folders, a real session (no ``simulated`` record) without a consent record, or a
        consent record that does not give research use (see :func:`research_use_refusal`). The message starts with
        the session folder's name.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise InputError(root, "a file, not a dataset folder" if root.exists() else "dataset folder not found")
    if refused is not None:
        refused += refused_sessions(root)
    out, problems = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            try:
                if folder.name.startswith("."):
                    if _holds_session_files(folder):  # a whole session passed over without a word (trial)
                        raise InputError(folder, "is a hidden folder (its name starts with '.'), so its session is "
                                                 "not used; rename it, or move it out of the dataset")
                    continue  # a scratch or version-control folder
                # consent first: a refused session is named for its consent whatever else is wrong with it, and its
                # recording is known, so that a copy of it elsewhere is refused too (second trial, 5 December)
                why = _consent_refusal(folder)
                if why is not None:
                    raise _Refused(folder, f"{why}: research use was not consented, so this session may not be "
                                           "trained or evaluated on; remove it from the dataset")
                session = _session_folder(folder)
                if session is None:
                    nested = [p.name for p in sorted(folder.iterdir())
                              if p.is_dir() and not p.is_symlink() and _holds_session_files(p)]
                    if nested:  # passed over without a word (second trial)
                        raise InputError(folder, f"holds {'a session' if len(nested) == 1 else 'sessions'} one level "
                                                 f"down ({', '.join(nested[:5])}{' ...' if len(nested) > 5 else ''});"
                                                 " a dataset holds its sessions directly: give this folder as a "
                                                 "dataset of its own (--data)")
                    continue  # not a session folder (e.g. a cache)
            except OSError as exc:  # a folder or file the service user may not read
                raise InputError(folder, f"cannot be read ({exc.strerror or type(exc).__name__})") from None
        except InputError as exc:
            if set_aside is None and not isinstance(exc, _Refused):
                raise  # strict: the first problem refuses the dataset; consent refusals are all named at once
            problems.append((folder, exc))
            continue
        out.append(session)
    folders_of: dict[str, list[str]] = {}
    for s in out:
        folders_of.setdefault(s.session_id, []).append(s.folder.name)
    shared = [s for s in out if len(folders_of[s.session_id]) > 1]
    for s in shared:  # which of them the id belongs to is not known: none is used
        others = ", ".join(f for f in folders_of[s.session_id] if f != s.folder.name)
        exc = InputError(s.folder, f"session id {s.session_id} is also used by {others}; give each session its own "
                                   "id")
        if set_aside is None:
            raise exc
        problems.append((s.folder, exc))
    out = [s for s in out if s not in shared]
    if set_aside is not None:
        set_aside += [aside_entry(folder, root, exc) for folder, exc in sorted(problems, key=lambda p: p[0].name)]
        if not out and not problems:
            raise InputError(root, "no session folders found (each needs a recording, metadata.json and "
                                   "annotations)")
        return out
    refused = [str(exc) for _, exc in problems]  # only consent refusals reach here: all named at once
    if len(refused) == 1:
        raise InputError(None, refused[0])
    if refused:
        raise InputError(None, f"{len(refused)} sessions may not be trained or evaluated on, research use was not "
                               f"consented: {'; '.join(why.split(': research use')[0] for why in refused)}; "
                               "remove them from the dataset")
    if not out:
        raise InputError(root, "no session folders found (each needs a recording, metadata.json and annotations)")
    return out


def _consent_refusal(folder: Path, *, strict_read: bool = False) -> str | None:
    """Why the session in ``folder`` may not be used for research, from its ``metadata.json`` alone; None when it
    may, or when there is no readable metadata (the other checks name that; with ``strict_read`` an unreadable
    record raises).

    A consent record that does not give research use (:func:`research_use_refusal`), and a real session (no
    ``simulated`` record) without any consent record.
    """
    from pipeline.errors import PipelineError

    meta = folder / "metadata.json"
    if not meta.is_file():  # a link to a record is read too: a refusal is obeyed wherever it lies (third trial)
        return None
    try:
        raw = read_sidecar(meta)
        why = research_use_refusal(meta)
    except PipelineError:
        if strict_read:
            raise
        return None
    if why is None and "consent" not in raw and "simulated" not in raw:
        why = (f"{meta.name}: no consent record, and no 'simulated' record: a real session needs its consent record "
               "(consent.analysis and consent.research_use true)")
    return why


def _walk(folders: Sequence[str | Path]):
    """``(folder, file names)`` under each of ``folders``, at any depth: hidden folders and links to folders
    followed, each real folder once (a link loop ends there)."""
    seen: set[str] = set()
    for d in folders:
        if not Path(d).is_dir():
            continue
        for top, subdirs, files in os.walk(d, followlinks=True):
            real = os.path.realpath(top)
            if real in seen:
                subdirs[:] = []
                continue
            seen.add(real)
            yield Path(top), files


def run_recordings(folders: Sequence[str | Path]) -> list[Path]:
    """Every audio file under the run's folders, wherever it lies (:func:`_walk`): what a recording is compared with.

    Parameters
    ----------
    folders : sequence of path
        The run's dataset and recording folders (``--data``, ``--holdout``, ``--unannotated``).

    Returns
    -------
    list of Path
        Files with an audio suffix (:data:`AUDIO_SUFFIXES`) that are, or lead to, regular files; never decoded.
    """
    return [top / f for top, files in _walk(folders) for f in sorted(files)
            if Path(f).suffix.lower() in AUDIO_SUFFIXES and (top / f).is_file()]


def copies_elsewhere(path: Path, recordings: Sequence[Path], digests: dict) -> list[Path]:
    """The files among ``recordings`` (other than ``path`` itself) with the same bytes as ``path``.

    Only files of the same size are hashed (sha256, :func:`pipeline.audio.recording_sha256`); ``digests`` caches the
    hashes across calls. A file that cannot be read is left out.
    """
    from pipeline.audio import recording_sha256

    def digest(p: Path) -> str | None:
        key = os.path.realpath(p)
        if key not in digests:
            try:
                digests[key] = recording_sha256(p)
            except OSError:
                digests[key] = None
        return digests[key]

    try:
        size = path.stat().st_size
    except OSError:
        return []
    own = os.path.realpath(path)
    same_size = []
    for p in recordings:
        with contextlib.suppress(OSError):
            if os.path.realpath(p) != own and p.stat().st_size == size:
                same_size.append(p)
    if not same_size or digest(path) is None:
        return []
    return [p for p in same_size if digest(p) == digest(path)]


def shown_path(path: Path, folders: Sequence[str | Path]) -> str:
    """``path`` as a message names it: relative to the folder of ``folders`` it lies in, that folder's name first
    (``held/s3/recording.wav``), else its own name."""
    for d in folders:
        with contextlib.suppress(ValueError):
            return f"{Path(d).name}/{path.relative_to(d).as_posix()}"
    return path.name


def refused_sessions(data_dir: str | Path) -> list[dict]:
    """Every session under ``data_dir`` whose consent refuses research use, or whose metadata cannot be read, wherever
    it lies (:func:`_walk`: hidden folders, any depth, behind links), by its ``metadata.json`` alone.

    Parameters
    ----------
    data_dir : str or Path
        A dataset folder; one that does not exist has none.

    Returns
    -------
    list of dict
        ``{"name": the folder, relative to data_dir, "session_id": its id (the folder's name when the metadata
        gives none or cannot be read)}``: no other session may carry that id.
    """
    root = Path(data_dir)
    found = []
    for folder, files in _walk([root]):
        if "metadata.json" not in files or folder == root or not (folder / "metadata.json").is_file():
            continue
        try:
            refused = _consent_refusal(folder, strict_read=True) is not None
            raw = read_sidecar(folder / "metadata.json")
        except (OSError, InputError):  # a record that cannot be read may be a refusal: obeyed as one
            refused, raw = True, {}
        if refused:
            sid = raw.get("session_id")
            found.append({"name": folder.relative_to(root).as_posix() if folder.is_relative_to(root) else folder.name,
                          "session_id": sid if isinstance(sid, str) and sid else folder.name})
    return found


def _holds_session_files(folder: Path) -> bool:
    """Whether ``folder`` holds a recording, a ``metadata.json`` or an annotation file (a session's files)."""
    return any(p.name in ("metadata.json", "ruptures.csv") or p.suffix.lower() in (*AUDIO_SUFFIXES, ".eaf", ".textgrid")
               for p in folder.iterdir())


class _Refused(InputError):
    """A session whose consent does not allow research use (collected, so that every such session is named)."""


def aside_entry(folder: Path, dataset: str | Path, exc: Exception) -> dict:
    """One set-aside session as recorded in ``set_aside`` lists and model cards.

    Parameters
    ----------
    folder : Path
        The session folder.
    dataset : str or Path
        The dataset folder as given.
    exc : Exception
        Why: an :class:`InputError` (its one-line message), or an unexpected error (its type only).

    Returns
    -------
    dict
        ``{"session": folder name, "folder": dataset folder, "why": one line}``; the line names the file within
        the session folder where there is one (``recording.wav: ...``), never the folder's own path.
    """
    from pipeline.errors import PipelineError
    from pipeline.ids import display_line

    text = str(exc) if isinstance(exc, PipelineError) else f"internal error in the analysis ({type(exc).__name__})"
    for prefix in (f"{folder}: ", f"{folder.name}: ", f"{folder.name}/"):  # the session is named beside it
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    return {"session": folder.name, "folder": str(dataset),
            "why": display_line(text.replace(str(folder), folder.name))}


def _session_folder(folder: Path) -> LabelledSession | None:
    """The session in ``folder``, or None when it holds no session files at all.

    Raises
    ------
    InputError
        See :func:`discover_sessions` (everything but the consent and duplicate-id checks).
    """
    from pipeline.sidecar import Sidecar

    if folder.is_symlink():  # another dataset's session (or a whole dataset) would be read as this one's
        raise InputError(folder, "is a link to another folder; a dataset holds its sessions as folders of its "
                                 "own: copy the session in, or give the other dataset with its own --data")
    audio = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    links = [p.name for p in folder.iterdir() if p.is_symlink() and (p in audio or p.name in (
        "metadata.json", "ruptures.csv") or p.suffix.lower() in (".eaf", ".textgrid"))]
    if links:  # another client's recording or metadata would be read as this session's (trial: an inbox file)
        raise InputError(folder, f"{links[0]} is a link; a dataset holds its sessions' files as files of their "
                                 "own: copy the file in")
    if not audio:
        if (folder / "metadata.json").is_file() or (folder / "ruptures.csv").is_file():
            raise InputError(folder, f"no recording ({', '.join(sorted(AUDIO_SUFFIXES))}) beside its "
                                     "metadata.json or ruptures.csv; add it or remove the folder")
        return None
    if len(audio) > 1:
        raise InputError(folder, f"holds {len(audio)} recordings ({', '.join(p.name for p in audio)}); "
                                 "keep one recording per session folder")
    what = not_a_file(audio[0])
    if what is not None:  # a pipe or /dev/zero would be read for ever by the checks below
        raise InputError(audio[0], f"is {what}, not a recording; put the recording file itself here")
    meta_path = folder / "metadata.json"
    what = not_a_file(meta_path)
    if what == "missing":
        raise InputError(folder, "missing metadata.json (session_id, client_id, language, participants)")
    if what is not None:
        raise InputError(meta_path, f"is {what}, not a metadata file")
    meta = Sidecar.load(meta_path)
    if not meta.client_id:
        raise InputError(meta_path, "missing 'client_id': sessions of one client must stay together when "
                                    "evaluating, so every session needs its client's pseudonym")
    notes = [p for p in folder.iterdir() if p.name == "ruptures.csv" or p.suffix.lower() in (".eaf", ".textgrid")]
    if len(notes) != 1:
        raise InputError(folder, "needs exactly one annotation file (ruptures.csv, a .eaf or a .TextGrid); "
                                 f"found {len(notes)}")
    return LabelledSession(folder, audio[0], meta_path, notes[0], meta.session_id or folder.name,
                           meta.client_id, meta.language)


def research_use_refusal(metadata_path: str | Path) -> str | None:
    """Why a dataset session's consent record forbids research use, or None when it allows it or has none.

    Parameters
    ----------
    metadata_path : str or Path
        The session's ``metadata.json`` (already validated by :meth:`pipeline.sidecar.Sidecar.load`).

    Returns
    -------
    str or None
        For example ``"metadata.json: consent.research_use is false"``; None when ``consent.research_use``
        is true, or when the metadata holds no ``consent`` key at all (simulated sessions; a dataset's real session
        without one is refused by :func:`discover_sessions`). A field a consent record does not have
        (``pipeline.sidecar.CONSENT_FIELDS``, e.g. ``"withdrawn"``) refuses, as in the nightly inbox.
    """
    from pipeline.ids import one_line
    from pipeline.sidecar import CONSENT_FIELDS

    raw = read_sidecar(metadata_path)
    if "consent" not in raw:
        return None
    name = Path(metadata_path).name
    consent = raw["consent"]
    if not isinstance(consent, dict):
        return f"{name}: 'consent' is not a consent record (found {consent!r:.40})"
    unknown = sorted(str(k) for k in consent if k not in CONSENT_FIELDS)
    if unknown:  # "withdrawn": true beside "research_use": true was trained on (trial); the inbox refuses it too
        return (f"{name}: 'consent.{one_line(unknown[0])[:40]}' is not a field of a consent record (only "
                f"{', '.join(CONSENT_FIELDS)}), and what it says cannot be obeyed")
    if consent.get("analysis") is not True:  # a record without it consents to nothing (5 December trial)
        return f"{name}: consent.analysis is " + (json.dumps(consent["analysis"])[:40] if "analysis" in consent
                                                  else "missing")
    if consent.get("research_use") is not True:
        return f"{name}: consent.research_use is " + (json.dumps(consent["research_use"])[:40]
                                                       if "research_use" in consent else "missing")
    return None


def analysis_code_hash() -> str:
    """sha256 of the code and data files that turn a recording into features (``pipeline/``).

    Part of the feature-cache key, so features computed by other code are never reused.
    """
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    files = sorted((root / "pipeline").rglob("*.py")) + sorted((root / "pipeline" / "data").glob("*"))
    for f in files:
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=2)
def _backends(settings_json: str) -> Backends:
    """The analysis models, loaded once per process and settings."""
    from pipeline.session import Backends
    from pipeline.settings import Settings

    return Backends.load(Settings.model_validate_json(settings_json))


def session_features(session: LabelledSession, settings, *,
                     backends: Backends | None = None) -> tuple[SessionFeatures, float]:
    """Per-window markers of one session, from :func:`pipeline.session.analyze` (cached).

    Parameters
    ----------
    session : LabelledSession
    settings : Settings
        Analysis settings; their hash (without the classifier's settings, :meth:`Settings.features_hash`) and
        :func:`analysis_code_hash` are part of the cache key.
    backends : Backends, optional
        The ASR backend and speaker embedder; default the configured ones, loaded once per process.

    Returns
    -------
    (SessionFeatures, duration_s)

    Raises
    ------
    PipelineError
        The recording cannot be analysed (the message names it).
    """
    from pipeline.session import analyze
    from pipeline.sidecar import Sidecar

    key = f"{recording_sha256(session.recording)[:16]}-{settings.features_hash()[:8]}-{analysis_code_hash()[:8]}"
    cache = Path(settings.data_dir) / "feature-cache" / key
    done = cache / "features.json"
    if not done.is_file():
        analysis = analyze(session.recording, Sidecar.load(session.metadata), settings,
                           backends=backends or _backends(settings.model_dump_json()), session_id=session.session_id)
        make_private_dir(cache)  # markers of a client's session: private whatever the umask (0700 / 0600)
        part = cache / f".features-{os.getpid()}.json"  # whole or not at all, even after a stop at once (Ctrl-C)
        part.write_text(json.dumps({"features": analysis.features.to_dict(),
                                    "duration_s": analysis.recording.duration_s}), encoding="utf-8")
        os.chmod(part, PRIVATE_FILE_MODE)
        os.replace(part, done)
    raw = json.loads(done.read_text(encoding="utf-8"))
    return SessionFeatures.from_dict(raw["features"]), float(raw["duration_s"])


def window_labels(features: SessionFeatures, annotations: Sequence, *, min_cover_s: float = MIN_COVER_S) -> np.ndarray:
    """Class index per analysis window: 0 none, 1 withdrawal, 2 confrontation.

    A window takes the rupture type whose annotated intervals cover at least
    ``min_cover_s`` seconds of it (the type covering more, when both do);
    otherwise it is 0.

    Parameters
    ----------
    features : SessionFeatures
        Windows with start and end in seconds.
    annotations : sequence of RuptureAnnotation
    min_cover_s : float > 0

    Returns
    -------
    np.ndarray, shape (n_windows,), dtype int
    """
    out = np.zeros(len(features.frames), dtype=int)
    for i, fr in enumerate(features.frames):
        cover = {k: 0.0 for k in CLASSES[1:]}
        for a in annotations:
            cover[a.label] += max(0.0, min(fr.end, a.end) - max(fr.start, a.start))
        best = max(cover, key=cover.get)
        needed = min(min_cover_s, 0.5 * (fr.end - fr.start))
        if cover[best] >= needed:
            out[i] = CLASSES.index(best)
    return out
