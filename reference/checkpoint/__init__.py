"""Weights files without a deep-learning framework (spec clause 13, weights files).

Reads and writes state_dicts (name -> ``np.ndarray``) in three formats, chosen by the file
extension when writing and by the file content when reading:

  ``.npz``           NumPy zip of ``.npy`` members; never unpickles (object arrays refused).
  ``.safetensors``   8-byte little-endian header length, a JSON header, raw little-endian data.
  ``.pth`` ``.pt`` ``.bin``
                     what ``torch.save`` writes: a zip ``<archive>/data.pkl`` (a pickle whose
                     tensors point at storages ``<archive>/data/<key>``), or the legacy
                     (torch < 1.6) stream of pickles followed by raw storages.

Nothing here imports torch or the safetensors package, and no pickled code ever runs: pickles are
read by the restricted unpickler of :mod:`.restricted_pickle`, which hands out local, inert
stand-ins for the few globals a state_dict needs (see ``ALLOWED_GLOBALS``) and raises
:class:`~parcnetv2.errors.UnsafeCheckpointError` naming any other global (``posix.system``,
``builtins.eval``, ``functools.partial`` ...). Tensors are not built while unpickling: the rebuild
functions return records (storage, offset, size, stride, dtype) that are checked against their
storage and copied into fresh arrays afterwards, and only for the entries of the state_dict.

Arrays read are C-contiguous, writable, native-endian copies. dtypes: float64, float32, float16,
int64/32/16/8, uint8/16/32/64, bool, complex64/128; bfloat16 is read as float32 (exact, NumPy has
no bfloat16) and cannot be written. Big-endian data (torch ``byteorder`` record "big", legacy
``little_endian`` False, ``>`` in a ``.npy`` header) is converted.

Training checkpoints are unwrapped (see :func:`read_state_dict`), and a leading ``module.``
(DataParallel) is stripped from every name. Every problem with a file raises
:class:`~parcnetv2.errors.CheckpointError` whose message starts with the file's path and is one
line. Whatever a file declares, reading it stays within the memory and time limits of clause 13.5
(:mod:`.limits`): only regular files are opened, and pickles, zip directories and members, JSON
and .npy headers are bounded before anything they declare is allocated.

This module picks the format and adds the path to errors; the rest lives in :mod:`.dtypes` (the
element types), :mod:`.restricted_pickle` and :mod:`.pickle_scan`, :mod:`.wrappers` (unwrapping,
``module.``), :mod:`.zip_archive`, :mod:`.torch_format`, :mod:`.safetensors_format`,
:mod:`.npz_format` and :mod:`.limits`.

Shape legend: N batch, C channels, H height, W width, K kernel length.
"""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from parcnetv2.errors import CheckpointError, UnsafeCheckpointError, WeightsError, brief, one_line
from parcnetv2.files import open_regular
from parcnetv2.reference.checkpoint.dtypes import NUMPY_DTYPE_NAMES, DType, from_numpy
from parcnetv2.reference.checkpoint.internal_errors import BadFile, UnsafePickle, shorten
from parcnetv2.reference.checkpoint.npz_format import read_npy as _read_npy
from parcnetv2.reference.checkpoint.npz_format import read_npz, write_npz
from parcnetv2.reference.checkpoint.restricted_pickle import ALLOWED_GLOBALS
from parcnetv2.reference.checkpoint.safetensors_format import (
    looks_like_safetensors,
    read_safetensors,
    write_safetensors,
)
from parcnetv2.reference.checkpoint.torch_format import (
    read_torch_legacy,
    read_torch_zip,
    write_torch,
)
from parcnetv2.reference.checkpoint.wrappers import WRAPPER_KEYS
from parcnetv2.reference.checkpoint.zip_archive import open_zip

__all__ = [
    "ALLOWED_GLOBALS",
    "READ_EXTENSIONS",
    "WRAPPER_KEYS",
    "WRITE_EXTENSIONS",
    "convert",
    "read_npy",
    "read_state_dict",
    "write_state_dict",
]

TORCH_EXTENSIONS = (".pth", ".pt", ".bin")
READ_EXTENSIONS = (".npz", ".safetensors") + TORCH_EXTENSIONS
WRITE_EXTENSIONS = READ_EXTENSIONS


def _checked_suffix(p: Path, supported: tuple[str, ...]) -> str:
    """The lower-cased extension of ``p``; CheckpointError unless it is one of ``supported``."""
    suffix = p.suffix.lower()
    if suffix not in supported:
        raise CheckpointError(f"{p}: unknown weights file extension {suffix or '(none)'!r}; "
                              f"supported: {', '.join(supported)}")  # fmt: skip
    return suffix


# ---------------------------------------------------------------------------------------------
# reading


