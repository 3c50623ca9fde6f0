"""``.safetensors``: an 8-byte little-endian header length, a JSON header (name -> dtype, shape,
data_offsets), then the tensors' raw little-endian bytes, back to back."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from parcnetv2.errors import WeightsError
from parcnetv2.reference.checkpoint.dtypes import BY_ST_CODE, DType, to_native
from parcnetv2.reference.checkpoint.internal_errors import BadFile, shorten
from parcnetv2.reference.checkpoint.wrappers import strip_prefix

_MAX_HEADER = 100 << 20  # the limit of the reference implementation


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
            raise BadFile(f"safetensors header names {k!r} twice")
        d[k] = v
    return d


def read_safetensors(f: Any, size: int) -> dict[str, np.ndarray]:
    """The tensors of the open file ``f`` of ``size`` bytes; the header must describe data that
    covers the rest of the file exactly, with no gaps or overlaps."""
    head = f.read(8)
    if len(head) < 8:
        raise BadFile("not a safetensors file: shorter than its 8-byte header length")
    n = int.from_bytes(head, "little")
    if n > _MAX_HEADER:
        raise BadFile(f"not a safetensors file: header length {n} is over the "
                      f"{_MAX_HEADER}-byte limit")  # fmt: skip
    if 8 + n > size:
        raise BadFile(f"safetensors header length {n} runs past the end of the file "
                      f"({size} bytes)")  # fmt: skip
    try:
        text = f.read(n).decode("utf-8")
    except UnicodeDecodeError:
        raise BadFile("safetensors header is not UTF-8") from None
    if not text.startswith("{"):
        raise BadFile("safetensors header is not a JSON object")
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise BadFile(f"safetensors header is not valid JSON ({e})") from None
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise BadFile("safetensors __metadata__ must map strings to strings")
    data_len = size - 8 - n
    entries = []
    for name, e in header.items():
        if not isinstance(e, dict) or not {"dtype", "shape", "data_offsets"} <= e.keys():
            raise BadFile(f"tensor {name!r}: entry {shorten(e)} lacks dtype/shape/data_offsets")
        dt = BY_ST_CODE.get(e["dtype"]) if isinstance(e["dtype"], str) else None
        if dt is None:
            raise BadFile(f"tensor {name!r}: dtype {shorten(e['dtype'])} is not supported "
                          f"(supported: {', '.join(BY_ST_CODE)})")  # fmt: skip
        shape, offs = e["shape"], e["data_offsets"]
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise BadFile(f"tensor {name!r}: shape {shorten(shape)} is not a list of sizes")
        if (
            not isinstance(offs, list)
            or len(offs) != 2
            or not all(type(o) is int and o >= 0 for o in offs)
            or offs[0] > offs[1]
        ):
            raise BadFile(f"tensor {name!r}: data_offsets {shorten(offs)} is not [begin, end]")
        if offs[1] > data_len:
            raise BadFile(f"tensor {name!r}: data_offsets {offs} run past the {data_len} data "
                          "bytes")  # fmt: skip
        nbytes = math.prod(shape) * dt.itemsize
        if offs[1] - offs[0] != nbytes:
            raise BadFile(f"tensor {name!r}: {offs[1] - offs[0]} data bytes for shape {shape} "
                          f"of {dt.st_code} ({nbytes} bytes)")  # fmt: skip
        entries.append((offs[0], offs[1], name, dt, tuple(shape)))
    pos = 0
    for begin, end, name, _, _ in sorted(entries, key=lambda t: (t[0], t[1])):
        if begin != pos:
            raise BadFile(
                f"tensor {name!r}: data_offsets [{begin}, {end}] "
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
            raise BadFile(f"file ends inside tensor {name!r}")
        out[name] = to_native(raw.view(dt.stored_dtype("<")).reshape(shape), dt, copy=False)
    return strip_prefix(out)


def write_safetensors(f: Any, arrays: list[tuple[str, np.ndarray, DType]]) -> None:
    """A safetensors file of prepared (name, little-endian array, dtype) entries."""
    header: dict[str, Any] = {}
    pos = 0
    for k, arr, dt in arrays:
        if dt.st_code is None:
            raise WeightsError(f"{k!r}: safetensors has no code for dtype {dt.name}")
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
        f.write(memoryview(arr.reshape(-1).view(np.uint8)))
