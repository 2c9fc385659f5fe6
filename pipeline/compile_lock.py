"""One process at a time compiles librosa's cached numba functions.

librosa compiles several generalized ufuncs (``@guvectorize(..., cache=True)``: ``util.localmax``, ``util.localmin``,
``util.peak_pick``, ``zero_crossings``, the pitch interpolation) when their module is first imported, and numba keeps
the machine code on disk in two files per function: the kernel and the ufunc wrapper that calls it by a symbol name
carrying a per-process counter. When two processes fill an empty cache at the same time, the kernel of one and the
wrapper of the other can end up side by side; every later process that loads that pair calls a null pointer and dies
with a segmentation fault (numba issue 10128, open in numba 0.68). A fresh installation analysing sessions in several
processes at once (a work pool, a Dask cluster, the test suite) hits exactly that: ``librosa.pyin`` (prosody) calls
``util.localmin``.

:func:`install` puts an import hook in front of Python's own finders: the module code of ``librosa`` and its
submodules runs while this process holds an exclusive lock on a file (``flock``), so a process compiles and saves
while no other does, and a process that comes later finds every pair complete and only loads it. Nothing else is
changed: the modules, their loaders and numba's cache location stay as they are.
"""

from __future__ import annotations

import fcntl
import importlib.abc
import importlib.machinery
import logging
import os
import sys
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

GUARDED = ("librosa",)
"""Top-level packages whose module code runs under the lock."""

LOCK_NAME = "numba-compile.lock"


def lock_path() -> Path:
    """The lock file: in ``NUMBA_CACHE_DIR`` when set (numba keeps its cache there), else ``~/.cache/alliance-monitor/``.

    Returns
    -------
    Path
        A file private to this user; it is created when first locked.
    """
    numba_dir = os.environ.get("NUMBA_CACHE_DIR")
    if numba_dir:
        return Path(numba_dir) / LOCK_NAME
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "alliance-monitor" / LOCK_NAME


class CompileLock:
    """A lock held across processes (``flock`` on :func:`lock_path`) and re-entrant within this one.

    A module's code may import other guarded modules; only the outermost entry takes the file lock. When the file
    cannot be opened (a read-only home folder), the import goes ahead unguarded, as it would without this module.
    """

    def __init__(self) -> None:
        self._mutex = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def __enter__(self) -> CompileLock:
        self._mutex.acquire()
        if self._depth == 0:
            self._fd = _open_locked(lock_path())
        self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
        self._mutex.release()


def _open_locked(path: Path) -> int | None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        logger.debug("%s: cannot open the compile lock (%s); librosa is imported without it", path, exc.strerror)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        logger.info("another process is compiling librosa's numba functions; waiting for it (lock %s)", path)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:  # a file system without flock
        logger.debug("%s: cannot lock (%s); librosa is imported without it", path, exc.strerror)
        os.close(fd)
        return None
    return fd


class _LockedLoader(importlib.abc.Loader):
    """A module's own loader, its ``exec_module`` run under the compile lock; everything else passed through."""

    def __init__(self, loader, lock: CompileLock) -> None:
        self._loader = loader
        self._lock = lock

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        with self._lock:
            self._loader.exec_module(module)

    def __getattr__(self, name):  # get_resource_reader, is_package, get_filename, ...
        return getattr(self._loader, name)


class _LockedFinder(importlib.abc.MetaPathFinder):
    def __init__(self, lock: CompileLock) -> None:
        self.lock = lock

    def find_spec(self, fullname, path, target=None):
        if fullname.partition(".")[0] not in GUARDED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or isinstance(spec.loader, _LockedLoader):
            return spec
        spec.loader = _LockedLoader(spec.loader, self.lock)
        return spec


def install() -> None:
    """Run librosa's module code under the compile lock in this process (idempotent).

    Call before librosa is imported; :mod:`pipeline` does on import. Modules already imported are left alone.

    References
    ----------
    numba issue 10128, "Race condition in GUFunc caching can lead to segmentation faults".
    """
    if not any(isinstance(f, _LockedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _LockedFinder(CompileLock()))


def compile_librosa() -> None:
    """Import the librosa modules that compile numba functions, so their cache is filled once (``make install``)."""
    install()
    import librosa.core.audio  # noqa: F401
    import librosa.core.pitch  # noqa: F401
    import librosa.util.utils  # noqa: F401
