"""Reading torch's pickles without running them: the security boundary of checkpoint loading.

A default unpickler imports and calls any global a pickle names (``posix.system``,
``builtins.eval`` ...). Here ``find_class`` resolves only the globals of an allowlist, each to a
local, inert stand-in, and raises :class:`UnsafePickle` naming any other. The stand-ins build no
tensors: the rebuild functions return :class:`TensorRecord` (storage, offset, size, stride,
dtype), which the torch reader checks against the stored data and copies into fresh arrays
afterwards, and only for the entries of the state_dict. Before unpickling, each pickle's opcodes
are walked once (:mod:`.pickle_scan`) to refuse what would get past ``find_class`` or allocate
beyond the limits of clause 13.5.
"""

from __future__ import annotations

import collections
import io
import pickle
from collections.abc import Callable, Mapping
from typing import Any

from parcnetv2.errors import brief
from parcnetv2.reference.checkpoint.dtypes import (
    BY_STORAGE,
    DTYPES,
    UNSUPPORTED_STORAGES,
    UNSUPPORTED_TORCH_DTYPES,
    DType,
)
from parcnetv2.reference.checkpoint.internal_errors import BadFile, UnsafePickle, shorten
from parcnetv2.reference.checkpoint.limits import MAX_EXTENT, MAX_NDIM, MAX_PICKLE_OBJECT_BYTES
from parcnetv2.reference.checkpoint.pickle_scan import scan

# ---------------------------------------------------------------------------------------------
# what the unpickler hands out


class _Sentinel:
    """Base of every object the unpickler creates for a global: inert, refuses pickle's BUILD,
    item assignment and appends, so a crafted pickle cannot alter it."""

    __slots__ = ()

    def describe(self) -> str:
        """What this stands for, for error messages (never an object repr)."""
        return type(self).__name__.strip("_")

    def __repr__(self) -> str:
        return self.describe()

    def __setstate__(self, state: Any) -> None:
        raise BadFile(f"malformed pickle: BUILD applied to {self.describe()}")


class StorageType(_Sentinel):
    """Stand-in for a torch storage class (``torch.FloatStorage``, ``torch.UntypedStorage``)."""

    __slots__ = ("dtype", "name")

    def __init__(self, name: str, dtype: DType | None) -> None:
        self.name = name
        self.dtype = dtype  # None: untyped (bytes); the dtype comes with _rebuild_tensor_v3

    def describe(self) -> str:
        return f"torch.{self.name}"