def _no_key(key: str | None, what: str) -> None:
    if key is not None:
        raise BadFile(f"{what} has no wrapper entries; key={key!r} applies to torch checkpoints")


def _read_any(f: io.BufferedIOBase, size: int, suffix: str, key: str | None) -> dict[str, np.ndarray]:
    """Dispatch on the content of the open file ``f`` of ``size`` bytes. The extension only
    matters for a file in no recognised layout: a ``.safetensors`` is parsed as one (for its
    error), an ``.npz`` is refused, anything else is tried as a legacy torch pickle stream; and
    an empty zip archive is an empty ``.npz`` only when named so."""
    head = f.read(512)
    f.seek(0)
    if not head:
        raise BadFile("the file is empty")
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        with open_zip(f, size) as zf:
            names = zf.namelist()
            if any(n.endswith("/data.pkl") for n in names):
                return read_torch_zip(zf, key)
            if (names and all(n.endswith(".npy") for n in names)) or (not names and suffix == ".npz"):
                _no_key(key, "an .npz file")
                return read_npz(zf)
            if not names:
                raise BadFile("an empty zip archive, not a torch checkpoint (no <archive>/data.pkl)")
            raise BadFile("zip archive is neither a torch checkpoint (no <archive>/data.pkl) "
                          "nor an .npz (members other than .npy)")  # fmt: skip
    if looks_like_safetensors(head, size) or suffix == ".safetensors":
        _no_key(key, "a safetensors file")
        return read_safetensors(f, size)
    if len(head) >= 262 and head[257:262] == b"ustar":
        raise BadFile("a tar archive (the torch < 0.4 checkpoint format) is not supported; "
                      "re-save it with a recent torch")  # fmt: skip
    if suffix == ".npz":
        raise BadFile("not an .npz file (not a zip archive)")
    return read_torch_legacy(f, size, key)


T = TypeVar("T")


def _read_file(path: str | os.PathLike[str], read: Callable[[io.BufferedIOBase, int], T]) -> T:
    """``read(f, size)`` on the regular file ``path``, every failure a one-line CheckpointError
    (UnsafeCheckpointError for a refused global) whose message starts with the path."""
    p = Path(path)
    try:
        with open_regular(p) as f:
            return read(f, os.fstat(f.fileno()).st_size)
    except UnsafePickle as e:
        raise UnsafeCheckpointError(one_line(f"{p}: {e}")) from None
    except BadFile as e:
        raise CheckpointError(one_line(f"{p}: {e}")) from None
    except FileNotFoundError:
        raise CheckpointError(one_line(f"{p}: no such file")) from None
    except IsADirectoryError:
        raise CheckpointError(one_line(f"{p}: is a directory, not a weights file")) from None
    except MemoryError:
        raise CheckpointError(one_line(f"{p}: too large to read into memory")) from None
    except OSError as e:
        raise CheckpointError(one_line(f"{p}: cannot read ({e.strerror or e})")) from None
    except Exception as e:
        raise CheckpointError(one_line(f"{p}: corrupt or unreadable weights file "
                                       f"({type(e).__name__}: {shorten(str(e))})")) from e  # fmt: skip


def read_state_dict(path: str | os.PathLike[str], *, key: str | None = None
                    ) -> dict[str, np.ndarray]:  # fmt: skip
    """Read a state_dict (name -> array) from ``.npz``, ``.safetensors``, ``.pth``/``.pt``/``.bin``.

    Spec clause 13 (weights files). The extension must be one of ``READ_EXTENSIONS``; the content
    decides the parser (zip with ``<archive>/data.pkl``: torch; zip of ``.npy``: npz; an 8-byte
    length and ``{``: safetensors; otherwise a legacy torch pickle stream). Torch pickles are read
    by a restricted unpickler that executes nothing (``ALLOWED_GLOBALS``).

    Unwrapping (torch files): a dict whose entry ``key`` (when given) or else the first of
    ``WRAPPER_KEYS`` ("state_dict", "model", "model_state_dict", "module", then the EMA copies
    "state_dict_ema", "model_ema") holding a dict is descended into, up to 4 levels; the other
    entries (epoch, optimizer state, args ...) are ignored and never converted to arrays. The dict
    reached must map strings to tensors. In every format a leading ``module.`` is stripped from
    each name.

    Returns arrays that are C-contiguous, writable and native-endian; bfloat16 tensors come back
    as float32 (exactly). Shapes are as stored (e.g. a conv weight (C_out, C_in, K, K)).

    Limits (clause 13.5): only regular files are read (a FIFO or a device is refused without
    blocking); memory stays within about twice the bytes of the arrays returned plus a fixed
    allowance, and time within a fixed allowance plus a rate per byte of file, whatever sizes the
    file declares.

    Raises CheckpointError (a one-line message that starts with the path) for a missing,
    unreadable, corrupt, unsupported or over-limit file, UnsafeCheckpointError naming the global
    for a pickle that refers to one outside the allowlist.
    """
    p = Path(path)
    suffix = _checked_suffix(p, READ_EXTENSIONS)
    return _read_file(p, lambda f, size: _read_any(f, size, suffix, key))


