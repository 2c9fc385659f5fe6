"""The clinic's inbox: recordings with their sidecars, the folders they are filed in, and how long they stay.

::

    <inbox>/NAME.ext, NAME.ext.json   a new recording with its sidecar (or NAME.json)
    <inbox>/done/       analysed, or a second copy; the recording until ALLIANCE_AUDIO_RETENTION_DAYS,
                        the sidecar stays
    <inbox>/rejected/   refused before analysis (no valid consent, bad sidecar), with NAME.ext.reason.txt;
                        until ALLIANCE_REJECTED_RETENTION_DAYS
    <inbox>/failed/     the analysis failed, or refused (a reused session id, a possible misfiling), with
                        NAME.ext.reason.txt; until ALLIANCE_FAILED_RETENTION_DAYS

What counts as what (:func:`scan_inbox`), before any file is read:

* a **recording** is an entry directly in the inbox whose suffix is in ``AUDIO_SUFFIXES``; its **sidecar** is
  ``NAME.ext.json``, else ``NAME.json``;
* a recording that is a **symbolic link**, or whose sidecar is one (or is a folder, a pipe), is refused as "not a
  regular file": the link itself goes to ``rejected/``, what it points to is never read, dated or changed;
* a ``NAME.json`` that is the sidecar of **more than one** recording (``NAME.wav`` and ``NAME.mp3``, neither with
  its own ``NAME.ext.json``) refuses all of them: all go to ``rejected/`` together, the sidecar with them, and
  none moves while one of them is still being copied;
* a recording with **two sidecars**, ``NAME.ext.json`` and a ``NAME.json`` that is no other recording's sidecar,
  is refused naming both (both go with it); a ``NAME.json`` that is the sidecar of another recording
  (``NAME.mp3`` without ``NAME.mp3.json``) is that recording's, and ``NAME.wav`` keeps its ``NAME.wav.json``;
* everything else (a sidecar without a recording, other files, folders, links that are not recordings) is
  **ignored**: listed in the run summary with a one-line reason, neither moved nor deleted (the clinic may still
  be copying), and without an audit row (it is no recording of anyone yet).

Every file filed in ``done/``, ``rejected/`` or ``failed/`` is 0600 and each folder 0700, whatever the umask.
File names go into summaries, logs, reason files and audit rows through :func:`one_line`, so a name with a line
break or tab cannot print a fake line.

A file's age in its folder counts from the moment it was filed there (:func:`file_away` dates it), and every
delete proves first that it stays inside its folder (:func:`pipeline.ids.remove_inside`). The reason files are
kept: they say what happened, without the audio or the names in the sidecar.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from flows.store import Store, now
from pipeline.audio import AUDIO_SUFFIXES, recording_sha256
from pipeline.errors import MetadataError
from pipeline.ids import id_from_name, is_valid_id, make_private_dir, one_line, remove_inside
from pipeline.sidecar import read_sidecar

PRIVATE_FILE_MODE = 0o600
FILING_FOLDERS = ("done", "rejected", "failed")


def is_regular(path: Path) -> bool:
    """True when ``path`` is a regular file itself: not a symbolic link, folder, pipe or device.

    The path is examined with ``lstat``, so a link is never followed.

    Parameters
    ----------
    path : Path
        Any path.

    Returns
    -------
    bool
        False also when the path does not exist or cannot be examined.
    """
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def recordings_in(folder: Path) -> list[Path]:
    """The recordings in ``folder``: regular files (not links) whose suffix is in ``AUDIO_SUFFIXES``, sorted.

    Only ``folder`` itself is listed, not its subfolders. Suffixes are
    compared in lower case.

    Parameters
    ----------
    folder : Path
        The inbox or a filing folder.

    Returns
    -------
    list of Path
        Sorted by path; empty when there are none.

    Raises
    ------
    OSError
        ``folder`` is missing, not a folder or cannot be listed.
    """
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and is_regular(p))


def sidecar_of(audio: Path) -> Path | None:
    """``NAME.ext.json`` next to the recording, else ``NAME.json``; None when neither is a regular file.

    A symbolic link is never taken as a sidecar: its target is not read.

    Parameters
    ----------
    audio : Path
        The recording, for example ``inbox/s12.m4a``.

    Returns
    -------
    Path or None
        ``inbox/s12.m4a.json`` when it is a regular file, else
        ``inbox/s12.json`` when that is, else None.
    """
    for candidate in (audio.with_name(audio.name + ".json"), audio.with_suffix(".json")):
        if is_regular(candidate):
            return candidate
    return None


@dataclass(frozen=True)
class Delivery:
    """A recording found in the inbox, with the sidecar files that go with it (see :func:`scan_inbox`).

    Attributes
    ----------
    audio : Path
        The recording (a regular file, or a symbolic link that is refused).
    sidecars : tuple of Path
        Every sidecar file that is filed with it: none, one, or two when it is ambiguous.
    problem : str or None
        Why it is refused before any of its files is read, one line naming the files; None when it is screened
        as usual, with :attr:`sidecar` as its consent record.
    group : tuple of Path
        The recordings that are filed together, itself included (several when they share one ``NAME.json``):
        none of them is moved while one of them is still being copied.
    """

    audio: Path
    sidecars: tuple[Path, ...] = ()
    problem: str | None = None
    group: tuple[Path, ...] = ()

    @property
    def sidecar(self) -> Path | None:
        """The one sidecar to read, or None (no sidecar, or a problem)."""
        return self.sidecars[0] if self.sidecars and self.problem is None else None


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _not_regular(p: Path) -> str:
    """What ``p`` is instead of a regular file, for a message."""
    if p.is_symlink():
        return "a symbolic link to a folder" if p.is_dir() else "a symbolic link"
    if p.is_dir():
        return "a folder"
    return "a pipe, socket or device"


def _utf8(name: str) -> bool:
    """Whether a file name is valid UTF-8 (Python stands in ``\\udcXX`` for each byte that is not)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def scan_inbox(folder: Path) -> tuple[list[Delivery], list[tuple[Path, str]]]:
    """Sort what lies in the inbox into recordings, with their sidecars, and things that are ignored.

    The rules (see the module docstring): a recording is a file directly in the inbox whose suffix is in
    ``AUDIO_SUFFIXES``; its sidecar is ``NAME.ext.json``, else ``NAME.json``. Refused before anything is read
    (``problem``): a recording that is a symbolic link; a recording whose file name is not valid UTF-8 (no reason
    file, log or audit row could name it as it is); a sidecar that is not a regular file; a ``NAME.json``
    that is the sidecar of more than one recording (all of them are refused); a recording with both
    ``NAME.ext.json`` and a ``NAME.json`` that is no other recording's sidecar. Nothing is followed, opened or
    moved here.

    Parameters
    ----------
    folder : Path
        The inbox.

    Returns
    -------
    deliveries : list of Delivery
        Every recording, sorted by name.
    ignored : list of (Path, str)
        Everything else except the filing folders (``done/``, ``rejected/``, ``failed/``), each with a one-line
        reason: sidecars without a recording, other files, folders, links that are not recordings.
    """
    entries = sorted(folder.iterdir())
    audio = [p for p in entries if p.suffix.lower() in AUDIO_SUFFIXES and (p.is_symlink() or is_regular(p))]
    lexists = os.path.lexists

    def own(a: Path) -> Path | None:
        p = a.with_name(a.name + ".json")
        return p if lexists(p) else None

    def plain(a: Path) -> Path | None:
        p = a.with_suffix(".json")
        return p if lexists(p) else None

    takers: dict[Path, list[Path]] = {}  # NAME.json → the recordings without NAME.ext.json that take it
    for a in audio:
        if own(a) is None and plain(a) is not None:
            takers.setdefault(plain(a), []).append(a)
    deliveries, used = [], set()
    for a in audio:
        o, pl = own(a), plain(a)
        sidecars = tuple(p for p in (o, pl) if p is not None and (p is o or o is None or p not in takers))
        used.update(sidecars)
        group, problem = (a,), None
        if a.is_symlink():
            problem = (f"{a.name}: {_not_regular(a)}, not a regular file; links are not followed (copy the recording "
                       "itself into the inbox)")
        elif not _utf8(a.name):
            problem = (f"{a.name}: its file name is not valid UTF-8 (a byte no text can hold); rename it (letters, "
                       "digits, '-' and '_') and deliver it again")
        elif len(sidecars) == 2:
            problem = (f"{a.name}: two sidecars, {o.name} and {pl.name}: it is not clear which consent record "
                       f"applies; keep only {o.name}")
        elif o is None and pl is not None and len(takers[pl]) > 1:
            group = tuple(takers[pl])
            problem = (f"{a.name}: {pl.name} is the sidecar of {_and([t.name for t in group])}; give each "
                       "recording its own NAME.ext.json")
        elif sidecars and not is_regular(sidecars[0]):
            problem = (f"{a.name}: its sidecar {sidecars[0].name} is {_not_regular(sidecars[0])}, not a regular "
                       "file; it was not read")
        deliveries.append(Delivery(a, sidecars, problem, group))
    ignored = []
    for p in entries:
        if p in used or p in audio or (p.name in FILING_FOLDERS and p.is_dir() and not p.is_symlink()):
            continue
        if p.is_symlink():
            why = f"{_not_regular(p)}: links are not followed"
        elif p.is_dir():
            why = "a folder: recordings go directly in the inbox, folders are not searched"
        elif not is_regular(p):
            why = f"{_not_regular(p)}: not a recording"
        elif p.suffix.lower() == ".json":
            why = f"a sidecar with no recording (NAME.ext or NAME.json, ext one of {' '.join(AUDIO_SUFFIXES)})"
        else:
            why = f"not a recording (its suffix is not one of {' '.join(AUDIO_SUFFIXES)})"
        ignored.append((p, why + "; left where it is"))
    return deliveries, ignored


