"""Error hierarchy shared by every stage.

Messages name the file, what was found, what was expected and what to do.
They never contain transcript text.
"""

from __future__ import annotations

from pathlib import Path


# file names every session folder of a dataset shares: a message naming one also names its folder
GENERIC_NAMES = frozenset({"metadata.json", "ruptures.csv"})
ANNOTATION_SUFFIXES = frozenset({".eaf", ".textgrid"})  # any name, one per session folder


def not_a_file(path: str | Path) -> str | None:
    """What stands at ``path`` when it is not a regular file, in the words every message uses.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    str or None
        None for a regular file (or a link to one); ``"missing"`` when nothing is there (or a link leads nowhere);
        ``"a folder"``; ``"a device, a pipe or a socket"`` for anything else.
    """
    path = Path(path)
    if path.is_file():
        return None
    if path.is_dir():
        return "a folder"
    return "a device, a pipe or a socket" if path.exists() else "missing"


class PipelineError(Exception):
    """Base class of every error raised on purpose by alliance-monitor."""


class InputError(PipelineError):
    """The input itself is unusable; retrying will not help.

    Parameters
    ----------
    path : str or Path or None
        The offending file, repeated at the start of the message (with its folder for the files every session
        has: ``GENERIC_NAMES``, a dataset's ``recording.*`` and its ``.eaf`` or ``.TextGrid``).
    problem : str
        What was found and what was expected.
    """

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        if self.path is None:
            prefix = ""
        elif ((self.path.name in GENERIC_NAMES or self.path.stem == "recording"
               or self.path.suffix.lower() in ANNOTATION_SUFFIXES) and self.path.parent.name):
            # every session has one (a dataset's recording.wav, its ELAN or Praat file, ...): name the session too
            prefix = f"{self.path.parent.name}/{self.path.name}: "
        else:
            prefix = f"{self.path.name}: "
        super().__init__(f"{prefix}{problem}")


class AudioDecodeError(InputError):
    """The file is missing, not audio, or cannot be decoded."""


class EmptyAudioError(InputError):
    """The file decodes to no samples (0 bytes, or an empty stream)."""


class ConsentError(InputError):
    """The consent record is missing or does not allow the analysis."""


class MetadataError(InputError):
    """The session metadata file is malformed."""


class StageError(PipelineError):
    """A stage failed for a reason that is not the input's fault."""


class BackendUnavailableError(PipelineError):
    """A model backend or its weights are not installed or not found."""


class ModelArtifactError(PipelineError):
    """A saved classifier does not match this code (features, versions)."""


class ConfigError(PipelineError):
    """A setting names something this machine cannot use (a data folder that cannot be created or written, a
    database that cannot be opened); the message starts with the setting's name, on one line."""
