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
read by :class:`_RestrictedUnpickler`, whose ``find_class`` hands out local, inert stand-ins for the
few globals a state_dict needs (see ``ALLOWED_GLOBALS``) and raises
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
:class:`~parcnetv2.errors.CheckpointError` whose message starts with the file's path.

Shape legend: N batch, C channels, H height, W width, K kernel length.
"""

from __future__ import annotations

import collections
import io
import json
import math
import os
import pickle
import pickletools
import secrets
import struct
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.lib.format as npy_format

from parcnetv2.errors import CheckpointError, UnsafeCheckpointError, WeightsError

__all__ = [
    "ALLOWED_GLOBALS",
    "READ_EXTENSIONS",
    "WRAPPER_KEYS",
    "WRITE_EXTENSIONS",
    "convert",
    "read_state_dict",
    "write_state_dict",
]

TORCH_EXTENSIONS = (".pth", ".pt", ".bin")
READ_EXTENSIONS = (".npz", ".safetensors") + TORCH_EXTENSIONS
WRITE_EXTENSIONS = READ_EXTENSIONS

# Entries of a training checkpoint that hold the model's state_dict, in order of preference: the
# trained weights first (timm "state_dict", ConvNeXt/DeiT "model"), the EMA copies only when no
# plain one is there. ``read_state_dict(path, key="state_dict_ema")`` picks one explicitly.
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module", "state_dict_ema", "model_ema")

_PREFIX = "module."
_MAX_WRAP_DEPTH = 4
_SAFETENSORS_MAX_HEADER = 100 << 20  # the limit of the reference implementation
_MAX_PICKLE_BYTES = 256 << 20  # a state_dict's data.pkl is kilobytes; bigger is abuse
# Tensor views may overlap or broadcast (stride 0), so the arrays built can be larger than the
# stored data; a file may not make us allocate more than this factor (plus slack) of what it stores.
_MAX_EXPANSION = 16
_EXPANSION_SLACK = 64 << 20
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_ZIP_ALIGN = 64


# ---------------------------------------------------------------------------------------------
# dtypes


class _DType(NamedTuple):
    """One element type: its canonical (torch) name, the raw NumPy type of a stored element
    without byte order, its safetensors code and its legacy torch storage class (or None)."""

    name: str
    raw: str
    st_code: str | None
    storage: str | None


_DTYPES = {
    d.name: d
    for d in (
        _DType("float64", "f8", "F64", "DoubleStorage"),
        _DType("float32", "f4", "F32", "FloatStorage"),
        _DType("float16", "f2", "F16", "HalfStorage"),
        _DType("bfloat16", "u2", "BF16", "BFloat16Storage"),
        _DType("int64", "i8", "I64", "LongStorage"),
        _DType("int32", "i4", "I32", "IntStorage"),
        _DType("int16", "i2", "I16", "ShortStorage"),
        _DType("int8", "i1", "I8", "CharStorage"),
        _DType("uint8", "u1", "U8", "ByteStorage"),
        _DType("uint16", "u2", "U16", None),
        _DType("uint32", "u4", "U32", None),
        _DType("uint64", "u8", "U64", None),
        _DType("bool", "u1", "BOOL", "BoolStorage"),
        _DType("complex64", "c8", "C64", "ComplexFloatStorage"),
        _DType("complex128", "c16", None, "ComplexDoubleStorage"),
    )
}
_BY_ST_CODE = {d.st_code: d for d in _DTYPES.values() if d.st_code}
_BY_STORAGE = {d.storage: d for d in _DTYPES.values() if d.storage}
_NATIVE = {name: np.dtype("float32" if name == "bfloat16" else name) for name in _DTYPES}
# torch dtypes that exist but have no NumPy counterpart: named in the error, never read.
_UNSUPPORTED_TORCH_DTYPES = frozenset(
    (
        "float8_e5m2 float8_e4m3fn float8_e5m2fnuz float8_e4m3fnuz float8_e8m0fnu "
        "float4_e2m1fn_x2 complex32 bits8 bits16 bits1x8 bits2x4 bits4x2 "
        "qint8 qint32 quint8 quint4x2 quint2x4"
    ).split()
)
_UNSUPPORTED_STORAGES = frozenset(
    "QInt8Storage QInt32Storage QUInt8Storage QUInt4x2Storage QUInt2x4Storage".split()
)


def _itemsize(dt: _DType) -> int:
    return np.dtype(dt.raw).itemsize


def _raw_dtype(dt: _DType, byteorder: str) -> np.dtype:
    """The NumPy dtype of one stored element in the file's byte order ('<' or '>')."""
    return np.dtype(dt.raw).newbyteorder(byteorder)


def _finish(raw: np.ndarray, dt: _DType, copy: bool) -> np.ndarray:
    """Stored elements -> a native-endian C-contiguous array of the output dtype.

    ``raw`` may be a read-only strided view (``copy=True``) or a fresh array of ours.
    """
    if dt.name == "bfloat16":  # the upper half of a float32: exact
        return np.asarray((raw.astype(np.uint32) << 16).view(np.float32), order="C")
    if dt.name == "bool":  # any nonzero byte is True, as in torch
        return np.asarray(raw.view(np.uint8) != 0, order="C")
    if copy:
        return np.array(raw, dtype=_NATIVE[dt.name], order="C")
    return np.asarray(raw, dtype=_NATIVE[dt.name], order="C")


def _dtype_of(d: np.dtype) -> _DType | None:
    """Our dtype record of a NumPy dtype, or None when no format can store it."""
    if d.hasobject or d.fields is not None or d.subdtype is not None:
        return None
    kind_size = {
        ("f", 8): "float64", ("f", 4): "float32", ("f", 2): "float16",
        ("i", 8): "int64", ("i", 4): "int32", ("i", 2): "int16", ("i", 1): "int8",
        ("u", 8): "uint64", ("u", 4): "uint32", ("u", 2): "uint16", ("u", 1): "uint8",
        ("b", 1): "bool", ("c", 8): "complex64", ("c", 16): "complex128",
    }  # fmt: skip
    name = kind_size.get((d.kind, d.itemsize))
    return _DTYPES[name] if name else None


def _supported_names() -> str:
    return ", ".join(n for n in _DTYPES if n != "bfloat16")