def client_of(record: Mapping[str, Any]) -> str | None:
    """A sidecar's client id when it is a valid id, else None: an invalid one is never written as a client.

    Parameters
    ----------
    record : mapping
        A parsed sidecar; ``client_id`` is read.

    Returns
    -------
    str or None
        The id when it matches :data:`pipeline.ids.ID_PATTERN`; None when it
        is missing, not a string or not valid.
    """
    value = record.get("client_id")
    return value if is_valid_id(value) else None


def sidecar_client(sidecar: Path | None) -> str | None:
    """The valid client id in a sidecar file (see :func:`client_of`); None when there is none or it cannot be read.

    A path that is not a regular file (a link, a folder) is not read.

    Parameters
    ----------
    sidecar : Path or None
        The sidecar file, or None when the recording has none.

    Returns
    -------
    str or None
        The client id; None also when the file is malformed
        (:class:`~pipeline.errors.MetadataError` is not raised).
    """
    if sidecar is None or not is_regular(sidecar):
        return None
    try:
        return client_of(read_sidecar(sidecar))
    except MetadataError:
        return None


FUTURE_SLACK_S = 60.0  # a modification time further ahead than this was not set by a copy under way


def settled(path: Path, seconds: float) -> bool:
    """True when the file has not changed for ``seconds`` (it is not still being copied).

    A copy under way keeps setting the modification time to now; one more than a minute in the future (a
    recorder with a wrong clock, a copy that kept a time stamp) is not a copy under way, and would otherwise
    leave the recording waiting for months. A file that has gone counts as settled: the run then reports it
    in one line when it cannot read it.

    Parameters
    ----------
    path : Path
        The file (links are followed).
    seconds : float >= 0
        How long, in seconds, the modification time must lie in the past.

    Returns
    -------
    bool
        True when the file is at least ``seconds`` old, dated more than 60 s
        in the future, or cannot be examined.
    """
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        return True
    return age >= seconds or age < -FUTURE_SLACK_S


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new or truncated ``path``, 0600, never through a symbolic link already there."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), PRIVATE_FILE_MODE)
        f.write(text)


