"""The clinic's inbox: recordings with their sidecars, the folders they are filed in, and how long they stay.

::

    <inbox>/NAME.ext, NAME.ext.json   a new recording with its sidecar (or NAME.json)
    <inbox>/done/       analysed, or a second copy; the recording until ALLIANCE_AUDIO_RETENTION_DAYS,
                        the sidecar stays
    <inbox>/rejected/   refused before analysis (no valid consent, bad sidecar), with NAME.ext.reason.txt;
                        until ALLIANCE_REJECTED_RETENTION_DAYS
    <inbox>/failed/     the analysis failed, or refused (a reused session id, a possible misfiling), with
                        NAME.ext.reason.txt; until ALLIANCE_FAILED_RETENTION_DAYS

A file's age in its folder counts from the moment it was filed there (:func:`file_away` dates it), and every
delete proves first that it stays inside its folder (:func:`pipeline.ids.remove_inside`). The reason files are
kept: they say what happened, without the audio or the names in the sidecar.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

from flows.store import Store, now
from pipeline.audio import AUDIO_SUFFIXES, recording_sha256
from pipeline.errors import MetadataError
from pipeline.ids import is_valid_id, make_private_dir, remove_inside
from pipeline.sidecar import read_sidecar


def recordings_in(folder: Path) -> list[Path]:
    """The recordings in ``folder`` (regular files whose suffix is in :data:`pipeline.audio.AUDIO_SUFFIXES`), sorted."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def sidecar_of(audio: Path) -> Path | None:
    """``NAME.ext.json`` next to the recording, else ``NAME.json``; None when neither exists."""
    for candidate in (audio.with_name(audio.name + ".json"), audio.with_suffix(".json")):
        if candidate.is_file():
            return candidate
    return None


def client_of(record: Mapping[str, Any]) -> str | None:
    """A sidecar's client id when it is a valid id, else None: an invalid one is never written as a client."""
    value = record.get("client_id")
    return value if is_valid_id(value) else None


def sidecar_client(sidecar: Path | None) -> str | None:
    """The valid client id in a sidecar file (see :func:`client_of`); None when there is none or it cannot be read."""
    if sidecar is None:
        return None
    try:
        return client_of(read_sidecar(sidecar))
    except MetadataError:
        return None


def settled(path: Path, seconds: float) -> bool:
    """True when the file has not changed for ``seconds`` (it is not still being copied)."""
    return time.time() - path.stat().st_mtime >= seconds


def file_away(files: list[Path | None], folder: Path, *, reason: str | None = None) -> list[Path]:
    """Move a recording and its sidecar into ``folder`` (``done/``, ``rejected/``, ``failed/``), dated now.

    The folder is created private (0700: it holds recordings of minors, whatever the umask). A name already there
    gets a time stamp instead of being overwritten. Retention counts from the moment a file arrived in its folder:
    a recording copied with its original time stamp would otherwise be deleted at the next run.

    Parameters
    ----------
    files : list of Path or None
        The recording first, then its sidecar; None and files that no longer exist are skipped.
    folder : Path
        Where they go; created when missing.
    reason : str, optional
        Written, one line, to ``<recording>.reason.txt`` next to the moved recording.

    Returns
    -------
    list of Path
        Where the files are now.

    Raises
    ------
    OSError
        A file could not be moved or the reason not written.
    """
    make_private_dir(folder)
    stamp = now().replace(":", "").replace("+", "_")
    moved = []
    for f in files:
        if f is not None and f.exists():
            target = folder / f.name
            if target.exists():
                target = folder / f"{f.name}.{stamp}{f.suffix}"
            shutil.move(str(f), str(target))
            os.utime(target)
            moved.append(target)
    if reason is not None:
        moved[0].with_name(moved[0].name + ".reason.txt").write_text(reason + "\n", encoding="utf-8")
    return moved