def read_npy(path: str | os.PathLike[str]) -> np.ndarray:
    """The array of a single ``.npy`` file (``np.save``), read as the ``.npz`` members are: never
    unpickled, header bounded, declared size checked against the file before anything is
    allocated (clause 13.5). Returns a C-contiguous, writable, native-endian array of a dtype in
    ``NUMPY_DTYPE_NAMES``; raises CheckpointError (one line, starting with the path) otherwise."""

    def read(f: io.BufferedIOBase, size: int) -> np.ndarray:
        def read_into(out: memoryview, start: int) -> None:
            f.seek(start)
            pos = 0
            while pos < len(out):
                n = f.readinto(out[pos:])
                if not n:
                    raise BadFile("the file ends before its data")
                pos += n

        if f.read(4) in (b"PK\x03\x04", b"PK\x05\x06"):
            raise BadFile("a zip archive (an .npz?), not a single .npy array")
        return _read_npy(read_into, size, "the array")

    return _read_file(path, read)


# ---------------------------------------------------------------------------------------------
# writing


def _prepare(sd: Mapping[str, Any]) -> list[tuple[str, np.ndarray, DType]]:
    """Validate a state_dict for writing: (name, C-contiguous little-endian array, dtype)."""
    if not isinstance(sd, Mapping):
        raise WeightsError(f"a state_dict maps names to arrays; got a {type(sd).__name__}")
    out = []
    for k, v in sd.items():
        if not isinstance(k, str):
            raise WeightsError(f"state_dict name {brief(k)} is not a string")
        try:
            k.encode("utf-8")
        except UnicodeEncodeError:
            raise WeightsError(f"state_dict name {brief(k)} is not valid Unicode") from None
        arr = np.asarray(v)
        dt = from_numpy(arr.dtype)
        if dt is None:
            raise WeightsError(f"{brief(k)}: dtype {arr.dtype} cannot be stored "
                               f"(supported: {NUMPY_DTYPE_NAMES})")  # fmt: skip
        arr = np.asarray(arr, dtype=arr.dtype.newbyteorder("<"), order="C")
        out.append((k, arr, dt))
    return out


def write_state_dict(path: str | os.PathLike[str], sd: Mapping[str, Any]) -> None:
    """Write a state_dict (name -> array) in the format of the extension (spec clause 13).

    ``.npz``: a NumPy zip (``np.load(path, allow_pickle=False)`` reads it). ``.safetensors``: the
    safetensors layout (``safetensors.numpy.load_file`` reads it). ``.pth``/``.pt``/``.bin``: the
    zip format of ``torch.save`` (``torch.load(path, weights_only=True)`` gives the same tensors,
    in an OrderedDict, on the CPU). Names are kept in order; arrays are stored C-contiguous and
    little-endian. dtypes: float64/32/16, int64/32/16/8, uint8/16/32/64, bool, complex64/128
    (complex128 not in safetensors). The file is written to a temporary name and renamed, so a
    failed write leaves no partial file.

    Raises WeightsError for a name or array that cannot be stored, CheckpointError for an unknown
    extension or a file that cannot be written.
    """
    p = Path(path)
    suffix = _checked_suffix(p, WRITE_EXTENSIONS)
    arrays = _prepare(sd)
    writer = {".npz": write_npz, ".safetensors": write_safetensors}.get(suffix, write_torch)
    # A fresh name next to the target (same file system, so the rename is atomic), opened
    # exclusively and with the usual permissions.
    tmp = p.with_name(f".{p.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    done = False
    try:
        with open(tmp, "xb") as f:
            writer(f, arrays)
        os.replace(tmp, p)
        done = True
    except OSError as e:
        raise CheckpointError(f"{p}: cannot write ({e.strerror or e})") from None
    finally:
        if not done:
            tmp.unlink(missing_ok=True)


def convert(src: str | os.PathLike[str], dst: str | os.PathLike[str], *,
            key: str | None = None) -> int:  # fmt: skip
    """Read ``src`` and write its state_dict to ``dst`` in the format of ``dst``'s extension;
    returns the number of tensors written (``parcnetv2 convert IN OUT`` reports it).

    Spec clause 13 (weights files). ``key`` selects a wrapper entry as in :func:`read_state_dict`.
    bfloat16 tensors are written as float32 (NumPy has no bfloat16). Raises as
    :func:`read_state_dict` and :func:`write_state_dict` do.
    """
    sd = read_state_dict(src, key=key)
    write_state_dict(dst, sd)
    return len(sd)