def file_away(files: list[Path | None], folder: Path, *, reason: str | None = None) -> list[Path]:
    """Move a recording and its sidecar into ``folder`` (``done/``, ``rejected/``, ``failed/``), private, dated now.

    The folder is created private (0700: it holds recordings of minors, whatever the umask) and every file filed
    there is made 0600, the reason file too. A name already there gets a time stamp instead of being overwritten.
    Retention counts from the moment a file arrived in its folder: a recording copied with its original time
    stamp would otherwise be deleted at the next run. A symbolic link is moved as the link itself: what it points
    to is never read, dated or chmod-ed. Anything else (a sidecar name that is a folder, a pipe, a device) stays
    where it is: retention deletes only files and links, so a folder filed here would stay for good.

    Parameters
    ----------
    files : list of Path or None
        The recording first, then its sidecar(s); None, files that no longer exist, and entries that are neither
        regular files nor links are skipped.
    folder : Path
        Where they go; created when missing.
    reason : str, optional
        Written to ``<recording>.reason.txt`` next to the moved recording, on one line (control characters
        escaped, see :func:`one_line`).

    Returns
    -------
    list of Path
        Where the files are now.

    Raises
    ------
    OSError
        ``folder`` is a link (nothing is moved), or a file could not be moved or the reason not written.
    """
    if folder.is_symlink():  # checked at the run's start too; swapped for a link since (third trial, stop 44)
        raise OSError(errno.ELOOP, f"{folder.name}/ is a link; recordings are never moved through it")
    make_private_dir(folder)
    stamp = now().replace(":", "").replace("+", "_")
    moved = []
    for f in files:
        if f is not None and os.path.lexists(f) and (f.is_symlink() or is_regular(f)):
            target = folder / f.name
            if os.path.lexists(target):
                target = folder / f"{f.name}.{stamp}{f.suffix}"
            link = f.is_symlink()
            shutil.move(str(f), str(target))  # a link is moved (or re-created) as the link itself
            if link:
                os.utime(target, follow_symlinks=False)
            else:
                os.chmod(target, PRIVATE_FILE_MODE)
                os.utime(target)
            moved.append(target)
    if reason is not None and moved:
        _write_private(moved[0].with_name(moved[0].name + ".reason.txt"), one_line(reason) + "\n")
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
    for p in filed_copies(Path(inbox_dir) / "done", row["recording_name"]):
        if recording_sha256(p) == row.get("recording_sha256"):
            return p
    return None