class _TorchDType(_Sentinel):
    """Stand-in for ``torch.<dtype>`` (an argument of ``_rebuild_tensor_v3``)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def describe(self) -> str:
        return f"torch.{self.name}"


class _TensorType(_Sentinel):
    """Stand-in for ``torch.Tensor`` (an argument of ``_rebuild_from_type_v2``)."""

    __slots__ = ()

    def describe(self) -> str:
        return "torch.Tensor"


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

    @classmethod
    def describe(cls) -> str:  # the class itself is what find_class hands out
        return "argparse.Namespace"

    def __repr__(self) -> str:
        return self.describe()


class Storage(_Sentinel):
    """A storage named by a persistent id: ``count`` elements of ``stype`` from element ``start``
    of the stored record ``key`` (``start`` is nonzero only for legacy storage views)."""

    __slots__ = ("count", "key", "start", "stype")

    def __init__(self, key: str, stype: StorageType, count: int, start: int = 0) -> None:
        self.key, self.stype, self.count, self.start = key, stype, count, start

    def describe(self) -> str:
        return f"storage {brief(self.key)}"


class TensorRecord(_Sentinel):
    """A tensor to build later: a strided view (offset, size, stride in elements) of a storage."""

    __slots__ = ("conj", "dtype", "neg", "offset", "size", "storage", "stride")

    def __init__(self, storage: Storage, dtype: DType, offset: int, size: tuple, stride: tuple,
                 conj: bool = False, neg: bool = False) -> None:  # fmt: skip
        self.storage, self.dtype, self.offset, self.size, self.stride = (
            storage, dtype, offset, size, stride,
        )  # fmt: skip
        self.conj, self.neg = conj, neg

    def describe(self) -> str:
        return "tensor"


def describe(v: Any) -> str:
    """What an unpickled value is, for error messages ("tensor", "dict", ...)."""
    if isinstance(v, (_Sentinel, _Ignored)) or v is _Ignored:
        return v.describe()
    return type(v).__name__.strip("_")


# ---------------------------------------------------------------------------------------------
# the rebuild functions: checked records instead of tensors


def check_int(x: Any, what: str, minimum: int = 0) -> int:
    """``x`` if it is an int in [``minimum``, MAX_EXTENT) (a size, offset or stride read from a
    pickle; clause 13.5 bounds them so that no arithmetic on them is ever slow)."""
    if type(x) is not int or not minimum <= x < MAX_EXTENT:
        raise BadFile(f"malformed tensor: {what} is {brief(x)}, expected an int >= {minimum} and < 2**62")
    return x


def _check_dims(x: Any, what: str) -> tuple[int, ...]:
    if not isinstance(x, (tuple, list)):
        raise BadFile(f"malformed tensor: {what} is {brief(x)}, expected a tuple of ints")
    if len(x) > MAX_NDIM:
        raise BadFile(f"malformed tensor: {what} has {len(x)} dimensions (at most {MAX_NDIM})")
    return tuple(check_int(v, what) for v in x)


def _tensor_record(storage: Storage, offset: Any, size: Any, stride: Any, dtype: DType | None,
                   metadata: Any = None) -> TensorRecord:  # fmt: skip
    """The record of a tensor whose storage its caller has checked."""
    if dtype is None:
        raise BadFile("malformed tensor: an untyped storage needs _rebuild_tensor_v3's dtype")
    size, stride = _check_dims(size, "size"), _check_dims(stride, "stride")
    if len(size) != len(stride):
        raise BadFile(f"malformed tensor: size {shorten(size)} and stride {shorten(stride)} differ in length")
    conj = neg = False
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise BadFile(f"malformed tensor: metadata is {brief(metadata)}")
        for k, v in metadata.items():
            if k == "conj":
                conj = bool(v)
            elif k == "neg":
                neg = bool(v)
            elif v:
                raise BadFile(f"unsupported tensor metadata {shorten(k)}={shorten(v)}")
    return TensorRecord(storage, dtype, check_int(offset, "storage offset"), size, stride,
                        conj, neg)  # fmt: skip


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any,
                       requires_grad: Any = False, backward_hooks: Any = None,
                       metadata: Any = None) -> TensorRecord:  # fmt: skip
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: a typed storage carries the dtype."""
    if not isinstance(storage, Storage):
        raise BadFile(f"malformed tensor: storage argument is {brief(storage)}")
    return _tensor_record(storage, storage_offset, size, stride, storage.stype.dtype, metadata)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> TensorRecord:
    """Stand-in for the old ``torch._utils._rebuild_tensor`` (checkpoints of torch 0.4)."""
    return _rebuild_tensor_v2(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage: Any, storage_offset: Any, size: Any, stride: Any,
                       requires_grad: Any, backward_hooks: Any, dtype: Any,
                       metadata: Any = None) -> TensorRecord:  # fmt: skip
    """Stand-in for ``torch._utils._rebuild_tensor_v3``: an untyped (byte) storage plus a dtype,
    used by torch >= 2.3 for dtypes without a legacy storage class (uint16/32/64, float8 ...)."""
    if not isinstance(dtype, _TorchDType):
        raise BadFile(f"malformed tensor: dtype argument is {brief(dtype)}")
    if dtype.name not in DTYPES:
        raise BadFile(f"tensor dtype torch.{dtype.name} is not supported (supported: "
                      f"{', '.join(DTYPES)})")  # fmt: skip
    if not isinstance(storage, Storage) or storage.stype.dtype is not None:
        raise BadFile("malformed tensor: _rebuild_tensor_v3 needs an untyped storage")
    dt = DTYPES[dtype.name]
    if storage.count % dt.itemsize or storage.start % dt.itemsize:
        raise BadFile(f"storage {brief(storage.key)} of {storage.count} bytes is not a whole number "
                      f"of {dt.name} elements")  # fmt: skip
    typed = Storage(storage.key, StorageType(f"UntypedStorage[{dt.name}]", dt),
                    storage.count // dt.itemsize, storage.start // dt.itemsize)  # fmt: skip
    return _tensor_record(typed, storage_offset, size, stride, dt, metadata)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None,
                       state: Any = None) -> TensorRecord:  # fmt: skip
    """Stand-in for ``torch._utils._rebuild_parameter[_with_state]``: the Parameter's tensor;
    its Python attributes (``state``) are dropped."""
    if not isinstance(data, TensorRecord):
        raise BadFile(f"malformed Parameter: data is {brief(data)}")
    return data


