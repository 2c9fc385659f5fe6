"""Convert a faster-whisper (CTranslate2) Whisper model into an openai-whisper checkpoint.

The bundled Whisper base model exists only in CTranslate2 form, and nothing
may be downloaded, so the openai-whisper backend gets its weights by
converting it. The conversion reads ``model.bin`` directly; it needs neither
CTranslate2 nor openai-whisper.

``model.bin`` (CTranslate2 binary format, version 6 here, 5 and above read)
is, little-endian:

- a header: ``uint32`` format version, the spec name (``uint16`` length, then
  that many bytes, NUL-terminated), ``uint32`` spec revision, ``uint32``
  number of variables;
- each variable: its name (as above), ``uint8`` rank, ``rank`` × ``uint32``
  dimensions, ``uint8`` data type id, ``uint32`` byte count, the raw data;
- ``uint32`` number of aliases, then (alias name, target name) pairs.

The Whisper spec stores self-attention q, k and v fused in one linear layer
(``linear_0``, rows in that order) and its output in ``linear_1``;
cross-attention stores q in ``linear_0``, k and v fused in ``linear_1`` and
the output in ``linear_2``. The decoder's output projection is an alias of
the token embedding (openai-whisper ties them the same way). Whisper's key
projections have no bias; the fused bias holds zeros in their place, which
:func:`openai_state_dict` checks. The cross-attention heads used for word
timing (``alignment_heads``) come from ``config.json``.

References
----------
.. [1] Radford, A. et al. (2023). Robust Speech Recognition via Large-Scale
   Weak Supervision. ICML. (the model and openai-whisper's parameter names)
.. [2] OpenNMT CTranslate2: ``python/ctranslate2/specs/whisper_spec.py`` and
   ``src/models/model.cc`` (the spec's variable names and the file format).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import struct
import tempfile
from pathlib import Path

import numpy as np

from pipeline.errors import BackendUnavailableError

# CTranslate2 DataType ids
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_BFLOAT16 = 5
MIN_FORMAT_VERSION = 5


class ModelConversionError(BackendUnavailableError):
    """A model file cannot be converted (not CTranslate2 Whisper, quantized, or damaged)."""


def _read_string(f, path: Path) -> str:
    raw = f.read(2)
    if len(raw) < 2:
        raise ModelConversionError(f"{path}: file ends inside the header; the model file is truncated")
    (n,) = struct.unpack("<H", raw)
    data = f.read(n)
    if len(data) < n:
        raise ModelConversionError(f"{path}: file ends inside a name; the model file is truncated")
    return data.rstrip(b"\0").decode("utf-8")


def _read_u32(f, path: Path) -> int:
    raw = f.read(4)
    if len(raw) < 4:
        raise ModelConversionError(f"{path}: file ends early; the model file is truncated")
    return struct.unpack("<I", raw)[0]


def read_ct2_model(path: Path) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    """Read a CTranslate2 ``model.bin``.

    Parameters
    ----------
    path : Path
        The ``model.bin`` file.

    Returns
    -------
    spec : str
        The model spec name (``WhisperSpec`` for Whisper).
    variables : dict of str to np.ndarray
        Every stored variable with its stored shape and dtype; a scalar has
        shape ``()``.
    aliases : dict of str to str
        Alias name to the name of the variable it shares.

    Raises
    ------
    ModelConversionError
        The file is not a CTranslate2 model of format version 5 or later, is
        truncated, or holds a data type this reader does not know.
    """
    path = Path(path)
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise ModelConversionError(f"{path}: cannot read the model file ({exc.strerror})") from exc
    try:
        with f:
            return _read_ct2(f, path)
    except (struct.error, IndexError, ValueError, UnicodeDecodeError) as exc:
        # a damaged file: cut inside a header field, or names and shapes that do not fit the data
        raise ModelConversionError(f"{path}: damaged CTranslate2 model file ({exc.__class__.__name__}: {exc})") from exc
    except (OSError, MemoryError) as exc:
        raise ModelConversionError(f"{path}: cannot read the model file ({exc})") from exc


MAX_VARIABLES = 100_000  # Whisper large has about 1,300


def _read_ct2(f, path: Path) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    version = _read_u32(f, path)
    if not MIN_FORMAT_VERSION <= version <= 64:
        raise ModelConversionError(f"{path}: not a CTranslate2 model.bin of format version {MIN_FORMAT_VERSION} "
                                   f"or later (header says {version})")
    spec = _read_string(f, path)
    _read_u32(f, path)  # spec revision
    count = _read_u32(f, path)
    if count > MAX_VARIABLES:
        raise ModelConversionError(f"{path}: header says {count} variables; the model file is damaged")
    variables: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = _read_string(f, path)
        rank = f.read(1)
        if not rank:
            raise ModelConversionError(f"{path}: file ends early; the model file is truncated")
        dims = struct.unpack(f"<{rank[0]}I", f.read(4 * rank[0]))
        dtype_id = f.read(1)
        if not dtype_id:
            raise ModelConversionError(f"{path}: file ends early; the model file is truncated")
        dtype_id = dtype_id[0]
        nbytes = _read_u32(f, path)
        data = f.read(nbytes)
        if len(data) < nbytes:
            raise ModelConversionError(f"{path}: variable {name} is cut off; the model file is truncated")
        if dtype_id == _BFLOAT16:  # the high half of a float32
            bits = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
        elif dtype_id in _DTYPES:
            array = np.frombuffer(data, dtype=np.dtype(_DTYPES[dtype_id]).newbyteorder("<"))
        else:
            raise ModelConversionError(f"{path}: variable {name} has unknown data type id {dtype_id}")
        variables[name] = array.reshape(dims)
    aliases = {}
    if version >= 3:
        for _ in range(_read_u32(f, path)):
            alias = _read_string(f, path)
            aliases[alias] = _read_string(f, path)
    return spec, variables, aliases


def _scalar(variables: dict[str, np.ndarray], name: str) -> int:
    return int(np.asarray(variables[name]).reshape(-1)[0])


def openai_state_dict(variables: dict[str, np.ndarray], aliases: dict[str, str],
                      alignment_heads: list[list[int]] | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """Map CTranslate2 Whisper variables to openai-whisper's names and shapes.

    Parameters
    ----------
    variables, aliases
        As returned by :func:`read_ct2_model`.
    alignment_heads : list of [layer, head], optional
        Only checked against the decoder's size here.

    Returns
    -------
    dims : dict
        ``whisper.model.ModelDimensions`` fields (n_mels, n_audio_ctx,
        n_audio_state, n_audio_head, n_audio_layer, n_vocab, n_text_ctx,
        n_text_state, n_text_head, n_text_layer).
    state : dict of str to np.ndarray
        openai-whisper ``state_dict`` entries, in the stored float dtype.

    Raises
    ------
    ModelConversionError
        A variable is missing, the model is quantized (int8 weights cannot
        be restored to floats faithfully), or the fused key bias is not zero.
    """
    v = dict(variables)
    for alias, target in aliases.items():
        if target in v:
            v[alias] = v[target]
    if any(name.endswith("weight_scale") for name in v):
        raise ModelConversionError("the model is quantized (int8 weights); convert a float16 or float32 "
                                   "CTranslate2 model instead")
    try:
        n_audio_layer = 1 + max(int(m.group(1)) for k in v if (m := re.match(r"encoder/layer_(\d+)/", k)))
        n_text_layer = 1 + max(int(m.group(1)) for k in v if (m := re.match(r"decoder/layer_(\d+)/", k)))
        emb = v["decoder/embeddings/weight"]
        dims = {
            "n_mels": int(v["encoder/conv1/weight"].shape[1]),
            "n_audio_ctx": int(v["encoder/position_encodings/encodings"].shape[0]),
            "n_audio_state": int(v["encoder/position_encodings/encodings"].shape[1]),
            "n_audio_head": _scalar(v, "encoder/num_heads"),
            "n_audio_layer": n_audio_layer,
            "n_vocab": int(emb.shape[0]),
            "n_text_ctx": int(v["decoder/position_encodings/encodings"].shape[0]),
            "n_text_state": int(emb.shape[1]),
            "n_text_head": _scalar(v, "decoder/num_heads"),
            "n_text_layer": n_text_layer,
        }
    except KeyError as exc:
        raise ModelConversionError(f"not a CTranslate2 Whisper model (missing {exc})") from exc
    except ValueError as exc:  # no encoder or decoder layers at all
        raise ModelConversionError("not a CTranslate2 Whisper model (no encoder or decoder layers)") from exc
    for layer, head in alignment_heads or ():
        if not (0 <= layer < n_text_layer and 0 <= head < dims["n_text_head"]):
            raise ModelConversionError(f"alignment head {[layer, head]} is outside the decoder "
                                       f"({n_text_layer} layers × {dims['n_text_head']} heads)")

    state: dict[str, np.ndarray] = {}

    def get(name: str) -> np.ndarray:
        try:
            return v[name]
        except KeyError:
            raise ModelConversionError(f"not a CTranslate2 Whisper model (missing {name})") from None

    def linear(dst: str, src: str, bias: bool = True) -> None:
        state[f"{dst}.weight"] = get(f"{src}/weight")
        if bias:
            state[f"{dst}.bias"] = get(f"{src}/bias")

    def norm(dst: str, src: str) -> None:
        state[f"{dst}.weight"] = get(f"{src}/gamma")
        state[f"{dst}.bias"] = get(f"{src}/beta")

    def split_fused(dst_prefix: str, src: str, parts: tuple[str, ...]) -> None:
        w, b = get(f"{src}/weight"), get(f"{src}/bias")
        n = w.shape[0] // len(parts)
        for i, part in enumerate(parts):
            state[f"{dst_prefix}.{part}.weight"] = w[i * n:(i + 1) * n]
            if part == "key":  # Whisper's key projection has no bias
                if np.any(b[i * n:(i + 1) * n] != 0):
                    raise ModelConversionError(f"{src}: the key bias is not zero; this is not a Whisper model")
            else:
                state[f"{dst_prefix}.{part}.bias"] = b[i * n:(i + 1) * n]

    def self_attention(dst: str, src: str) -> None:
        norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        split_fused(f"{dst}.attn", f"{src}/self_attention/linear_0", ("query", "key", "value"))
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")

    def ffn(dst: str, src: str) -> None:
        norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
        linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")

    linear("encoder.conv1", "encoder/conv1")
    linear("encoder.conv2", "encoder/conv2")
    state["encoder.positional_embedding"] = get("encoder/position_encodings/encodings")
    for i in range(n_audio_layer):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        self_attention(dst, src)
        ffn(dst, src)
    norm("encoder.ln_post", "encoder/layer_norm")

    state["decoder.token_embedding.weight"] = emb
    state["decoder.positional_embedding"] = get("decoder/position_encodings/encodings")
    for i in range(n_text_layer):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        self_attention(dst, src)
        norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
        split_fused(f"{dst}.cross_attn", f"{src}/attention/linear_1", ("key", "value"))
        linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
        ffn(dst, src)
    norm("decoder.ln", "decoder/layer_norm")
    projection = v.get("decoder/projection/weight")
    if projection is not None and projection is not emb and not np.array_equal(projection, emb):
        raise ModelConversionError("the decoder's output projection differs from the token embedding; "
                                   "openai-whisper ties them")
    return dims, state


def encode_alignment_heads(heads: list[list[int]], n_text_layer: int, n_text_head: int) -> str:
    """Encode alignment heads the way ``whisper.model.Whisper.set_alignment_heads`` reads them.

    Returns
    -------
    str
        base85 of the gzip of a boolean (n_text_layer × n_text_head) mask.
    """
    mask = np.zeros((n_text_layer, n_text_head), dtype=bool)
    for layer, head in heads:
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes(), mtime=0)).decode("ascii")


def convert_model(model_dir: Path, out_path: Path) -> Path:
    """Write an openai-whisper checkpoint converted from a CTranslate2 Whisper model directory.

    The checkpoint is a ``torch.save`` dict like openai-whisper's own:
    ``dims`` and ``model_state_dict`` (in the stored dtype: float16 for the
    bundled model, as openai-whisper's own releases), plus
    ``alignment_heads`` (see :func:`encode_alignment_heads`) from the
    model's ``config.json``. It is written to a temporary file and moved into
    place, so a reader never sees half a checkpoint.

    Parameters
    ----------
    model_dir : Path
        A faster-whisper model directory (``model.bin``, ``config.json``).
    out_path : Path
        The ``.pt`` file to write.

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    ModelConversionError
        See :func:`read_ct2_model` and :func:`openai_state_dict`; also a
        spec other than Whisper or a missing ``config.json``.
    """
    import torch

    model_dir, out_path = Path(model_dir), Path(out_path)
    config_path = model_dir / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelConversionError(f"{config_path}: cannot read the model's config.json ({exc})") from exc
    heads = config.get("alignment_heads") if isinstance(config, dict) else None
    if not isinstance(config, dict) or not (heads is None or (
            isinstance(heads, list) and all(isinstance(h, list) and len(h) == 2
                                            and all(isinstance(i, int) for i in h) for h in heads))):
        raise ModelConversionError(f"{config_path}: expected a JSON object whose alignment_heads is a list of "
                                   "[layer, head] pairs")
    heads = heads or []
    if out_path.is_dir():
        raise ModelConversionError(f"{out_path}: is a folder; give the .pt file to write")
    spec, variables, aliases = read_ct2_model(model_dir / "model.bin")
    if spec != "WhisperSpec":
        raise ModelConversionError(f"{model_dir / 'model.bin'}: a {spec} model, not Whisper")
    try:
        dims, state = openai_state_dict(variables, aliases, heads)
    except ModelConversionError as exc:
        raise ModelConversionError(f"{model_dir / 'model.bin'}: {exc}") from exc
    if not heads:  # openai-whisper's default: every head of the second half of the decoder
        heads = [[layer, h] for layer in range(dims["n_text_layer"] // 2, dims["n_text_layer"])
                 for h in range(dims["n_text_head"])]
    checkpoint = {
        "dims": dims,
        "model_state_dict": {k: torch.from_numpy(np.array(a)) for k, a in state.items()},
        "alignment_heads": encode_alignment_heads(heads, dims["n_text_layer"], dims["n_text_head"]),
        "converted_from": str(model_dir.name),
    }
    tmp = None
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=out_path.name + ".", dir=out_path.parent)
        os.close(fd)
        torch.save(checkpoint, tmp)
        os.replace(tmp, out_path)
    except (OSError, RuntimeError) as exc:
        raise ModelConversionError(f"{out_path}: cannot write the checkpoint ({exc})") from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return out_path
