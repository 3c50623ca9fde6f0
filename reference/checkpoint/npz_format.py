"""``.npz`` (a zip of ``.npy`` members, one array each) and single ``.npy`` arrays. Never
unpickles: object arrays, the only ones that would need pickle, are refused on reading and never
written.

The ``.npy`` header is parsed here rather than by ``numpy.lib.format``, which reads a header of
any declared length before checking it and converts integers of any length: the header is read
from a bounded prefix (``MAX_NPY_HEADER``), integers longer than ``MAX_INT_DIGITS`` digits are
refused before parsing, and the declared size must be exactly the data present before an array
is allocated (clause 13.5).
"""

from __future__ import annotations

import ast
import math
import re
import struct
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.lib.format as npy_format

from parcnetv2.errors import WeightsError, brief
from parcnetv2.reference.checkpoint.dtypes import NUMPY_DTYPE_NAMES, DType, from_numpy, to_native
from parcnetv2.reference.checkpoint.internal_errors import BadFile, shorten
from parcnetv2.reference.checkpoint.limits import MAX_EXTENT, MAX_INT_DIGITS, MAX_NDIM, MAX_NPY_HEADER
from parcnetv2.reference.checkpoint.wrappers import strip_prefix
from parcnetv2.reference.checkpoint.zip_archive import check_member, read_member

_MAGIC = b"\x93NUMPY"
# version -> (bytes of the header length field, its struct format, the header's text encoding)
_VERSIONS = {(1, 0): (2, "<H", "latin-1"), (2, 0): (4, "<I", "latin-1"), (3, 0): (4, "<I", "utf-8")}
_PREFIX_BYTES = len(_MAGIC) + 2 + 4 + MAX_NPY_HEADER
_LONG_NUMBER = re.compile(rf"\d{{{MAX_INT_DIGITS + 1},}}")

#: ``read_into(out, start)`` fills ``out`` with the array file's bytes from offset ``start`` on.
ReadInto = Callable[[memoryview, int], None]


def _parse_header(prefix: bytes | bytearray, what: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, offset of the data) from the first bytes of an .npy."""
    if prefix[: len(_MAGIC)] != _MAGIC or len(prefix) < len(_MAGIC) + 2:
        raise BadFile(f"{what}: bad .npy header (no \\x93NUMPY magic: not an .npy array)")
    version = (prefix[6], prefix[7])
    if version not in _VERSIONS:
        raise BadFile(f"{what}: bad .npy header (unsupported format version {version[0]}.{version[1]})")
    width, fmt, encoding = _VERSIONS[version]
    if len(prefix) < 8 + width:
        raise BadFile(f"{what}: bad .npy header (cut short)")
    (length,) = struct.unpack_from(fmt, prefix, 8)
    if length > MAX_NPY_HEADER:
        raise BadFile(f"{what}: bad .npy header ({length} bytes; NumPy reads at most {MAX_NPY_HEADER})")
    start = 8 + width
    if len(prefix) < start + length:
        raise BadFile(f"{what}: bad .npy header (cut short)")
    try:
        text = bytes(prefix[start : start + length]).decode(encoding)
    except UnicodeDecodeError:
        raise BadFile(f"{what}: bad .npy header (not {encoding} text)") from None
    if _LONG_NUMBER.search(text):
        raise BadFile(f"{what}: bad .npy header (a number of more than {MAX_INT_DIGITS} digits)")
    try:
        header = ast.literal_eval(text)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        raise BadFile(f"{what}: bad .npy header (not a Python literal: {shorten(text, 60)})") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise BadFile(f"{what}: bad .npy header ({shorten(header, 80)} is not a dict of descr, "
                      "fortran_order and shape)")  # fmt: skip
    shape, fortran = header["shape"], header["fortran_order"]
    if (not isinstance(shape, tuple) or len(shape) > MAX_NDIM
            or not all(type(n) is int and 0 <= n < MAX_EXTENT for n in shape)):  # fmt: skip
        raise BadFile(f"{what}: bad .npy header (shape {shorten(shape, 80)} is not a tuple of at most "
                      f"{MAX_NDIM} sizes)")  # fmt: skip
    if not isinstance(fortran, bool):
        raise BadFile(f"{what}: bad .npy header (fortran_order is {shorten(fortran)})")
    try:
        dtype = npy_format.descr_to_dtype(header["descr"])
    except Exception:  # TypeError, ValueError ... for any malformed descriptor
        raise BadFile(f"{what}: bad .npy header (descr {shorten(header['descr'], 80)} is not a dtype)") from None
    return shape, fortran, dtype, start + length


def read_npy(read_into: ReadInto, size: int, what: str) -> np.ndarray:
    """The array of an .npy of ``size`` bytes (``what`` names it in errors): C-contiguous,
    writable, native-endian; bool, integer, float and complex dtypes (``NUMPY_DTYPE_NAMES``)."""
    prefix = bytearray(min(size, _PREFIX_BYTES))
    read_into(memoryview(prefix), 0)
    shape, fortran, dtype, offset = _parse_header(prefix, what)
    if dtype.hasobject:
        raise BadFile(f"{what} is an object array; reading it would need pickle, which is never used")
    dt = from_numpy(dtype)
    if dt is None:
        raise BadFile(f"{what} has dtype {dtype}, not one of {NUMPY_DTYPE_NAMES}")
    if math.prod(max(n, 1) for n in shape) * dtype.itemsize >= 1 << 63:
        raise BadFile(f"{what}: shape {shape} is too large for NumPy")
    nbytes = math.prod(shape) * dtype.itemsize
    if size - offset != nbytes:
        raise BadFile(f"{what}: header declares shape {shape} of {dtype} ({nbytes} bytes) but it "
                      f"holds {size - offset} data bytes")  # fmt: skip
    raw = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
    if nbytes:
        read_into(raw.reshape(-1, order="A").view(np.uint8).data, offset)
    return to_native(raw, dt, copy=False)


def read_npz(zf: zipfile.ZipFile) -> dict[str, np.ndarray]:
    """The arrays of an open .npz archive, each header checked against its member's size."""
    out: dict[str, np.ndarray] = {}
    for info in zf.infolist():
        if not info.filename.endswith(".npy"):
            raise BadFile(f"npz member {brief(info.filename)} is not an .npy array")
        name = info.filename[: -len(".npy")]
        if name in out:
            raise BadFile(f"npz holds array {brief(name)} twice")
        check_member(info)

        def read_into(buf: memoryview, start: int, info: zipfile.ZipInfo = info) -> None:
            read_member(zf, info, buf, start)

        out[name] = read_npy(read_into, info.file_size, f"array {brief(name)}")
    return strip_prefix(out)


def write_npz(f: Any, arrays: list[tuple[str, np.ndarray, DType]]) -> None:
    """An uncompressed .npz of prepared (name, little-endian array, dtype) entries."""
    for k, _, _ in arrays:
        if "\x00" in k:
            raise WeightsError(f"{brief(k)}: .npz member names cannot contain NUL")
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for k, arr, _ in arrays:
            with zf.open(k + ".npy", "w", force_zip64=True) as m:
                npy_format.write_array(m, arr, allow_pickle=False)