# ---------------------------------------------------------------------------------------------
# internal errors (the public functions add the file's path)


class _Bad(Exception):
    """The file is malformed or unsupported; becomes a CheckpointError naming the file."""


class _Unsafe(_Bad):
    """The pickle names a refused global; becomes an UnsafeCheckpointError naming the file."""


def _short(x: Any, limit: int = 120) -> str:
    s = x if isinstance(x, str) else repr(x)
    return s if len(s) <= limit else s[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------
# what the restricted unpickler hands out


class _Sentinel:
    """Base of every object the unpickler creates for a global: inert, refuses pickle's BUILD,
    item assignment and appends, so a crafted pickle cannot alter it."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise _Bad(f"malformed pickle: BUILD applied to {type(self).__name__.strip('_')}")


class _StorageType(_Sentinel):
    """Stand-in for a torch storage class (``torch.FloatStorage``, ``torch.UntypedStorage``)."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: _DType | None) -> None:
        self.name = name
        self.dtype = dtype  # None: untyped (bytes); the dtype comes with _rebuild_tensor_v3


class _TorchDType(_Sentinel):
    """Stand-in for ``torch.<dtype>`` (an argument of ``_rebuild_tensor_v3``)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class _TensorType(_Sentinel):
    """Stand-in for ``torch.Tensor`` (an argument of ``_rebuild_from_type_v2``)."""

    __slots__ = ()


class _Ignored:
    """Stand-in for ``argparse.Namespace`` (timm/ConvNeXt/DeiT checkpoints store the training
    arguments): accepts any construction and state and keeps none of it."""

    __slots__ = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> _Ignored:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


class _Storage(_Sentinel):
    """A storage named by a persistent id: ``count`` elements of ``stype`` from element ``start``
    of the stored record ``key`` (``start`` is nonzero only for legacy storage views)."""

    __slots__ = ("key", "stype", "count", "start")

    def __init__(self, key: str, stype: _StorageType, count: int, start: int = 0) -> None:
        self.key, self.stype, self.count, self.start = key, stype, count, start


class _TensorRecord(_Sentinel):
    """A tensor to build later: a strided view (offset, size, stride in elements) of a storage."""

    __slots__ = ("storage", "dtype", "offset", "size", "stride", "conj", "neg")

    def __init__(self, storage: _Storage, dtype: _DType, offset: int, size: tuple, stride: tuple,
                 conj: bool = False, neg: bool = False) -> None:  # fmt: skip
        self.storage, self.dtype, self.offset, self.size, self.stride = (
            storage, dtype, offset, size, stride,
        )  # fmt: skip
        self.conj, self.neg = conj, neg


def _check_int(x: Any, what: str, minimum: int = 0) -> int:
    if type(x) is not int or x < minimum:
        raise _Bad(f"malformed tensor: {what} is {_short(x)}, expected an int >= {minimum}")
    return x


def _check_dims(x: Any, what: str) -> tuple[int, ...]:
    if not isinstance(x, (tuple, list)):
        raise _Bad(f"malformed tensor: {what} is {_short(x)}, expected a tuple of ints")
    return tuple(_check_int(v, what) for v in x)


def _tensor_record(storage: Any, offset: Any, size: Any, stride: Any, dtype: _DType | None,
                   metadata: Any = None) -> _TensorRecord:  # fmt: skip
    if not isinstance(storage, _Storage):
        raise _Bad(f"malformed tensor: storage argument is {_short(storage)}")
    if dtype is None:
        raise _Bad("malformed tensor: an untyped storage needs _rebuild_tensor_v3's dtype")
    size, stride = _check_dims(size, "size"), _check_dims(stride, "stride")
    if len(size) != len(stride):
        raise _Bad(f"malformed tensor: size {size} and stride {stride} differ in length")
    conj = neg = False
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _Bad(f"malformed tensor: metadata is {_short(metadata)}")
        for k, v in metadata.items():
            if k == "conj":
                conj = bool(v)
            elif k == "neg":
                neg = bool(v)
            elif v:
                raise _Bad(f"unsupported tensor metadata {_short(k)}={_short(v)}")
    return _TensorRecord(storage, dtype, _check_int(offset, "storage offset"), size, stride,
                         conj, neg)  # fmt: skip


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any,
                       requires_grad: Any = False, backward_hooks: Any = None,
                       metadata: Any = None) -> _TensorRecord:  # fmt: skip
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: a typed storage carries the dtype."""
    if not isinstance(storage, _Storage):
        raise _Bad(f"malformed tensor: storage argument is {_short(storage)}")
    return _tensor_record(storage, storage_offset, size, stride, storage.stype.dtype, metadata)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> _TensorRecord:
    """Stand-in for the old ``torch._utils._rebuild_tensor`` (checkpoints of torch 0.4)."""
    return _rebuild_tensor_v2(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage: Any, storage_offset: Any, size: Any, stride: Any,
                       requires_grad: Any, backward_hooks: Any, dtype: Any,
                       metadata: Any = None) -> _TensorRecord:  # fmt: skip
    """Stand-in for ``torch._utils._rebuild_tensor_v3``: an untyped (byte) storage plus a dtype,
    used by torch >= 2.3 for dtypes without a legacy storage class (uint16/32/64, float8 ...)."""
    if not isinstance(dtype, _TorchDType):
        raise _Bad(f"malformed tensor: dtype argument is {_short(dtype)}")
    if dtype.name not in _DTYPES:
        raise _Bad(f"tensor dtype torch.{dtype.name} is not supported (supported: "
                   f"{', '.join(_DTYPES)})")  # fmt: skip
    if not isinstance(storage, _Storage) or storage.stype.dtype is not None:
        raise _Bad("malformed tensor: _rebuild_tensor_v3 needs an untyped storage")
    dt = _DTYPES[dtype.name]
    size_b = _itemsize(dt)
    if storage.count % size_b or storage.start % size_b:
        raise _Bad(f"storage {storage.key!r} of {storage.count} bytes is not a whole number of "
                   f"{dt.name} elements")  # fmt: skip
    typed = _Storage(storage.key, _StorageType(f"UntypedStorage[{dt.name}]", dt),
                     storage.count // size_b, storage.start // size_b)  # fmt: skip
    return _tensor_record(typed, storage_offset, size, stride, dt, metadata)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None,
                       state: Any = None) -> _TensorRecord:  # fmt: skip
    """Stand-in for ``torch._utils._rebuild_parameter[_with_state]``: the Parameter's tensor;
    its Python attributes (``state``) are dropped."""
    if not isinstance(data, _TensorRecord):
        raise _Bad(f"malformed Parameter: data is {_short(data)}")
    return data


class _Global(_Sentinel):
    """What the unpickler hands out for an allowed callable global. Pickle can only call it:
    BUILD raises (a bare function would let a pickle set its ``__defaults__`` and so change
    how later files are read), and it has no attributes to set."""

    __slots__ = ("func", "rebuilds_tensor")

    def __init__(self, func: Callable[..., Any], rebuilds_tensor: bool = False) -> None:
        self.func, self.rebuilds_tensor = func, rebuilds_tensor

    def __call__(self, *args: Any) -> Any:
        return self.func(*args)


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> _TensorRecord:
    """Stand-in for ``torch._tensor._rebuild_from_type_v2`` (a plain tensor with Python
    attributes): calls one of our rebuild stand-ins, drops the attributes."""
    if not (isinstance(func, _Global) and func.rebuilds_tensor) or not isinstance(
        new_type, _TensorType
    ):
        raise _Bad("malformed tensor: _rebuild_from_type_v2 with unexpected arguments")
    if not isinstance(args, tuple):
        raise _Bad(f"malformed tensor: rebuild arguments are {_short(args)}")
    return func(*args)


_TENSOR_TYPE = _TensorType()
_UNTYPED = _StorageType("UntypedStorage", None)
_STORAGE_MODULES = ("torch", "torch.cuda", "torch.storage")
_REBUILD_V2 = _Global(_rebuild_tensor_v2, rebuilds_tensor=True)
_REBUILD_PARAMETER = _Global(_rebuild_parameter, rebuilds_tensor=True)
_REBUILD_FROM_TYPE = _Global(_rebuild_from_type_v2)

# (module, name) -> (what find_class returns, why it is allowed). Nothing else is ever resolved.
_ALLOWED: dict[tuple[str, str], tuple[Any, str]] = {
    ("collections", "OrderedDict"): (
        _Global(collections.OrderedDict),
        "container of state_dicts and of the (empty) backward hooks of every tensor",
    ),
    ("torch._utils", "_rebuild_tensor_v2"): (
        _REBUILD_V2,
        "how torch pickles every tensor with a typed storage; rebuilt as a checked view record",
    ),
    ("torch._utils", "_rebuild_tensor_v3"): (
        _Global(_rebuild_tensor_v3, rebuilds_tensor=True),
        "torch >= 2.3 tensors of uint16/32/64 (untyped storage + dtype)",
    ),
    ("torch._utils", "_rebuild_tensor"): (
        _Global(_rebuild_tensor, rebuilds_tensor=True),
        "tensors in torch 0.4 checkpoints",
    ),
    ("torch._utils", "_rebuild_parameter"): (
        _REBUILD_PARAMETER,
        "nn.Parameter; read as its tensor",
    ),
    ("torch._utils", "_rebuild_parameter_with_state"): (
        _REBUILD_PARAMETER,
        "nn.Parameter with Python attributes; read as its tensor, attributes dropped",
    ),
    ("torch._tensor", "_rebuild_from_type_v2"): (
        _REBUILD_FROM_TYPE,
        "tensor with Python attributes; read as its tensor, attributes dropped",
    ),
    ("torch.tensor", "_rebuild_from_type_v2"): (
        _REBUILD_FROM_TYPE,
        "the same under its pre-1.8 module name",
    ),
    ("torch", "Tensor"): (
        _TENSOR_TYPE,
        "type argument of _rebuild_from_type_v2; an inert marker",
    ),
    ("torch.storage", "UntypedStorage"): (
        _UNTYPED,
        "storage type of _rebuild_tensor_v3 tensors; an inert marker",
    ),
    ("torch", "UntypedStorage"): (
        _UNTYPED,
        "the same in the torch namespace",
    ),
    ("argparse", "Namespace"): (
        _Ignored,
        "training arguments stored by timm/ConvNeXt/DeiT checkpoints; an empty inert placeholder",
    ),
}
for _mod in _STORAGE_MODULES:
    for _dt in _BY_STORAGE.values():
        _ALLOWED[(_mod, _dt.storage)] = (
            _StorageType(_dt.storage, _dt),
            f"torch storage class of {_dt.name} tensors; an inert marker of the dtype",
        )
for _name in list(_DTYPES) + sorted(_UNSUPPORTED_TORCH_DTYPES):
    _ALLOWED[("torch", _name)] = (
        _TorchDType(_name),
        "torch dtype, argument of _rebuild_tensor_v3; an inert marker",
    )
del _mod, _dt, _name

#: The globals a pickled checkpoint may name ("module.name" -> why), for documentation and tests.
ALLOWED_GLOBALS: Mapping[str, str] = {f"{m}.{n}": why for (m, n), (_, why) in _ALLOWED.items()}


def _py3_alias(module: str, name: str) -> str:
    """For a Python 2 name (protocol < 3 pickles), the Python 3 global a default unpickler would
    import instead, e.g. ``__builtin__.eval`` -> `` (builtins.eval in Python 3)``; else ''."""
    try:
        import _compat_pickle  # stdlib data tables of pickle's fix_imports
    except ImportError:  # pragma: no cover - other Pythons
        return ""
    new = _compat_pickle.NAME_MAPPING.get((module, name))
    if new is None and module in _compat_pickle.IMPORT_MAPPING:
        new = (_compat_pickle.IMPORT_MAPPING[module], name)
    return f" ({new[0]}.{new[1]} in Python 3)" if new and new != (module, name) else ""


class _RestrictedUnpickler(pickle.Unpickler):
    """A pickle reader that resolves only the globals of ``_ALLOWED`` (to local stand-ins that
    build nothing but records) and refuses every other global with ``_Unsafe`` naming it.

    ``persistent_load`` forwards torch's storage ids to ``storage_for`` (None: refuse them).
    """

    def __init__(self, file: Any, storage_for: Callable[[Any], _Storage] | None) -> None:
        super().__init__(file, encoding="utf-8")
        self._storage_for = storage_for

    def find_class(self, module: str, name: str) -> Any:
        """Resolve an allowed global to its stand-in; refuse anything else, naming it."""
        entry = _ALLOWED.get((module, name))
        if entry is None:
            if module in _STORAGE_MODULES and name in _UNSUPPORTED_STORAGES:
                raise _Bad(f"quantized storage {module}.{name} is not supported")
            glob = f"'{_short(module)}.{_short(name)}'{_py3_alias(module, name)}"
            raise _Unsafe(
                f"refusing to load global {glob}: it is not one of the globals a plain "
                "state_dict needs, and loading it could import or run code"
            )
        return entry[0]

    def persistent_load(self, pid: Any) -> Any:
        """Torch's persistent ids name storages; anything else is malformed."""
        if self._storage_for is None:
            raise _Bad("pickle refers to external data (a persistent id) outside a torch archive")
        return self._storage_for(pid)


_MEMO_PUTS = frozenset(("PUT", "BINPUT", "LONG_BINPUT"))
_EXT_OPCODES = frozenset(("EXT1", "EXT2", "EXT4"))


def _prescan(buf: io.BytesIO) -> None:
    """Walk one pickle's opcodes without building anything (``pickletools.genops``), from the
    current position to its STOP, and rewind.

    The C unpickler allocates what a pickle declares before reading it (a bytes object of a
    BINBYTES8 length; a memo list up to a LONG_BINPUT index), so a few crafted bytes could ask
    for gigabytes. Walking the opcodes first over the in-memory bytes rejects lengths that run
    past the data, and memo indices beyond the number of opcodes (writers number them 0, 1, ...).
    It also refuses the EXT opcodes: they name globals through copyreg's process-wide extension
    registry, whose cache the C unpickler consults *before* ``find_class``.
    """
    start = buf.tell()
    try:
        for count, (op, arg, _) in enumerate(pickletools.genops(buf)):
            if op.name in _EXT_OPCODES:
                raise _Unsafe(f"refusing pickle opcode {op.name} (a global from copyreg's "
                              "extension registry, which bypasses the allowlist)")  # fmt: skip
            if op.name in _MEMO_PUTS and not 0 <= int(arg) <= count:
                raise _Bad(f"malformed pickle: memo index {arg} at opcode {count}")
    except _Bad:
        raise
    except Exception as e:  # noqa: BLE001 - genops raises ValueError & co on malformed input
        raise _Bad(f"malformed pickle ({type(e).__name__}: {_short(str(e))})") from None
    buf.seek(start)


def _unpickle(buf: io.BytesIO, storage_for: Callable[[Any], _Storage] | None) -> Any:
    """One pickle from the in-memory ``buf`` through the restricted unpickler."""
    _prescan(buf)
    try:
        return _RestrictedUnpickler(buf, storage_for).load()
    except _Bad:
        raise
    except RecursionError as e:
        raise _Bad("pickle nests too deeply") from e
    except Exception as e:  # noqa: BLE001 - any other failure is a malformed pickle
        raise _Bad(f"malformed pickle ({type(e).__name__}: {_short(str(e))})") from None


def _parse_pid(pid: Any, legacy: bool) -> tuple[_StorageType, str, int, Any]:
    """Check a persistent id ``('storage', type, key, location, numel[, view])``."""
    n = 6 if legacy else 5
    if not isinstance(pid, tuple) or len(pid) != n:
        raise _Bad(f"malformed persistent id {_short(pid)} (expected a {n}-tuple)")
    tag, stype, key, _location, numel = pid[:5]
    if isinstance(tag, bytes):
        tag = tag.decode("ascii", "replace")
    if isinstance(key, bytes):
        key = key.decode("ascii", "replace")
    if tag != "storage":
        raise _Bad(f"persistent id of kind {_short(tag)} (only 'storage' is supported)")
    if not isinstance(stype, _StorageType):
        raise _Bad(f"persistent id names storage type {_short(stype)}")
    if not isinstance(key, str) or not key or len(key) > 256 or "/" in key or "\\" in key:
        raise _Bad(f"persistent id has a bad storage key {_short(key)}")
    return stype, key, _check_int(numel, "storage size"), pid[5] if legacy else None


# ---------------------------------------------------------------------------------------------
# building arrays from tensor records


class _Materializer:
    """Builds arrays from tensor records; ``fetch(key)`` returns a record's stored bytes.

    Checks each view against its storage and bounds the total size built (``_MAX_EXPANSION``).
    """

    def __init__(self, fetch: Callable[[str], np.ndarray], byteorder: str) -> None:
        self._fetch = fetch
        self._byteorder = byteorder
        self._stored: dict[str, int] = {}
        self._built = 0

    def build(self, name: str, rec: _TensorRecord) -> np.ndarray:
        """The array of tensor ``name``."""
        dt, st = rec.dtype, rec.storage
        size_b = _itemsize(dt)
        if st.stype.dtype is not None and _itemsize(st.stype.dtype) != size_b:
            raise _Bad(f"tensor {name!r}: dtype {dt.name} does not match its storage")
        numel = math.prod(rec.size)
        if numel == 0:
            return _finish(np.zeros(rec.size, _raw_dtype(dt, "<")), dt, copy=False)
        last = rec.offset + sum((n - 1) * s for n, s in zip(rec.size, rec.stride))
        if last >= st.count:
            raise _Bad(
                f"tensor {name!r}: view (offset {rec.offset}, size {rec.size}, stride "
                f"{rec.stride}) reads element {last} of a storage of {st.count} elements"
            )
        data = self._fetch(st.key)
        if (st.start + st.count) * size_b > data.nbytes:
            raise _Bad(f"tensor {name!r}: storage {st.key!r} holds {data.nbytes} bytes, fewer "
                       f"than the {(st.start + st.count) * size_b} it declares")  # fmt: skip
        self._stored.setdefault(st.key, data.nbytes)
        self._built += numel * size_b
        if self._built > _MAX_EXPANSION * sum(self._stored.values()) + _EXPANSION_SLACK:
            raise _Bad(f"tensor {name!r}: the tensors' views add up to {self._built} bytes, far "
                       "more than the data stored; refusing to expand the file")  # fmt: skip
        raw_dt = _raw_dtype(dt, self._byteorder)
        flat = data[st.start * size_b : (st.start + st.count) * size_b].view(raw_dt)
        view = np.lib.stride_tricks.as_strided(
            flat[rec.offset :], shape=rec.size,
            strides=tuple(s * size_b for s in rec.stride), writeable=False,
        )  # fmt: skip
        out = _finish(view, dt, copy=True)
        if rec.conj:
            out = np.conj(out)
        if rec.neg:
            out = np.negative(out)
        return out


# ---------------------------------------------------------------------------------------------
# finding the state_dict in what a pickle holds


def _describe(v: Any) -> str:
    if isinstance(v, _Ignored):
        return "argparse.Namespace"
    return "tensor" if isinstance(v, _TensorRecord) else type(v).__name__.strip("_")


def _find_state_dict(obj: Any, key: str | None) -> dict[str, _TensorRecord]:
    """The state_dict inside an unpickled object (see :func:`read_state_dict` for the rules)."""
    if not isinstance(obj, dict):
        raise _Bad(f"the checkpoint holds a {_describe(obj)}, not a dict of tensors")
    if key is not None:
        if key not in obj:
            keys = ", ".join(repr(k) for k in list(obj)[:12])
            raise _Bad(f"no entry {key!r} in the checkpoint (top-level keys: {keys})")
        obj = obj[key]
        if not isinstance(obj, dict):
            raise _Bad(f"entry {key!r} holds a {_describe(obj)}, not a dict of tensors")
    for _ in range(_MAX_WRAP_DEPTH):
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    bad_keys = [k for k in obj if not isinstance(k, str)]
    if bad_keys:
        raise _Bad(f"not a state_dict: names {', '.join(_short(k) for k in bad_keys[:6])} "
                   "are not strings")  # fmt: skip
    bad = [(k, v) for k, v in obj.items() if not isinstance(v, _TensorRecord)]
    if bad:
        listed = ", ".join(f"{_short(k)!r} ({_describe(v)})" for k, v in bad[:6])
        nested = [k for k, v in bad if isinstance(v, dict)
                  and any(isinstance(t, _TensorRecord) for t in v.values())]  # fmt: skip
        hint = f"; tensors are under {', '.join(repr(k) for k in nested[:6])}: pass key=..."
        raise _Bad(f"not a state_dict: entries {listed} are not tensors{hint if nested else ''}")
    return obj


def _strip_prefix(sd: dict[str, Any]) -> dict[str, Any]:
    """Drop a leading ``module.`` (DataParallel) from every name that has one."""
    out: dict[str, Any] = {}
    for k, v in sd.items():
        new = k[len(_PREFIX) :] if k.startswith(_PREFIX) else k
        if new in out:
            raise _Bad(f"names {k!r} and {new!r} collide once the {_PREFIX!r} prefix is stripped")
        out[new] = v
    return out


# ---------------------------------------------------------------------------------------------
# torch: zip archives


def _read_torch_zip(zf: zipfile.ZipFile, key: str | None) -> dict[str, np.ndarray]:
    names = zf.namelist()
    pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pkls) != 1:
        raise _Bad("zip archive has no <archive>/data.pkl record" if not pkls
                   else f"zip archive has several data.pkl records: {pkls[:4]}")  # fmt: skip
    prefix = pkls[0][: -len("data.pkl")]
    if prefix + "constants.pkl" in names or any(n.startswith(prefix + "code/") for n in names):
        raise _Bad("a TorchScript archive (torch.jit.save) is not a state_dict; save "
                   "model.state_dict() with torch.save instead")  # fmt: skip
    byteorder = "<"
    if prefix + "byteorder" in names:
        rec = zf.read(prefix + "byteorder")
        if rec not in (b"little", b"big"):
            raise _Bad(f"byteorder record is {_short(rec)}, expected b'little' or b'big'")
        byteorder = "<" if rec == b"little" else ">"
    info = zf.getinfo(pkls[0])
    if info.file_size > _MAX_PICKLE_BYTES:
        raise _Bad(f"data.pkl is {info.file_size} bytes, over the {_MAX_PICKLE_BYTES} limit")

    storages: dict[str, _Storage] = {}

    def storage_for(pid: Any) -> _Storage:
        """A persistent id -> its storage, checked against the record's size."""
        stype, skey, numel, _ = _parse_pid(pid, legacy=False)
        name = f"{prefix}data/{skey}"
        try:
            rinfo = zf.getinfo(name)
        except KeyError:
            raise _Bad(f"storage record {name!r} is missing from the archive") from None
        size_b = _itemsize(stype.dtype) if stype.dtype else 1
        if rinfo.file_size != numel * size_b:
            raise _Bad(f"storage record {name!r} is {rinfo.file_size} bytes, but the pickle "
                       f"declares {numel} x {size_b}-byte elements")  # fmt: skip
        return storages.setdefault(f"{skey}:{stype.name}", _Storage(skey, stype, numel))

    obj = _unpickle(io.BytesIO(zf.read(info)), storage_for)
    sd = _strip_prefix(_find_state_dict(obj, key))

    cache: dict[str, np.ndarray] = {}

    def fetch(skey: str) -> np.ndarray:
        """The bytes of storage record ``skey`` (read once)."""
        if skey not in cache:
            cache[skey] = np.frombuffer(zf.read(f"{prefix}data/{skey}"), np.uint8)
        return cache[skey]

    m = _Materializer(fetch, byteorder)
    return {k: m.build(k, rec) for k, rec in sd.items()}