def find_recording(inbox_dir: Path | None, row: Mapping[str, Any]) -> Path | None:
    """The retained recording of a session in ``<inbox>/done/``, or None.

    Parameters
    ----------
    inbox_dir : Path or None
        The nightly inbox (``ALLIANCE_INBOX_DIR``); None when none is set.
    row : mapping
        The session's database row: ``recording_name`` and ``recording_sha256``.

    Returns
    -------
    Path or None
        The file in ``done/`` named like the recording (a time-stamped copy included) whose content has the
        recorded sha256 (:func:`pipeline.audio.recording_sha256`).
    """
    if inbox_dir is None or not row.get("recording_name"):
        return None
    done = Path(inbox_dir) / "done"
    if not done.is_dir():
        return None
    for p in sorted(done.glob(row["recording_name"] + "*")):
        if p.is_file() and recording_sha256(p) == row.get("recording_sha256"):
            return p
    return None


def expire_audio(done: Path, days: float, store: Store, *, actor: str) -> int:
    """Delete processed recordings in ``done`` older than ``days`` (by modification time); audit each.

    Their sidecars stay: the consent record and the metadata of an analysed session.

    Parameters
    ----------
    done : Path
        ``<inbox>/done``.
    days : float
        Retention period (``ALLIANCE_AUDIO_RETENTION_DAYS``); 0 deletes every recording there now.
    store : Store
        Receives one ``deleted`` audit row per recording.
    actor : str
        Who deletes, in the audit rows.

    Returns
    -------
    int
        Recordings deleted.
    """
    if not done.is_dir():
        return 0
    limit = time.time() - days * 86400.0
    n = 0
    for audio in recordings_in(done):
        if days == 0 or audio.stat().st_mtime < limit:
            client = sidecar_client(sidecar_of(audio))
            remove_inside(audio, done)
            store.audit("deleted", actor=actor, outcome="success", client_id=client,
                        detail=f"raw audio {audio.name} after the retention period ({days:g} days)")
            n += 1
    return n


def expire_refused(folder: Path, days: float, store: Store, *, actor: str) -> int:
    """Delete recordings and sidecars in ``rejected/`` or ``failed/`` once ``days`` have passed; audit each.

    An unconsented or failed recording must not stay forever. Age counts from the file's modification time,
    which :func:`file_away` sets when it files the recording there. The ``.reason.txt`` files are kept: they
    say what happened, without the audio or the names in the sidecar.

    Parameters
    ----------
    folder : Path
        ``<inbox>/rejected`` or ``<inbox>/failed``.
    days : float
        Retention period; 0 deletes everything there now.
    store : Store
        Receives one ``deleted`` audit row per recording (and per sidecar left without its recording).
    actor : str
        Who deletes, in the audit rows.

    Returns
    -------
    int
        Files deleted.

    Raises
    ------
    ValueError
        A file resolves outside ``folder`` (see :func:`pipeline.ids.remove_inside`); nothing of it was deleted.
    """
    if not folder.is_dir():
        return 0
    limit = time.time() - days * 86400.0

    def expired(p: Path) -> bool:
        return (p.is_file() or p.is_symlink()) and (days == 0 or p.lstat().st_mtime < limit)

    why = f"from {folder.name}/ after the retention period ({days:g} days); the reason file is kept"
    n = 0
    for audio in sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and expired(p)):
        sidecar = sidecar_of(audio)
        client = sidecar_client(sidecar)
        n += remove_inside(audio, folder)
        if sidecar is not None:
            n += remove_inside(sidecar, folder)
        store.audit("deleted", actor=actor, outcome="success", client_id=client,
                    detail=f"raw audio {audio.name}{' and its sidecar' if sidecar else ''} {why}")

    def orphan(sidecar: Path) -> bool:
        base = sidecar.name[: -len(".json")]
        return not (folder / base).exists() and not any((folder / (base + s)).exists() for s in AUDIO_SUFFIXES)

    # sidecars whose recording is gone or was filed under a time-stamped name: they hold names and consent
    for sidecar in sorted(p for p in folder.iterdir() if p.suffix.lower() == ".json" and expired(p) and orphan(p)):
        client = sidecar_client(sidecar)
        n += remove_inside(sidecar, folder)
        store.audit("deleted", actor=actor, outcome="success", client_id=client, detail=f"sidecar {sidecar.name} {why}")
    return n
