"""Identifiers and the paths they become: one rule for every id, and deletes that stay inside their folder.

Session, client and therapist ids name folders (``<data dir>/sessions/<session id>``), database rows and
audit entries, so an id such as ``..``, ``a/b`` or ``../../x`` could reach another client's data or leave the
data directory. Every id that enters the system (sidecar, metadata file, command line, web request, export)
is checked against one pattern, :data:`ID_PATTERN`: 1 to 64 characters, letters, digits, ``.``, ``_`` and
``-``, starting with a letter or digit (so ``.`` and ``..`` never match).

Files holding client data are created private to the service user (folders 0700, files 0600), whatever the
process umask (NEN 7510 access control on the host).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ID_RULE = "1–64 letters, digits, '.', '_' or '-', starting with a letter or digit"

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


class InvalidIdError(ValueError):
    """An id does not match :data:`ID_PATTERN`; the message names the field and shows the value."""


def is_valid_id(value: object) -> bool:
    """Whether ``value`` is a string matching :data:`ID_PATTERN` in full.

    Parameters
    ----------
    value : object
        The id as given; anything that is not a ``str`` is not valid.

    Returns
    -------
    bool
        True for 1 to 64 letters, digits, ``.``, ``_`` or ``-`` that start
        with a letter or digit (so never ``.``, ``..`` or a path with ``/``).
    """
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def check_id(value: object, field: str) -> str:
    """Return ``value`` when it is a valid id.

    Parameters
    ----------
    value : object
        The id as given.
    field : str
        Its name as the user knows it (``"session_id"``, ``"--session-id"``), repeated in the error.

    Returns
    -------
    str

    Raises
    ------
    InvalidIdError
        ``value`` is not a string of :data:`ID_PATTERN`.
    """
    if not is_valid_id(value):
        shown = value if not isinstance(value, str) or len(value) <= 80 else value[:77] + "..."
        raise InvalidIdError(f"{field} must be {ID_RULE}. Got {shown!r} instead.")
    return value  # type: ignore[return-value]


def id_from_name(name: str) -> str:
    """A valid id made from a file stem (default session id): other characters become ``-``.

    Parameters
    ----------
    name : str
        A file name stem such as ``"session 3 (kopie)"``.

    Returns
    -------
    str
        For example ``"session-3-kopie"``; ``"session"`` when nothing usable is left.
    """
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")[:64].strip("-._")
    return cleaned if is_valid_id(cleaned) else "session"


def contained(path: str | Path, owner: str | Path) -> Path:
    """Prove that ``path`` lies strictly inside the folder ``owner``; return it resolved.

    Symbolic links are resolved first, so a link that points out of ``owner`` does not pass.
    ``path`` need not exist.

    Parameters
    ----------
    path : str or Path
        The file or folder about to be touched.
    owner : str or Path
        The folder it must lie in.

    Returns
    -------
    Path
        ``path`` resolved (absolute, links followed).

    Raises
    ------
    ValueError
        ``path`` is ``owner`` itself or lies outside it.
    """
    root = Path(owner).resolve()
    target = Path(path).resolve()
    if target == root or root not in target.parents:
        raise ValueError(f"refusing to touch {path}: it is not inside {owner}")
    return target


def remove_inside(path: str | Path, owner: str | Path) -> bool:
    """Delete a file or folder tree, only after proving it lies inside ``owner`` (see :func:`contained`).

    A symbolic link is removed itself, never what it points to.

    Returns
    -------
    bool
        True when something was deleted, False when nothing was there.

    Raises
    ------
    ValueError
        ``path`` is not inside ``owner``; nothing was deleted.
    """
    p = Path(path)
    if p.is_symlink():
        # the link's own place (its folder resolved, its name kept) must be inside the owner; contained() would
        # resolve the link itself and judge its target instead
        if Path(owner).resolve() not in Path(p.parent).resolve().parents and \
                Path(p.parent).resolve() != Path(owner).resolve():
            raise ValueError(f"refusing to touch {path}: it is not inside {owner}")
        p.unlink()
        return True
    if not p.exists():
        return False
    target = contained(p, owner)
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()
    return True


def make_private_dir(path: str | Path) -> Path:
    """Create ``path`` (and missing parents) and make it 0700, whatever the umask; return it.

    Parents that already exist keep their mode; parents created here are made 0700 too.
    ``path`` itself is made 0700 even when it existed. A mode that cannot be
    set (a folder owned by another user) is left as it is, without an error.

    Parameters
    ----------
    path : str or Path
        The folder.

    Returns
    -------
    Path
        ``path``, as a Path.

    Raises
    ------
    OSError
        The folder cannot be created (the caller names the setting in its message).
    """
    p = Path(path)
    missing = [q for q in [p, *p.parents] if not q.exists()]
    p.mkdir(parents=True, exist_ok=True)
    for q in missing + [p]:
        try:
            os.chmod(q, PRIVATE_DIR_MODE)
        except PermissionError:
            pass
    return p


def private_umask() -> int:
    """Set the process umask to 0o077 (new files 0600, folders 0700); return the previous one."""
    return os.umask(0o077)


# control characters, line and paragraph separators, and the invisible format characters that reorder or hide
# text (bidirectional overrides and isolates, zero-width characters, the byte-order mark)
_UNPRINTABLE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]")
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def display_line(text: str) -> str:
    """``text`` as printed on one line: unchanged when every character is printable, else :func:`one_line`.

    For messages that may hold a ``repr()`` of a value (its backslashes would be doubled by :func:`one_line`) and
    names a user chose: a line break, a terminal escape or a right-to-left override is still escaped.
    """
    return text if text.isprintable() else one_line(text)


def one_line(text: str) -> str:
    """``text`` (a file name, or a message that holds one) on one line: control characters escaped.

    A tab, line break, backslash or other control character (an ANSI escape's ESC among them), or an invisible
    format character (a right-to-left override that makes ``x\u202egnp.wav`` show as ``xwav.png``), or a byte of a
    file name that is not UTF-8 (Python's ``\\udcff`` stand-in, which no UTF-8 file or database can hold) becomes ``\\t``,
    ``\\n``, ``\\\\``, ``\\x1b``..., Python's escapes, so a file name such as
    ``"a\\n2026-01-01T00:00:00\\tanalysis.wav"`` cannot print a fake line or recolour a terminal, in a run
    summary, a log, a reason file or the audit log; ``codecs.decode(text, "unicode_escape")`` gives the exact
    value back on ASCII text.

    Parameters
    ----------
    text : str
        The raw text.

    Returns
    -------
    str
        The text with no line break, tab or other control character left.
    """
    return _UNPRINTABLE.sub(lambda m: _ESCAPES.get(m.group(), f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                                   else f"\\u{ord(m.group()):04x}"), str(text))