class _Global(_Sentinel):
    """What the unpickler hands out for an allowed callable global. Pickle can only call it:
    BUILD raises (a bare function would let a pickle set its ``__defaults__`` and so change
    how later files are read), and it has no attributes to set."""

    __slots__ = ("func", "name", "rebuilds_tensor")

    def __init__(self, name: str, func: Callable[..., Any], rebuilds_tensor: bool = False) -> None:
        self.name, self.func, self.rebuilds_tensor = name, func, rebuilds_tensor

    def describe(self) -> str:
        return f"global {self.name}"

    def __call__(self, *args: Any) -> Any:
        return self.func(*args)


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> TensorRecord:
    """Stand-in for ``torch._tensor._rebuild_from_type_v2`` (a plain tensor with Python
    attributes): calls one of our rebuild stand-ins, drops the attributes."""
    if not (isinstance(func, _Global) and func.rebuilds_tensor) or not isinstance(new_type, _TensorType):
        raise BadFile("malformed tensor: _rebuild_from_type_v2 with unexpected arguments")
    if not isinstance(args, tuple):
        raise BadFile(f"malformed tensor: rebuild arguments are {brief(args)}")
    return func(*args)


# ---------------------------------------------------------------------------------------------
# the allowlist


_STORAGE_MODULES = ("torch", "torch.cuda", "torch.storage")


def _allowlist() -> dict[tuple[str, str], tuple[Any, str]]:
    """(module, name) -> (what find_class returns, why it is allowed)."""
    untyped = StorageType("UntypedStorage", None)
    rebuild_parameter = _Global("torch._utils._rebuild_parameter", _rebuild_parameter, rebuilds_tensor=True)
    rebuild_from_type = _Global("torch._tensor._rebuild_from_type_v2", _rebuild_from_type_v2)
    allowed: dict[tuple[str, str], tuple[Any, str]] = {
        ("collections", "OrderedDict"): (
            _Global("collections.OrderedDict", collections.OrderedDict),
            "container of state_dicts and of the (empty) backward hooks of every tensor",
        ),
        ("torch._utils", "_rebuild_tensor_v2"): (
            _Global("torch._utils._rebuild_tensor_v2", _rebuild_tensor_v2, rebuilds_tensor=True),
            "how torch pickles every tensor with a typed storage; rebuilt as a checked view record",
        ),
        ("torch._utils", "_rebuild_tensor_v3"): (
            _Global("torch._utils._rebuild_tensor_v3", _rebuild_tensor_v3, rebuilds_tensor=True),
            "torch >= 2.3 tensors of uint16/32/64 (untyped storage + dtype)",
        ),
        ("torch._utils", "_rebuild_tensor"): (
            _Global("torch._utils._rebuild_tensor", _rebuild_tensor, rebuilds_tensor=True),
            "tensors in torch 0.4 checkpoints",
        ),
        ("torch._utils", "_rebuild_parameter"): (
            rebuild_parameter,
            "nn.Parameter; read as its tensor",
        ),
        ("torch._utils", "_rebuild_parameter_with_state"): (
            rebuild_parameter,
            "nn.Parameter with Python attributes; read as its tensor, attributes dropped",
        ),
        ("torch._tensor", "_rebuild_from_type_v2"): (
            rebuild_from_type,
            "tensor with Python attributes; read as its tensor, attributes dropped",
        ),
        ("torch.tensor", "_rebuild_from_type_v2"): (
            rebuild_from_type,
            "the same under its pre-1.8 module name",
        ),
        ("torch", "Tensor"): (
            _TensorType(),
            "type argument of _rebuild_from_type_v2; an inert marker",
        ),
        ("torch.storage", "UntypedStorage"): (
            untyped,
            "storage type of _rebuild_tensor_v3 tensors; an inert marker",
        ),
        ("torch", "UntypedStorage"): (
            untyped,
            "the same in the torch namespace",
        ),
        ("argparse", "Namespace"): (
            _Ignored,
            "training arguments stored by timm/ConvNeXt/DeiT checkpoints; an empty inert placeholder",
        ),
    }
    for module in _STORAGE_MODULES:
        for storage, dt in BY_STORAGE.items():
            allowed[(module, storage)] = (
                StorageType(storage, dt),
                f"torch storage class of {dt.name} tensors; an inert marker of the dtype",
            )
    # The unsupported dtypes are allowed too, so that _rebuild_tensor_v3 names them as such.
    for name in list(DTYPES) + sorted(UNSUPPORTED_TORCH_DTYPES):
        allowed[("torch", name)] = (
            _TorchDType(name),
            "torch dtype, argument of _rebuild_tensor_v3; an inert marker",
        )
    return allowed