# ---------------------------------------------------------------------------------------------
# torch: legacy (torch < 1.6) stream of pickles


def _read_torch_legacy(raw: bytes, key: str | None) -> dict[str, np.ndarray]:
    """The torch < 1.6 format: pickles of the magic number, the protocol version and sys_info,
    the object (storages as persistent ids), the list of storage keys; then for each key its
    element count (int64) and its elements, in the byte order sys_info gives."""
    f = io.BytesIO(raw)
    size = len(raw)
    magic = _unpickle(f, None)
    if type(magic) is not int or magic != _LEGACY_MAGIC:
        raise _Bad(
            f"a plain pickle (it holds a {_describe(magic)}), not a torch checkpoint: only "
            "torch.save files (zip, or the legacy format with its magic number) are read"
        )
    protocol = _unpickle(f, None)
    if protocol != _LEGACY_PROTOCOL:
        raise _Bad(f"legacy torch protocol version {_short(protocol)} (expected 1001)")
    sys_info = _unpickle(f, None)
    if not isinstance(sys_info, dict):
        raise _Bad(f"legacy torch header holds a {_describe(sys_info)}, expected a dict")
    little = sys_info.get("little_endian", True)
    if type(little) is not bool:
        raise _Bad(f"legacy torch header: little_endian is {_short(little)}")
    byteorder = "<" if little else ">"

    roots: dict[str, tuple[_StorageType, int]] = {}

    def storage_for(pid: Any) -> _Storage:
        """A legacy persistent id -> its storage (or storage view); sizes checked later."""
        stype, skey, numel, view = _parse_pid(pid, legacy=True)
        if stype.dtype is None:
            raise _Bad("legacy torch checkpoints have no untyped storages")
        known_type, known_numel = roots.setdefault(skey, (stype, numel))
        if known_numel != numel or known_type.dtype != stype.dtype:
            raise _Bad(f"storage {skey!r} is declared with two different types or sizes")
        if view is None:
            return _Storage(skey, stype, numel)
        if not (isinstance(view, tuple) and len(view) == 3):
            raise _Bad(f"malformed storage view {_short(view)}")
        start = _check_int(view[1], "storage view offset")
        count = _check_int(view[2], "storage view size")
        if start + count > numel:
            raise _Bad(f"storage view [{start}, {start + count}) is outside storage {skey!r} "
                       f"of {numel} elements")  # fmt: skip
        return _Storage(skey, stype, count, start)

    obj = _unpickle(f, storage_for)
    sd = _strip_prefix(_find_state_dict(obj, key))
    keys = _unpickle(f, None)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _Bad("legacy torch checkpoint: the storage key list is malformed")
    needed = {rec.storage.key for rec in sd.values()}
    data: dict[str, np.ndarray] = {}
    for skey in keys:
        if skey not in roots:
            raise _Bad(f"storage {skey!r} is listed but no tensor refers to it")
        stype, numel = roots[skey]
        head = f.read(8)
        if len(head) != 8:
            raise _Bad(f"file ends before storage {skey!r}")
        stored = int.from_bytes(head, "little" if byteorder == "<" else "big")
        if stored != numel:
            raise _Bad(f"storage {skey!r} holds {stored} elements, the pickle declares {numel}")
        nbytes = numel * _itemsize(stype.dtype)
        if nbytes > size - f.tell():
            raise _Bad(f"file ends inside storage {skey!r} ({nbytes} bytes declared)")
        if skey in needed:
            data[skey] = np.frombuffer(raw, np.uint8, nbytes, f.tell())
        f.seek(nbytes, os.SEEK_CUR)
    missing = needed - set(data)
    if missing:
        raise _Bad(f"storages {sorted(missing)[:6]} are missing from the file")
    m = _Materializer(data.__getitem__, byteorder)
    return {k: m.build(k, rec) for k, rec in sd.items()}


