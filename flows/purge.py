"""Removing one client's data (``alliance purge``); every delete first proves that it stays inside its folder.

A session folder is deleted only inside ``<data dir>/sessions``, an inbox file only inside the inbox, an exported
copy only when it still holds that session's ``metadata.json``. Whatever is left on disk is returned as one line
each (``kept ...`` / ``remains ...``), so the command can say what the operator still has to do; audit rows are
never deleted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from flows.inbox import filed_copies, sidecar_client
from pipeline.audio import AUDIO_SUFFIXES, recording_sha256
from pipeline.errors import MetadataError
from pipeline.ids import is_valid_id, remove_inside
from pipeline.sidecar import read_sidecar

ACTOR = "alliance purge"


def purge_session_folders(rows: Iterable[dict[str, Any]], data_dir: str | Path,
                          client_id: str) -> tuple[int, list[str]]:
    """Delete the session folders of these session rows, only inside ``<data dir>/sessions``.

    Parameters
    ----------
    rows : iterable of dict
        The client's session rows (``session_id``, ``out_dir``).
    data_dir : str or Path
    client_id : str
        Named in the lines about folders left in place.

    Returns
    -------
    tuple of (int, list of str)
        Folders deleted, and one line per folder left in place with the reason.
    """
    sessions = Path(data_dir) / "sessions"
    removed, kept = 0, []
    for row in rows:
        sid = row["session_id"]
        # the folder the row names, and the one its id names now (the data directory may have moved since)
        candidates = [Path(row["out_dir"])] if row.get("out_dir") else []
        if is_valid_id(sid):
            candidates.append(sessions / sid)
        for path in dict.fromkeys(Path(p).absolute() for p in candidates):
            try:
                if remove_inside(path, sessions):
                    removed += 1
            except ValueError:
                # a row written by old code (session id "..") can name the data directory itself
                kept.append(f"kept {path.resolve()}: session {sid!r} of client {client_id} points there, outside "
                            f"{sessions.resolve()}; purge deletes only inside it, so remove that session's files "
                            "there by hand")
            except OSError as exc:
                kept.append(f"kept {path}: session {sid!r} could not be deleted ({exc.strerror or exc}); "
                            "delete it by hand")
    return removed, kept


def unrecorded_session_rows(data_dir: str | Path, client_id: str, known: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Session folders of this client under ``<data dir>/sessions`` that the database does not list.

    ``alliance analyze`` with a consent record writes a session folder but no database row; purge must find those
    too. A folder is the client's when its ``session.json`` names the client (``client_id``); unreadable files are
    skipped (they name nobody).

    Parameters
    ----------
    data_dir : str or Path
    client_id : str
    known : iterable of str
        Session ids the database already lists for the client.

    Returns
    -------
    list of dict
        Rows with ``session_id`` and ``out_dir``, as :func:`purge_session_folders` takes them.
    """
    import json

    sessions = Path(data_dir) / "sessions"
    known = set(known)
    rows = []
    for report in sorted(sessions.glob("*/session.json")) if sessions.is_dir() else ():
        if report.parent.name in known or report.parent.is_symlink():
            continue
        try:
            owner = json.loads(report.read_text(encoding="utf-8")).get("client_id")
        except (OSError, ValueError, AttributeError):
            continue
        if owner == client_id:
            rows.append({"session_id": report.parent.name, "out_dir": str(report.parent)})
    return rows


_STAMPED = re.compile(r"(.+)\.json\.(\d{4}-\d\d-\d\dT\d{6}[_-]\d{4})\.json")  # NAME.json.<time stamp>.json


def _paired(sidecar: Path) -> list[Path]:
    """The recording a sidecar was delivered with, by the inbox's naming rules, with its reason file.

    ``X.json`` goes with ``X`` (``NAME.ext.json``), or with ``NAME.ext`` for each recording suffix when ``X`` has
    none (``NAME.json``) and that recording has no sidecar of its own; a time-stamped copy
    ``X.json.<stamp>.json`` (:func:`flows.inbox.file_away`) goes with ``X.<stamp><suffix of X>``. Names are
    compared exactly: ``y.json`` never takes ``y.2.wav``.
    """
    folder, name = sidecar.parent, sidecar.name
    stamped = _STAMPED.fullmatch(name)
    if stamped:
        base, stamp = stamped.groups()
        recordings = [folder / f"{base}.{stamp}{Path(base).suffix}"]
    else:
        base = name[: -len(".json")]
        if Path(base).suffix.lower() in AUDIO_SUFFIXES:
            recordings = [folder / base]
        else:
            recordings = [folder / f"{base}{suffix}" for suffix in AUDIO_SUFFIXES]
            recordings = [r for r in recordings if not (folder / f"{r.name}.json").exists()]
    return [p for r in recordings for p in (r, r.with_name(r.name + ".reason.txt")) if p.is_symlink() or p.exists()]


def _sessions_files(root: Path, rows: Iterable[dict[str, Any]]) -> list[Path]:
    """The recordings of the client's sessions, found by name and content in the filing folders, and their
    reason files (a recording whose own sidecar is gone is still the client's when its content is)."""
    out = []
    for row in rows:
        name, sha = row.get("recording_name"), row.get("recording_sha256")
        if not name or not sha:
            continue
        for folder in ("done", "failed", "rejected"):
            for p in filed_copies(root / folder, str(name)):
                try:
                    same = p.suffix.lower() in AUDIO_SUFFIXES and recording_sha256(p) == sha
                except OSError:  # unreadable: not known to be the client's; it stays
                    continue
                if same:
                    out += [p, *[r for r in (p.with_name(p.name + ".reason.txt"),) if r.exists()]]
    return out