# Nothing outside this table is ever resolved.
_ALLOWED = _allowlist()

#: The globals a pickled checkpoint may name ("module.name" -> why), for documentation and tests.
ALLOWED_GLOBALS: Mapping[str, str] = {f"{m}.{n}": why for (m, n), (_, why) in _ALLOWED.items()}


# ---------------------------------------------------------------------------------------------
# the unpickler


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
    build nothing but records) and refuses every other global with ``UnsafePickle`` naming it.

    ``persistent_load`` forwards torch's storage ids to ``storage_for`` (None: refuse them).
    """

    def __init__(self, file: Any, storage_for: Callable[[Any], Storage] | None) -> None:
        super().__init__(file, encoding="utf-8")
        self._storage_for = storage_for

    def find_class(self, module: str, name: str) -> Any:
        """Resolve an allowed global to its stand-in; refuse anything else, naming it."""
        entry = _ALLOWED.get((module, name))
        if entry is None:
            if module in _STORAGE_MODULES and name in UNSUPPORTED_STORAGES:
                raise BadFile(f"quantized storage {module}.{name} is not supported")
            glob = f"'{shorten(module)}.{shorten(name)}'{_py3_alias(module, name)}"
            raise UnsafePickle(
                f"refusing to load global {glob}: it is not one of the globals a plain "
                "state_dict needs, and loading it could import or run code"
            )
        return entry[0]

    def persistent_load(self, pid: Any) -> Any:
        """Torch's persistent ids name storages; anything else is malformed."""
        if self._storage_for is None:
            raise BadFile("pickle refers to external data (a persistent id) outside a torch "
                          "archive")  # fmt: skip
        return self._storage_for(pid)


def unpickle(data: bytes, storage_for: Callable[[Any], Storage] | None, start: int = 0,
             budget: int = MAX_PICKLE_OBJECT_BYTES) -> tuple[Any, int, int]:  # fmt: skip
    """The pickle at ``data[start]`` through the restricted unpickler, after ``pickle_scan.scan``
    has bounded it (``budget``: estimated bytes of objects); returns (object, offset past its
    STOP, estimated object bytes). Persistent ids go to ``storage_for`` (None: the pickle may
    have none)."""
    end, cost = scan(data, start, budget)
    stream = io.BytesIO(data)  # shares the bytes of a bytes object: no copy
    stream.seek(start)
    try:
        return _RestrictedUnpickler(stream, storage_for).load(), end, cost
    except BadFile:
        raise
    except RecursionError:
        raise BadFile("pickle nests too deeply") from None
    except Exception as e:
        raise BadFile(f"malformed pickle ({type(e).__name__}: {shorten(str(e))})") from None