# ---------------------------------------------------------------------------------------------
# npz


def _read_npz(zf: zipfile.ZipFile) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for info in zf.infolist():
        if not info.filename.endswith(".npy"):
            raise _Bad(f"npz member {info.filename!r} is not an .npy array")
        name = info.filename[: -len(".npy")]
        if name in out:
            raise _Bad(f"npz holds array {name!r} twice")
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
                raise _Bad(f"array {name!r}: bad .npy header ({_short(str(e))})") from None
            if dtype.hasobject:
                raise _Bad(f"array {name!r} is an object array; reading it would need pickle, "
                           "which .npz weights never use")  # fmt: skip
            dt = _dtype_of(dtype)
            if dt is None:
                raise _Bad(f"array {name!r} has dtype {dtype}, not one of {_supported_names()}")
            nbytes = math.prod(shape) * dtype.itemsize
            if info.file_size - f.tell() != nbytes:
                raise _Bad(f"array {name!r}: header declares shape {shape} of {dtype} "
                           f"({nbytes} bytes) but the member holds "
                           f"{info.file_size - f.tell()} data bytes")  # fmt: skip
            raw = np.frombuffer(f.read(nbytes), dtype=dtype)
        raw = raw.reshape(shape, order="F" if fortran else "C")
        out[name] = _finish(raw, dt, copy=True)
    return _strip_prefix(out)


