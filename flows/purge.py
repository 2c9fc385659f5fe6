"""Removing one client's data (``alliance purge``); every delete first proves that it stays inside its folder.

A session folder is deleted only inside ``<data dir>/sessions``, an inbox file only inside the inbox, an exported
copy only when it still holds that session's ``metadata.json``. Whatever is left on disk is returned as one line
each (``kept ...`` / ``remains ...``), so the command can say what the operator still has to do; audit rows are
never deleted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from flows.inbox import sidecar_client
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


def purge_inbox_files(inbox: str | Path, client_id: str) -> tuple[int, list[str]]:
    """Delete the client's recordings, sidecars and reason files anywhere in the inbox, only inside it.

    A sidecar ``NAME.ext.json`` (or ``NAME.json``) whose ``client_id`` is the client's takes every file
    ``NAME.ext`` / ``NAME.ext.*`` next to it. A symbolic link is removed itself, never what it points to.

    Returns
    -------
    tuple of (int, list of str)
        Files deleted, and one line per file left in place with the reason.
    """
    root = Path(inbox)
    removed, kept = 0, []
    for sidecar in sorted(root.rglob("*.json")):
        # skipped: gone already (taken with another sidecar), unreadable, not a JSON object, or another client's
        if sidecar_client(sidecar) != client_id:
            continue
        stem = sidecar.name[:-5]  # "NAME.wav" for NAME.wav.json, "NAME" for NAME.json
        mine = [f for f in sidecar.parent.iterdir() if f.name == stem or f.name.startswith(stem + ".")]
        for f in dict.fromkeys([sidecar, *mine]):
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


def is_export_of(folder: Path, session_id: str, client_id: str) -> bool:
    """Whether ``folder`` still looks like the export of this session: a real folder whose ``metadata.json`` names
    the session and the client."""
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