def purge_inbox_files(inbox: str | Path, client_id: str,
                      rows: Iterable[dict[str, Any]] = ()) -> tuple[int, list[str]]:
    """Delete the client's recordings, sidecars and reason files anywhere in the inbox, only inside it.

    Taken: every sidecar whose ``client_id`` is the client's, with the recording it was delivered with
    (:func:`_paired`: exact names, time-stamped copies included) and its reason file; and the recordings of the
    client's sessions (``rows``), found in ``done/``, ``failed/`` and ``rejected/`` by name and content. Another
    client's files are never taken for sharing the start of a name. A symbolic link is removed itself, never
    what it points to.

    Parameters
    ----------
    inbox : str or Path
    client_id : str
    rows : iterable of dict
        The client's session rows (``recording_name``, ``recording_sha256``).

    Returns
    -------
    tuple of (int, list of str)
        Files deleted, and one line per file left in place with the reason.
    """
    root = Path(inbox)
    targets: dict[Path, None] = {}
    for sidecar in sorted(root.rglob("*.json")):
        # skipped: unreadable, not a JSON object, or another client's
        if sidecar_client(sidecar) == client_id:
            targets.update(dict.fromkeys([sidecar, *_paired(sidecar)]))
    targets.update(dict.fromkeys(_sessions_files(root, rows)))
    removed, kept = 0, []
    for f in targets:
        if f.is_dir() and not f.is_symlink():
            continue
        try:
            if remove_inside(f, root):
                removed += 1
        except ValueError as exc:
            kept.append(f"kept {f}: {exc}")
        except OSError as exc:
            kept.append(f"kept {f}: could not be deleted ({exc.strerror or exc}); delete it by hand")
    return removed, kept


def purge_feature_cache(data_dir: str | Path, rows: Iterable[dict[str, Any]]) -> tuple[int, list[str]]:
    """Delete the cached features of the client's recordings (``<data dir>/feature-cache/<sha256[:16]>-...``).

    ``alliance retrain`` and ``alliance evaluate`` cache each recording's per-window markers under a key that
    starts with its content hash (:func:`models.dataset.session_features`); the session rows keep that hash.

    Returns
    -------
    tuple of (int, list of str)
        Cache entries deleted, and one line per entry left in place with the reason.
    """
    cache = Path(data_dir) / "feature-cache"
    prefixes = {str(r["recording_sha256"])[:16] for r in rows if r.get("recording_sha256")}
    if not prefixes or not cache.is_dir() or cache.is_symlink():
        return 0, []
    removed, kept = 0, []
    for entry in sorted(cache.iterdir()):
        if entry.name.split("-", 1)[0] not in prefixes:
            continue
        try:
            removed += remove_inside(entry, cache)
        except (OSError, ValueError) as exc:
            kept.append(f"kept {entry}: could not be deleted ({getattr(exc, 'strerror', None) or exc}); delete it "
                        "by hand")
    return removed, kept


def is_export_of(folder: Path, session_id: str, client_id: str) -> bool:
    """Whether ``folder`` still looks like the export of this session: a real folder whose ``metadata.json`` names
    the session and the client.

    A folder or ``metadata.json`` that is a symbolic link never counts, so a
    purge cannot be led to delete another folder.

    Parameters
    ----------
    folder : Path
        Where the export was written.
    session_id : str
        The session it should hold.
    client_id : str
        The client it should belong to.

    Returns
    -------
    bool
        False also when the folder is gone or ``metadata.json`` is missing
        or malformed.
    """
    meta = folder / "metadata.json"
    if folder.is_symlink() or not folder.is_dir() or meta.is_symlink() or not meta.is_file():
        return False
    try:
        record = read_sidecar(meta)
    except MetadataError:
        return False
    return record.get("session_id") == session_id and record.get("client_id") == client_id


def purge_exports(store, client_id: str) -> tuple[int, list[str]]:
    """Delete the exported copies of the client's sessions the store knows of; audit each one.

    A copy is deleted only while it still looks like that session's export (:func:`is_export_of`); it is then
    marked removed. A copy not found (moved, or on another machine) or no longer recognisable stays listed.

    Parameters
    ----------
    store : flows.store.Store
    client_id : str

    Returns
    -------
    tuple of (int, list of str)
        Copies deleted, and one line per copy that remains with what to do.
    """
    removed, remains = 0, []
    for export in store.exports(client_id=client_id):
        path, sid = Path(export["path"]), export["session_id"]
        audit = dict(actor=ACTOR, client_id=client_id, session_id=sid, detail=str(path))
        if not path.exists() and not path.is_symlink():
            remains.append(f"remains {path}: exported copy of session {sid} not found there (moved, or on another "
                           "machine); delete it where it is")
            store.audit("export kept", outcome="not found", **audit)
            continue
        if not is_export_of(path, sid, client_id):
            remains.append(f"remains {path}: does not hold the metadata.json of session {sid} of client {client_id}, "
                           "so it was left in place; check it and delete it by hand")
            store.audit("export kept", outcome="refused", **audit)
            continue
        try:
            remove_inside(path, path.parent)
        except (ValueError, OSError) as exc:
            remains.append(f"remains {path}: could not be deleted ({getattr(exc, 'strerror', None) or exc}); "
                           "delete it by hand")
            store.audit("export kept", outcome="failed", **audit)
            continue
        store.mark_export_removed(export["id"])
        store.audit("export deleted", outcome="success", **audit)
        removed += 1
    return removed, remains