# ---------------------------------------------------------------------------------------------
# safetensors


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise _Bad(f"safetensors header names {k!r} twice")
        d[k] = v
    return d


def _read_safetensors(f: Any, size: int) -> dict[str, np.ndarray]:
    head = f.read(8)
    if len(head) < 8:
        raise _Bad("not a safetensors file: shorter than its 8-byte header length")
    n = int.from_bytes(head, "little")
    if n > _SAFETENSORS_MAX_HEADER:
        raise _Bad(f"not a safetensors file: header length {n} is over the "
                   f"{_SAFETENSORS_MAX_HEADER}-byte limit")  # fmt: skip
    if 8 + n > size:
        raise _Bad(f"safetensors header length {n} runs past the end of the file ({size} bytes)")
    try:
        text = f.read(n).decode("utf-8")
    except UnicodeDecodeError:
        raise _Bad("safetensors header is not UTF-8") from None
    if not text.startswith("{"):
        raise _Bad("safetensors header is not a JSON object")
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise _Bad(f"safetensors header is not valid JSON ({e})") from None
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _Bad("safetensors __metadata__ must map strings to strings")
    data_len = size - 8 - n
    entries = []
    for name, e in header.items():
        if not isinstance(e, dict) or not {"dtype", "shape", "data_offsets"} <= e.keys():
            raise _Bad(f"tensor {name!r}: entry {_short(e)} lacks dtype/shape/data_offsets")
        dt = _BY_ST_CODE.get(e["dtype"]) if isinstance(e["dtype"], str) else None
        if dt is None:
            raise _Bad(f"tensor {name!r}: dtype {_short(e['dtype'])} is not supported "
                       f"(supported: {', '.join(_BY_ST_CODE)})")  # fmt: skip
        shape, offs = e["shape"], e["data_offsets"]
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise _Bad(f"tensor {name!r}: shape {_short(shape)} is not a list of sizes")
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(type(o) is int and o >= 0 for o in offs) or offs[0] > offs[1]):
            raise _Bad(f"tensor {name!r}: data_offsets {_short(offs)} is not [begin, end]")
        if offs[1] > data_len:
            raise _Bad(f"tensor {name!r}: data_offsets {offs} run past the {data_len} data bytes")
        nbytes = math.prod(shape) * _itemsize(dt)
        if offs[1] - offs[0] != nbytes:
            raise _Bad(f"tensor {name!r}: {offs[1] - offs[0]} data bytes for shape {shape} of "
                       f"{dt.st_code} ({nbytes} bytes)")  # fmt: skip
        entries.append((offs[0], offs[1], name, dt, tuple(shape)))
    pos = 0
    for begin, end, name, _, _ in sorted(entries, key=lambda t: (t[0], t[1])):
        if begin != pos:
            raise _Bad(f"tensor {name!r}: data_offsets [{begin}, {end}] "
                       f"{'overlap another tensor' if begin < pos else 'leave a gap'}")
        pos = end
    if pos != data_len:
        raise _Bad(f"safetensors data is {data_len} bytes but the tensors cover {pos}")
    out: dict[str, np.ndarray] = {}
    for begin, end, name, dt, shape in entries:  # in the header's order
        raw = np.empty(end - begin, np.uint8)
        f.seek(8 + n + begin)
        if f.readinto(raw) != raw.nbytes:
            raise _Bad(f"file ends inside tensor {name!r}")
        out[name] = _finish(raw.view(_raw_dtype(dt, "<")).reshape(shape), dt, copy=False)
    return _strip_prefix(out)