def session_sidecar(inbox_dir: Path | None, row: Mapping[str, Any]) -> Path | None:
    """The sidecar in ``<inbox>/done/`` that was delivered with this session's recording, or None.

    A later recording delivered under the same file name is filed with a time stamp, and so is its sidecar
    (:func:`file_away`); so every sidecar filed under the recording's name (``NAME.ext.json`` or ``NAME.json``,
    time-stamped copies included) is read, and only one naming this session is taken: its ``client_id`` (when
    it has one) is the row's, and its ``session_id`` (or, without one, the id made from the file name) is the
    row's. Another
    client's record must never stand for this session's consent, date or age.

    Parameters
    ----------
    inbox_dir : Path or None
        The nightly inbox (``ALLIANCE_INBOX_DIR``); None when none is set.
    row : mapping
        The session's database row: ``session_id``, ``client_id`` and ``recording_name``.

    Returns
    -------
    Path or None
    """
    if inbox_dir is None or not row.get("recording_name"):
        return None
    done, name = Path(inbox_dir) / "done", str(row["recording_name"])
    stem = Path(name).stem
    for base in (f"{name}.json", f"{stem}.json"):
        for path in filed_copies(done, base):
            if not path.name.endswith(".json"):
                continue
            try:
                data = json.loads(path.read_text(encoding="utf-8-sig"))
            except (OSError, ValueError):
                continue
            if (isinstance(data, dict) and data.get("client_id", row.get("client_id")) == row.get("client_id")
                    and data.get("session_id", id_from_name(stem)) == row.get("session_id")):
                return path
    return None


