"""``.safetensors``: an 8-byte little-endian header length, a JSON header (name -> dtype, shape,
data_offsets), then the tensors' raw little-endian bytes, back to back.

The header is bounded before it is parsed (clause 13.5): at most ``MAX_SAFETENSORS_HEADER`` bytes,
an estimate of the objects the JSON parser would build within ``MAX_JSON_OBJECT_BYTES``, and
integers of at most ``MAX_INT_DIGITS`` digits. Tensors are read one at a time, straight into
their arrays."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from parcnetv2.errors import WeightsError, brief
from parcnetv2.reference.checkpoint.dtypes import BY_ST_CODE, DType, to_native
from parcnetv2.reference.checkpoint.internal_errors import BadFile, shorten
from parcnetv2.reference.checkpoint.limits import (
    MAX_EXTENT,
    MAX_INT_DIGITS,
    MAX_JSON_OBJECT_BYTES,
    MAX_NDIM,
    MAX_SAFETENSORS_HEADER,
)
from parcnetv2.reference.checkpoint.wrappers import strip_prefix

_MAX_HEADER = 100 << 20  # the limit of the reference implementation: what still looks like one
# Estimated bytes per JSON token (a container, a string or a number, with its slot in its parent),
# plus 4 bytes per character (a str of the widest characters).
_JSON_TOKEN = 96


def looks_like_safetensors(head: bytes, size: int) -> bool:
    """Whether a file of ``size`` bytes that starts with ``head`` has a safetensors header."""
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= _MAX_HEADER and 8 + n <= size and head[8:9] == b"{"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise BadFile(f"safetensors header names {brief(k)} twice")
        d[k] = v
    return d


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise BadFile(f"safetensors header has a number of {len(text)} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _bounded_float(text: str) -> float:
    if len(text) > MAX_INT_DIGITS:
        raise BadFile(f"safetensors header has a number of {len(text)} characters (at most {MAX_INT_DIGITS})")
    return float(text)


def _parse_header(raw: bytes) -> dict[str, Any]:
    """The JSON header as a dict, parsed only once its estimated objects fit the limit."""
    tokens = raw.count(b'"') // 2 + raw.count(b"{") + raw.count(b"[") + raw.count(b",") + 1
    estimate = _JSON_TOKEN * tokens + 4 * len(raw)
    if estimate > MAX_JSON_OBJECT_BYTES:
        raise BadFile(f"safetensors header of {len(raw)} bytes would build about {estimate >> 20} MiB of "
                      f"objects (limit {MAX_JSON_OBJECT_BYTES >> 20} MiB)")  # fmt: skip
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadFile("safetensors header is not UTF-8") from None
    if not text.startswith("{"):
        raise BadFile("safetensors header is not a JSON object")
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates, parse_int=_bounded_int,
                            parse_float=_bounded_float)  # fmt: skip
    except json.JSONDecodeError as e:
        raise BadFile(f"safetensors header is not valid JSON ({shorten(str(e))})") from None
    except RecursionError:
        raise BadFile("safetensors header nests too deeply") from None
    if not isinstance(header, dict):
        raise BadFile("safetensors header is not a JSON object")
    return header


def read_safetensors(f: Any, size: int) -> dict[str, np.ndarray]:
    """The tensors of the open file ``f`` of ``size`` bytes; the header must describe data that
    covers the rest of the file exactly, with no gaps or overlaps."""
    head = f.read(8)
    if len(head) < 8:
        raise BadFile("not a safetensors file: shorter than its 8-byte header length")
    n = int.from_bytes(head, "little")
    if n > MAX_SAFETENSORS_HEADER:
        raise BadFile(f"safetensors header length {n} is over the {MAX_SAFETENSORS_HEADER >> 20} MiB limit")
    if 8 + n > size:
        raise BadFile(f"safetensors header length {n} runs past the end of the file "
                      f"({size} bytes)")  # fmt: skip
    header = _parse_header(f.read(n))
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise BadFile("safetensors __metadata__ must map strings to strings")
    data_len = size - 8 - n
    entries = []
    for name, e in header.items():
        label = f"tensor {brief(name)}"
        if not isinstance(e, dict) or not {"dtype", "shape", "data_offsets"} <= e.keys():
            raise BadFile(f"{label}: entry {shorten(e)} lacks dtype/shape/data_offsets")
        dt = BY_ST_CODE.get(e["dtype"]) if isinstance(e["dtype"], str) else None
        if dt is None:
            raise BadFile(f"{label}: dtype {shorten(e['dtype'])} is not supported "
                          f"(supported: {', '.join(BY_ST_CODE)})")  # fmt: skip
        shape, offs = e["shape"], e["data_offsets"]
        if (not isinstance(shape, list) or len(shape) > MAX_NDIM
                or not all(type(d) is int and 0 <= d < MAX_EXTENT for d in shape)):  # fmt: skip
            raise BadFile(f"{label}: shape {shorten(shape)} is not a list of at most {MAX_NDIM} sizes")
        out_itemsize = 4 if dt.name == "bfloat16" else dt.itemsize
        if math.prod(max(d, 1) for d in shape) * out_itemsize >= 1 << 63:
            raise BadFile(f"{label}: shape {shorten(shape)} is too large for NumPy")
        if (
            not isinstance(offs, list)
            or len(offs) != 2
            or not all(type(o) is int and o >= 0 for o in offs)
            or offs[0] > offs[1]
        ):
            raise BadFile(f"{label}: data_offsets {shorten(offs)} is not [begin, end]")
        if offs[1] > data_len:
            raise BadFile(f"{label}: data_offsets {offs} run past the {data_len} data bytes")
        nbytes = math.prod(shape) * dt.itemsize
        if offs[1] - offs[0] != nbytes:
            raise BadFile(f"{label}: {offs[1] - offs[0]} data bytes for shape {shorten(shape)} "
                          f"of {dt.st_code} ({nbytes} bytes)")  # fmt: skip
        entries.append((offs[0], offs[1], name, dt, tuple(shape)))
    pos = 0
    for begin, end, name, _, _ in sorted(entries, key=lambda t: (t[0], t[1])):
        if begin != pos:
            raise BadFile(
                f"tensor {brief(name)}: data_offsets [{begin}, {end}] "
                f"{'overlap another tensor' if begin < pos else 'leave a gap'}"
            )
        pos = end
    if pos != data_len:
        raise BadFile(f"safetensors data is {data_len} bytes but the tensors cover {pos}")
    out: dict[str, np.ndarray] = {}
    for begin, end, name, dt, shape in entries:  # in the header's order
        raw = np.empty(end - begin, np.uint8)
        f.seek(8 + n + begin)
        if f.readinto(raw) != raw.nbytes:
            raise BadFile(f"file ends inside tensor {brief(name)}")
        out[name] = to_native(raw.view(dt.stored_dtype("<")).reshape(shape), dt, copy=False)
    return strip_prefix(out)


def write_safetensors(f: Any, arrays: list[tuple[str, np.ndarray, DType]]) -> None:
    """A safetensors file of prepared (name, little-endian array, dtype) entries."""
    header: dict[str, Any] = {}
    pos = 0
    for k, arr, dt in arrays:
        if dt.st_code is None:
            raise WeightsError(f"{brief(k)}: safetensors has no code for dtype {dt.name}")
        if k == "__metadata__":
            raise WeightsError("a tensor cannot be named '__metadata__' in safetensors")
        header[k] = {"dtype": dt.st_code, "shape": list(arr.shape),
                     "data_offsets": [pos, pos + arr.nbytes]}  # fmt: skip
        pos += arr.nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)  # data starts 8-byte aligned
    f.write(len(text).to_bytes(8, "little"))
    f.write(text)
    for _, arr, _ in arrays:
        f.write(arr.reshape(-1).view(np.uint8).data)