# ---------------------------------------------------------------------------------------------
# reading: dispatch


def _check_extension(p: Path) -> str:
    suffix = p.suffix.lower()
    if suffix not in READ_EXTENSIONS:
        raise CheckpointError(f"{p}: unknown weights file extension {suffix or '(none)'!r}; "
                              f"supported: {', '.join(READ_EXTENSIONS)}")  # fmt: skip
    return suffix


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= _SAFETENSORS_MAX_HEADER and 8 + n <= size and head[8:9] == b"{"


def _read_any(p: Path, suffix: str, key: str | None) -> dict[str, np.ndarray]:
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(512)
        f.seek(0)
        if not head:
            raise _Bad("the file is empty")
        if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
            try:
                zf = zipfile.ZipFile(f)
            except zipfile.BadZipFile as e:
                raise _Bad(f"corrupt or truncated zip archive ({e})") from None
            with zf:
                names = zf.namelist()
                if any(n.endswith("/data.pkl") for n in names):
                    return _read_torch_zip(zf, key)
                if all(n.endswith(".npy") for n in names):
                    _no_key(key, "an .npz file")
                    return _read_npz(zf)
                raise _Bad("zip archive is neither a torch checkpoint (no <archive>/data.pkl) "
                           "nor an .npz (members other than .npy)")  # fmt: skip
        if _looks_like_safetensors(head, size) or suffix == ".safetensors":
            _no_key(key, "a safetensors file")
            return _read_safetensors(f, size)
        if len(head) >= 262 and head[257:262] == b"ustar":
            raise _Bad("a tar archive (the torch < 0.4 checkpoint format) is not supported; "
                       "re-save it with a recent torch")  # fmt: skip
        if suffix == ".npz":
            raise _Bad("not an .npz file (not a zip archive)")
        return _read_torch_legacy(f.read(), key)