def filed_copies(folder: Path, name: str) -> list[Path]:
    """Regular files in ``folder`` filed under ``name``: ``name`` itself and its time-stamped copies.

    :func:`file_away` files a second file of the same name as ``NAME.<time stamp><suffix>``. The names are
    compared as text, never as a pattern, so a name such as ``a[1].wav`` is found too.

    Parameters
    ----------
    folder : Path
        A filing folder (``done/``).
    name : str
        The file name as delivered.

    Returns
    -------
    list of Path
        Sorted by name; empty when ``folder`` is not a folder.
    """
    if not folder.is_dir() or folder.is_symlink():
        return []
    return sorted(p for p in folder.iterdir() if (p.name == name or p.name.startswith(name + ".")) and is_regular(p))


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
    # a symbolic link (filed by an earlier version) is deleted as the link itself, aged by its own time stamp
    for audio in sorted(p for p in done.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and
                        (is_regular(p) or p.is_symlink())):
        if days == 0 or audio.lstat().st_mtime < limit:
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
                    detail=f"raw audio {one_line(audio.name)}{' and its sidecar' if sidecar else ''} {why}")

    def orphan(sidecar: Path) -> bool:
        base = sidecar.name[: -len(".json")]
        return not any(os.path.lexists(folder / name) for name in (base, *(base + s for s in AUDIO_SUFFIXES)))

    # sidecars whose recording is gone or was filed under a time-stamped name: they hold names and consent
    for sidecar in sorted(p for p in folder.iterdir() if p.suffix.lower() == ".json" and expired(p) and orphan(p)):
        client = sidecar_client(sidecar)
        n += remove_inside(sidecar, folder)
        store.audit("deleted", actor=actor, outcome="success", client_id=client, detail=f"sidecar {sidecar.name} {why}")
    return n


# --------------------------------------------------------------------------------------------------------------
# Claims: which recording a nightly run is analysing into which session folder, until the run records it
# --------------------------------------------------------------------------------------------------------------
CLAIMS_FOLDER = "nightly-claims"


def write_claim(data_dir: Path, session_id: str, *, digest: str, client: str | None) -> None:
    """Note, before analysing, that ``session_id`` is being made from the recording ``digest`` of ``client``.

    A run stopped between a session's report being published and the run recording it leaves the folder without a
    database row; the next run, finding this claim for the same recording and client, analyses it again instead of
    refusing its session id as taken (third trial, stop 44). Removed by :func:`drop_claim` once recorded.

    Parameters
    ----------
    data_dir : Path
        The data folder; claims live in ``<data dir>/nightly-claims/<session id>.json`` (0600, folder 0700).
    session_id : str
        A checked session id (:func:`pipeline.ids.check_id`), so a safe file name.
    digest : str
        sha256 of the recording, hexadecimal.
    client : str or None
        The client pseudonym from the sidecar.

    Raises
    ------
    OSError
        The claim cannot be written.
    ValueError
        ``session_id`` is not a valid id (never a file name outside the claims folder).
    """
    path = _claim_path(data_dir, session_id)
    folder = path.parent
    make_private_dir(folder)
    part = folder / f".{session_id}.json.part"
    part.write_text(json.dumps({"sha256": digest, "client_id": client}), encoding="utf-8")
    os.chmod(part, PRIVATE_FILE_MODE)
    os.replace(part, path)


def _claim_path(data_dir: Path, session_id: str) -> Path:
    """Where the claim of ``session_id`` lives; the id is checked first, so the name stays in the claims folder."""
    if not is_valid_id(session_id):
        raise ValueError(f"session id {session_id!r} is not a valid id")
    return Path(data_dir) / CLAIMS_FOLDER / f"{session_id}.json"


def claim_of(data_dir: Path, session_id: str) -> dict | None:
    """The claim :func:`write_claim` left for ``session_id``, or None when there is none or it cannot be read."""
    try:
        claim = json.loads(_claim_path(data_dir, session_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return claim if isinstance(claim, dict) else None


def drop_claim(data_dir: Path, session_id: str) -> None:
    """Remove the claim of ``session_id`` (recorded, or its folder removed); nothing when there is none."""
    with contextlib.suppress(OSError, ValueError):
        remove_inside(_claim_path(data_dir, session_id), Path(data_dir) / CLAIMS_FOLDER)


def purge_claims(data_dir: Path, client: str) -> int:
    """Remove every claim of ``client`` (``alliance purge``); returns how many were removed."""
    removed = 0
    for path in sorted((Path(data_dir) / CLAIMS_FOLDER).glob("*.json")):
        claim = claim_of(data_dir, path.stem)  # None for a name that is not a valid session id
        if claim is not None and claim.get("client_id") == client:
            with contextlib.suppress(OSError, ValueError):
                removed += remove_inside(path, Path(data_dir) / CLAIMS_FOLDER)
    return removed
