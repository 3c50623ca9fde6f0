"""``.npz``: a zip of ``.npy`` members, one array each. Never unpickles: object arrays, the only
ones that would need pickle, are refused on reading and never written."""

from __future__ import annotations

import math
import zipfile
from typing import Any

import numpy as np
import numpy.lib.format as npy_format

from parcnetv2.errors import WeightsError
from parcnetv2.reference.checkpoint.dtypes import NUMPY_DTYPE_NAMES, DType, from_numpy, to_native
from parcnetv2.reference.checkpoint.internal_errors import BadFile, shorten
from parcnetv2.reference.checkpoint.wrappers import strip_prefix


def read_npz(zf: zipfile.ZipFile) -> dict[str, np.ndarray]:
    """The arrays of an open .npz archive, each header checked against its member's size."""
    out: dict[str, np.ndarray] = {}
    for info in zf.infolist():
        if not info.filename.endswith(".npy"):
            raise BadFile(f"npz member {info.filename!r} is not an .npy array")
        name = info.filename[: -len(".npy")]
        if name in out:
            raise BadFile(f"npz holds array {name!r} twice")
        with zf.open(info) as f:
            try:
                version = npy_format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = npy_format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = npy_format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"unsupported .npy format version {version}")
            except ValueError as e:
                raise BadFile(f"array {name!r}: bad .npy header ({shorten(str(e))})") from None
            if dtype.hasobject:
                raise BadFile(f"array {name!r} is an object array; reading it would need "
                              "pickle, which .npz weights never use")  # fmt: skip
            dt = from_numpy(dtype)
            if dt is None:
                raise BadFile(f"array {name!r} has dtype {dtype}, not one of "
                              f"{NUMPY_DTYPE_NAMES}")  # fmt: skip
            nbytes = math.prod(shape) * dtype.itemsize
            if info.file_size - f.tell() != nbytes:
                raise BadFile(f"array {name!r}: header declares shape {shape} of {dtype} "
                              f"({nbytes} bytes) but the member holds "
                              f"{info.file_size - f.tell()} data bytes")  # fmt: skip
            raw = np.frombuffer(f.read(nbytes), dtype=dtype)
        raw = raw.reshape(shape, order="F" if fortran else "C")
        out[name] = to_native(raw, dt, copy=True)
    return strip_prefix(out)


def write_npz(f: Any, arrays: list[tuple[str, np.ndarray, DType]]) -> None:
    """An uncompressed .npz of prepared (name, little-endian array, dtype) entries."""
    for k, _, _ in arrays:
        if "\x00" in k:
            raise WeightsError(f"{k!r}: .npz member names cannot contain NUL")
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for k, arr, _ in arrays:
            with zf.open(k + ".npy", "w", force_zip64=True) as m:
                npy_format.write_array(m, arr, allow_pickle=False)