def _no_key(key: str | None, what: str) -> None:
    if key is not None:
        raise _Bad(f"{what} has no wrapper entries; key={key!r} applies to torch checkpoints")


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

    Raises CheckpointError (message starts with the path) for a missing, unreadable, corrupt or
    unsupported file, UnsafeCheckpointError naming the global for a pickle that refers to one
    outside the allowlist.
    """
    p = Path(path)
    suffix = _check_extension(p)
    try:
        return _read_any(p, suffix, key)
    except _Unsafe as e:
        raise UnsafeCheckpointError(f"{p}: {e}") from None
    except _Bad as e:
        raise CheckpointError(f"{p}: {e}") from None
    except FileNotFoundError:
        raise CheckpointError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{p}: is a directory, not a weights file") from None
    except MemoryError:
        raise CheckpointError(f"{p}: too large to read into memory") from None
    except OSError as e:
        raise CheckpointError(f"{p}: cannot read ({e.strerror or e})") from None
    except Exception as e:  # noqa: BLE001 - any other failure means corrupt input (zip CRC ...)
        raise CheckpointError(f"{p}: corrupt or unreadable weights file "
                              f"({type(e).__name__}: {_short(str(e))})") from e  # fmt: skip


# ---------------------------------------------------------------------------------------------
# writing


def _prepare(sd: Mapping[str, Any]) -> list[tuple[str, np.ndarray, _DType]]:
    """Validate a state_dict for writing: (name, C-contiguous little-endian array, dtype)."""
    if not isinstance(sd, Mapping):
        raise WeightsError(f"a state_dict maps names to arrays; got a {type(sd).__name__}")
    out = []
    for k, v in sd.items():
        if not isinstance(k, str):
            raise WeightsError(f"state_dict name {k!r} is not a string")
        try:
            k.encode("utf-8")
        except UnicodeEncodeError:
            raise WeightsError(f"state_dict name {k!r} is not valid Unicode") from None
        arr = np.asarray(v)
        dt = _dtype_of(arr.dtype)
        if dt is None:
            raise WeightsError(f"{k!r}: dtype {arr.dtype} cannot be stored "
                               f"(supported: {_supported_names()})")  # fmt: skip
        arr = np.asarray(arr, dtype=arr.dtype.newbyteorder("<"), order="C")
        out.append((k, arr, dt))
    return out


def _write_npz(f: Any, arrays: list[tuple[str, np.ndarray, _DType]]) -> None:
    for k, _, _ in arrays:
        if "\x00" in k:
            raise WeightsError(f"{k!r}: .npz member names cannot contain NUL")
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for k, arr, _ in arrays:
            with zf.open(k + ".npy", "w", force_zip64=True) as m:
                npy_format.write_array(m, arr, allow_pickle=False)


def _write_safetensors(f: Any, arrays: list[tuple[str, np.ndarray, _DType]]) -> None:
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


class _PickleWriter:
    """Emits protocol-2 pickle opcodes for torch's data.pkl without importing torch."""

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")  # PROTO 2
        self._memo: dict[Any, int] = {}

    def _memoized(self, key: Any, emit: Callable[[], None]) -> None:
        if key in self._memo:
            i = self._memo[key]
            self.out += b"h" + bytes([i]) if i < 256 else b"j" + struct.pack("<I", i)  # BINGET
            return
        emit()
        i = self._memo[key] = len(self._memo)
        self.out += b"q" + bytes([i]) if i < 256 else b"r" + struct.pack("<I", i)  # BINPUT

    def global_(self, module: str, name: str) -> None:
        """GLOBAL ``module.name`` (memoized)."""
        self._memoized(("g", module, name),
                       lambda: self.out.extend(f"c{module}\n{name}\n".encode("ascii")))  # fmt: skip

    def str_(self, s: str, memo: bool = False) -> None:
        """A str as BINUNICODE (memoized on request)."""
        def emit() -> None:
            b = s.encode("utf-8")
            self.out += b"X" + struct.pack("<I", len(b)) + b  # BINUNICODE
        self._memoized(("s", s), emit) if memo else emit()

    def int_(self, n: int) -> None:
        """An int in the shortest opcode that holds it."""
        if 0 <= n < 256:
            self.out += b"K" + bytes([n])  # BININT1
        elif 0 <= n < 65536:
            self.out += b"M" + struct.pack("<H", n)  # BININT2
        elif -(2**31) <= n < 2**31:
            self.out += b"J" + struct.pack("<i", n)  # BININT
        else:
            b = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
            self.out += b"\x8a" + bytes([len(b)]) + b  # LONG1

    def int_tuple(self, xs: tuple[int, ...]) -> None:
        """A tuple of ints (a size or a stride)."""
        if not xs:
            self.out += b")"  # EMPTY_TUPLE
            return
        if len(xs) > 3:
            self.out += b"("  # MARK
        for x in xs:
            self.int_(x)
        self.out += {1: b"\x85", 2: b"\x86", 3: b"\x87"}.get(len(xs), b"t")  # TUPLE1/2/3, TUPLE

    def empty_ordered_dict(self) -> None:
        """``collections.OrderedDict()``."""
        self.global_("collections", "OrderedDict")
        self.out += b")R"  # EMPTY_TUPLE REDUCE

    def tensor(self, skey: str, arr: np.ndarray, dt: _DType) -> None:
        """``_rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())`` as torch
        writes it, or ``_rebuild_tensor_v3`` with an untyped storage for uint16/32/64."""
        v3 = dt.storage is None
        self.global_("torch._utils", "_rebuild_tensor_v3" if v3 else "_rebuild_tensor_v2")
        self.out += b"(("  # MARK (args) MARK (persistent id)
        self.str_("storage", memo=True)
        if v3:
            self.global_("torch.storage", "UntypedStorage")
        else:
            self.global_("torch", dt.storage)
        self.str_(skey)
        self.str_("cpu", memo=True)
        self.int_(arr.nbytes if v3 else arr.size)
        self.out += b"tQ"  # TUPLE BINPERSID
        self.int_(0)
        self.int_tuple(tuple(arr.shape))
        self.int_tuple(tuple(math.prod(arr.shape[i + 1 :]) for i in range(arr.ndim)))
        self.out += b"\x89"  # NEWFALSE
        self.empty_ordered_dict()
        if v3:
            self.global_("torch", dt.name)
        self.out += b"tR"  # TUPLE REDUCE


