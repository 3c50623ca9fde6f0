"""The element types a weights file may hold, and how stored elements become arrays.

One table gives each dtype's torch name, its stored NumPy type, its safetensors code and its
legacy torch storage class, so every format reads and writes the same set. bfloat16 is read as
float32 (exact: NumPy has no bfloat16) and cannot be written.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class DType(NamedTuple):
    """One element type: its canonical (torch) name, the raw NumPy type of a stored element
    without byte order, its safetensors code and its legacy torch storage class (or None)."""

    name: str
    raw: str
    st_code: str | None
    storage: str | None

    @property
    def itemsize(self) -> int:
        """Bytes per stored element."""
        return np.dtype(self.raw).itemsize

    def stored_dtype(self, byteorder: str) -> np.dtype:
        """The NumPy dtype of one stored element in the file's byte order ('<' or '>')."""
        return np.dtype(self.raw).newbyteorder("<" if byteorder == "<" else ">")


DTYPES = {
    d.name: d
    for d in (
        DType("float64", "f8", "F64", "DoubleStorage"),
        DType("float32", "f4", "F32", "FloatStorage"),
        DType("float16", "f2", "F16", "HalfStorage"),
        DType("bfloat16", "u2", "BF16", "BFloat16Storage"),
        DType("int64", "i8", "I64", "LongStorage"),
        DType("int32", "i4", "I32", "IntStorage"),
        DType("int16", "i2", "I16", "ShortStorage"),
        DType("int8", "i1", "I8", "CharStorage"),
        DType("uint8", "u1", "U8", "ByteStorage"),
        DType("uint16", "u2", "U16", None),
        DType("uint32", "u4", "U32", None),
        DType("uint64", "u8", "U64", None),
        DType("bool", "u1", "BOOL", "BoolStorage"),
        DType("complex64", "c8", "C64", "ComplexFloatStorage"),
        DType("complex128", "c16", None, "ComplexDoubleStorage"),
    )
}
BY_ST_CODE = {d.st_code: d for d in DTYPES.values() if d.st_code}
BY_STORAGE = {d.storage: d for d in DTYPES.values() if d.storage}
_NATIVE = {name: np.dtype("float32" if name == "bfloat16" else name) for name in DTYPES}
# Every dtype but bfloat16 is a NumPy dtype of its own name; the (kind, itemsize) pair finds it
# whatever the byte order of the array at hand.
_BY_KIND_SIZE = {(_NATIVE[n].kind, _NATIVE[n].itemsize): d for n, d in DTYPES.items()
                 if n != "bfloat16"}  # fmt: skip
#: The dtypes NumPy arrays can have here, for error messages.
NUMPY_DTYPE_NAMES = ", ".join(n for n in DTYPES if n != "bfloat16")

# torch dtypes that exist but have no NumPy counterpart: named in the error, never read.
UNSUPPORTED_TORCH_DTYPES = frozenset(
    [
        "float8_e5m2",
        "float8_e4m3fn",
        "float8_e5m2fnuz",
        "float8_e4m3fnuz",
        "float8_e8m0fnu",
        "float4_e2m1fn_x2",
        "complex32",
        "bits8",
        "bits16",
        "bits1x8",
        "bits2x4",
        "bits4x2",
        "qint8",
        "qint32",
        "quint8",
        "quint4x2",
        "quint2x4",
    ]
)
# The storage classes of quantized tensors: named in the error, never read.
UNSUPPORTED_STORAGES = frozenset(
    ["QInt8Storage", "QInt32Storage", "QUInt8Storage", "QUInt4x2Storage", "QUInt2x4Storage"]
)


def to_native(raw: np.ndarray, dt: DType, copy: bool) -> np.ndarray:
    """Stored elements -> a native-endian C-contiguous array of the output dtype.

    ``raw`` may be a read-only strided view (``copy=True``) or a fresh array of ours.
    """
    if dt.name == "bfloat16":  # the upper half of a float32: exact; one new array, shifted in place
        wide = raw.astype(np.uint32, order="C")
        wide <<= 16
        return wide.view(np.float32)
    if dt.name == "bool":  # any nonzero byte is True, as in torch
        return np.asarray(raw.view(np.uint8) != 0, order="C")
    if copy:
        return np.array(raw, dtype=_NATIVE[dt.name], order="C")
    return np.asarray(raw, dtype=_NATIVE[dt.name], order="C")


def from_numpy(d: np.dtype) -> DType | None:
    """Our dtype record of a NumPy dtype, or None when no format can store it."""
    if d.hasobject or d.fields is not None or d.subdtype is not None:
        return None
    return _BY_KIND_SIZE.get((d.kind, d.itemsize))
