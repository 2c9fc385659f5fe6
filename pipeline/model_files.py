"""Checks of a model file that a setting points at, before it is loaded.

Every model the analysis loads from a path a user may set (the overlapped-speech model, other CAM++ weights)
goes through :func:`model_file_sha256` first, so each way such a path can be wrong gives the same one line, naming
the file, the problem and the variable to fix.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import BackendUnavailableError, not_a_file


def model_file_sha256(path: str | Path, *, shown: str, setting: str) -> str:
    """The sha256 of a model file, once it is known to be a readable, non-empty regular file.

    Parameters
    ----------
    path : str or Path
        The model file.
    shown : str
        How messages name it, e.g. ``"overlap model /models/seg.onnx"``.
    setting : str
        What to fix, appended in parentheses, e.g. ``"ALLIANCE_OVERLAP__MODEL_PATH"``.

    Returns
    -------
    str
        64 lower-case hex digits (:func:`pipeline.audio.recording_sha256`).

    Raises
    ------
    BackendUnavailableError
        In one line: the path does not exist (or is a link that leads nowhere), is a folder, is not a regular file
        (a device, a pipe, a socket), is empty, or cannot be read.
    """
    from pipeline.audio import recording_sha256

    path = Path(path)
    what = not_a_file(path)
    if what == "a folder":
        raise BackendUnavailableError(f"{shown} is a folder, not a model file ({setting})")
    if what == "missing":
        raise BackendUnavailableError(f"{shown} does not exist ({setting})")
    if what is not None:
        raise BackendUnavailableError(f"{shown} is not a regular file ({what}) ({setting})")
    try:
        if path.stat().st_size == 0:
            raise BackendUnavailableError(f"{shown}: the file is empty ({setting})")
        return recording_sha256(path)
    except OSError as exc:
        raise BackendUnavailableError(f"{shown} cannot be read ({exc.strerror or type(exc).__name__}) "
                                      f"({setting})") from None