def _torch_pickle(arrays: list[tuple[str, np.ndarray, _DType]]) -> bytes:
    w = _PickleWriter()
    w.empty_ordered_dict()
    for start in range(0, len(arrays), 1000):
        w.out += b"("  # MARK
        for i, (k, arr, dt) in enumerate(arrays[start : start + 1000], start):
            w.str_(k)
            w.tensor(str(i), arr, dt)
        w.out += b"u"  # SETITEMS
    w.out += b"."  # STOP
    return bytes(w.out)


def _zip_add(zf: zipfile.ZipFile, name: str, data: Any, align: bool = False) -> None:
    """Store one record uncompressed; with ``align`` its data starts at a multiple of 64 bytes
    (padding in an extra field, as torch does), so readers may map storages in place."""
    nbytes = memoryview(data).nbytes
    zi = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    zi.compress_type = zipfile.ZIP_STORED
    zi.file_size = nbytes
    if align:
        zip64_extra = 20 if nbytes * 1.05 > zipfile.ZIP64_LIMIT else 0
        fixed = 30 + len(name.encode("utf-8")) + 4 + zip64_extra  # local header + extra id/len
        pad = -(zf.start_dir + fixed) % _ZIP_ALIGN
        zi.extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad
    with zf.open(zi, "w") as w:
        w.write(data)


def _write_torch(f: Any, arrays: list[tuple[str, np.ndarray, _DType]]) -> None:
    pkl = _torch_pickle(arrays)
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        _zip_add(zf, "archive/data.pkl", pkl)
        _zip_add(zf, "archive/byteorder", b"little")
        for i, (_, arr, _) in enumerate(arrays):
            _zip_add(zf, f"archive/data/{i}", memoryview(arr.reshape(-1).view(np.uint8)), True)
        _zip_add(zf, "archive/version", b"3\n")


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
    suffix = p.suffix.lower()
    if suffix not in WRITE_EXTENSIONS:
        raise CheckpointError(f"{p}: unknown weights file extension {suffix or '(none)'!r}; "
                              f"supported: {', '.join(WRITE_EXTENSIONS)}")  # fmt: skip
    arrays = _prepare(sd)
    writer = {".npz": _write_npz, ".safetensors": _write_safetensors}.get(suffix, _write_torch)
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
