"""The whole ParCNetV2 model in C (spec clause 16) from Python: a thin binding of ``pcn_model.h``.

    model = parcnetv2.cext.model.load("parcnetv2_tiny.safetensors")       # or from_arrays(state_dict)
    logits = model(images, threads=2)      # images (N, 3, H, W) NCHW float32 -> (N, num_classes) float32

The C library validates every argument and reports errors as codes with a message; this module
maps them to the project's exceptions (``CheckpointError`` for an unreadable file,
``WeightsError`` for weights that do not form a ParCNetV2, ``MemoryError``, else ``InputError``)
and adds nothing else. A ``Model`` holds the weights packed once; it prepares a ``Plan`` (every
buffer of one input shape) on first use of a shape and keeps the last ``PLAN_CACHE_SIZE``.
Calls on one Model are serialised per plan; results are bit-identical for any thread count.
Shape legend: N, C, H, W, K.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, MutableMapping
from typing import Any, cast

import numpy as np

from parcnetv2.cext import _ffi, _isa_value, _lib, check_threads
from parcnetv2.errors import CheckpointError, InputError, WeightsError

__all__ = ["PLAN_CACHE_SIZE", "Model", "Plan", "from_arrays", "load", "load_bytes"]

PLAN_CACHE_SIZE = 4

_DTYPES = {
    np.dtype(np.float32): _lib.PCN_DTYPE_F32,
    np.dtype(np.float16): _lib.PCN_DTYPE_F16,
    np.dtype(np.float64): _lib.PCN_DTYPE_F64,
}
_PATHS = {"auto": _lib.PCN_PATH_AUTO, "separable": _lib.PCN_PATH_SEPARABLE, "dense": _lib.PCN_PATH_DENSE}
_PATH_NAMES = {v: k for k, v in _PATHS.items()}


def _raise(status: int, err, what: str) -> None:
    if status == _lib.PCN_OK:
        return
    message = f"{what}: {_ffi.string(err.message).decode(errors='replace')}"
    if status in (_lib.PCN_ERR_FILE, _lib.PCN_ERR_FORMAT):
        raise CheckpointError(message)
    if status == _lib.PCN_ERR_WEIGHTS:
        raise WeightsError(message)
    if status == _lib.PCN_ERR_NOMEM:
        raise MemoryError(message)
    raise InputError(message)


def _model_options(isa: str | None, interpolate: bool | int):
    opt = _lib.pcn_model_options_default()
    opt.isa = _isa_value(isa)
    if interpolate is True:
        opt.oversized = _lib.PCN_OVERSIZED_INTERPOLATE
    elif interpolate is False or interpolate is None:
        opt.oversized = _lib.PCN_OVERSIZED_FIXED
    elif isinstance(interpolate, (int, np.integer)) and not isinstance(interpolate, bool) and interpolate > 0:
        opt.oversized = _lib.PCN_OVERSIZED_SIZE
        opt.oversized_size = int(interpolate)  # odd and <= PCN_MAX_KERNEL: checked in C
    else:
        raise InputError(f"interpolate must be False, True or an odd positive int, got {interpolate!r}")
    return _ffi.new("pcn_model_options *", opt)


class Plan:
    """Every buffer of one input shape (N, 3, H, W) (``pcn_plan``); ``run`` allocates nothing in C."""

    def __init__(self, model: Model, shape: tuple[int, ...], max_threads: int | None, path: str):
        if path not in _PATHS:
            raise InputError(f"path must be one of {list(_PATHS)}, got {path!r}")
        if len(shape) != 4 or any(not isinstance(d, (int, np.integer)) or d < 0 for d in shape):
            raise InputError(f"a plan needs an NCHW shape of four sizes, got {shape!r}")
        opt = _lib.pcn_plan_options_default()
        opt.max_threads = check_threads(max_threads) or 0
        opt.path = _PATHS[path]
        out, err = _ffi.new("pcn_plan **"), _ffi.new("pcn_error *")
        n, c, h, w = (int(d) for d in shape)
        popt = _ffi.new("pcn_plan_options *", opt)
        _raise(_lib.pcn_plan_create(out, model._ptr, (n, c, h, w), popt, err), err, "plan")
        self._ptr = _ffi.gc(out[0], _lib.pcn_plan_free)
        self.model = model  # the plan points into the model's weights
        self.shape = (n, c, h, w)
        self.max_threads = self.info()["max_threads"]
        self.lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        """Feature-map sizes, kernel lengths and spatial path per stage, threads, buffer bytes."""
        info, err = _ffi.new("pcn_plan_info *"), _ffi.new("pcn_error *")
        _raise(_lib.pcn_plan_get_info(self._ptr, info, err), err, "plan info")
        stages = self.model.info()["stages"]
        return {
            "input": self.shape,
            "max_threads": int(info.max_threads),
            "buffer_bytes": int(info.buffer_bytes),
            "maps": [(int(info.map_h[i]), int(info.map_w[i])) for i in range(stages)],
            "kernels": [(int(info.kernel_h[i]), int(info.kernel_w[i])) for i in range(stages)],
            "paths": [_PATH_NAMES.get(int(info.path[i]), "none") for i in range(stages)],
        }

    def run(self, x: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Logits (N, K) float32 of x, a C-contiguous float32 array of the plan's shape."""
        if x.dtype != np.float32 or not x.flags.c_contiguous or x.shape != self.shape:
            raise InputError(f"the plan runs C-contiguous float32 {self.shape} arrays, got {x.dtype} {x.shape}")
        classes = self.model.num_classes
        logits = np.empty((self.shape[0], classes), np.float32)
        err = _ffi.new("pcn_error *")
        nt = check_threads(threads) or 0
        with self.lock:
            st = _lib.pcn_plan_run(
                self._ptr,
                _ffi.cast("float *", _ffi.from_buffer(x)),
                x.size,
                _ffi.cast("float *", _ffi.from_buffer(logits)),
                logits.size,
                nt,
                err,
            )
        _raise(st, err, "run")
        return logits


class Model:
    """A ParCNetV2 model in C: weights packed once for one ISA (``pcn_model``). Build one with
    ``load``, ``load_bytes`` or ``from_arrays``."""

    def __init__(self, ptr: Any, max_threads: int | None = None):
        self._ptr = _ffi.gc(ptr, _lib.pcn_model_free)
        self.max_threads = check_threads(max_threads)
        self._plans: OrderedDict[tuple[int, ...], Plan] = OrderedDict()
        self._lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        """The architecture (clause 13.4) and what the model holds."""
        info, err = _ffi.new("pcn_model_info *"), _ffi.new("pcn_error *")
        _raise(_lib.pcn_model_get_info(self._ptr, info, err), err, "model info")
        s = int(info.stages)
        return {
            "stages": s,
            "depths": tuple(int(info.depths[i]) for i in range(s)),
            "dims": tuple(int(info.dims[i]) for i in range(s)),
            "kernel_sizes": tuple(int(info.kernel_sizes[i]) for i in range(s)),
            "num_classes": int(info.num_classes),
            "parameters": int(info.parameters),
            "packed_bytes": int(info.packed_bytes),
            "isa": _ffi.string(_lib.pcn_isa_name(info.isa)).decode(),
        }

    @property
    def num_classes(self) -> int:
        return self.info()["num_classes"]

    def plan(self, shape: tuple[int, ...], max_threads: int | None = None, path: str = "auto") -> Plan:
        """A new plan for inputs of ``shape`` (N, 3, H, W); ``path`` forces the spatial path."""
        return Plan(self, tuple(shape), self.max_threads if max_threads is None else max_threads, path)

    def _cached_plan(self, shape: tuple[int, ...], threads: int | None) -> Plan:
        """The cached plan of ``shape``, rebuilt when a call asks for more threads than it has."""
        with self._lock:
            plan = self._plans.get(shape)
            if plan is not None and (threads is None or threads <= plan.max_threads):
                self._plans.move_to_end(shape)
                return plan
            want = self.max_threads if threads is None else max(threads, self.max_threads or 0)
            plan = self.plan(shape, max_threads=want)
            self._plans[shape] = plan
            while len(self._plans) > PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)
            return plan

    def __call__(self, x: Any, threads: int | None = None) -> np.ndarray:
        """Logits (N, K) float32 of NCHW images x (N, 3, H, W) of any floating dtype (converted to
        float32); N = 0 gives (0, K)."""
        x = np.asarray(x)
        if x.dtype.kind != "f":
            raise InputError(f"input must be a floating-point array, got dtype {x.dtype}")
        if x.ndim != 4:
            raise InputError(f"input must be NCHW (N, 3, H, W), got shape {x.shape}")
        if x.shape[0] == 0:
            return np.zeros((0, self.num_classes), np.float32)
        x = np.ascontiguousarray(x, dtype=np.float32)
        nt = check_threads(threads)
        return self._cached_plan(tuple(int(d) for d in x.shape), nt).run(x, nt)


def load(
    path: str | os.PathLike, isa: str | None = None, interpolate: bool | int = False, threads: int | None = None
) -> Model:
    """A Model from a ``.safetensors`` file (header parsed and checked in C; clause 16.1)."""
    out, err = _ffi.new("pcn_model **"), _ffi.new("pcn_error *")
    _raise(_lib.pcn_model_load_file(out, os.fsencode(path), _model_options(isa, interpolate), err), err, str(path))
    return Model(out[0], threads)


def load_bytes(
    data: bytes, isa: str | None = None, interpolate: bool | int = False, threads: int | None = None
) -> Model:
    """A Model from the bytes of a ``.safetensors`` file."""
    out, err = _ffi.new("pcn_model **"), _ffi.new("pcn_error *")
    buf = _ffi.from_buffer(data)
    _raise(_lib.pcn_model_load_memory(out, buf, len(data), _model_options(isa, interpolate), err), err, "safetensors")
    return Model(out[0], threads)


def from_arrays(
    arrays: Mapping[str, Any],
    isa: str | None = None,
    interpolate: bool | int = False,
    threads: int | None = None,
    release: bool = False,
) -> Model:
    """A Model from arrays under the official names (float16/32/64; other floating dtypes are
    converted to float32 by NumPy, non-floating ones refused by the C checks).

    The C library checks every name and shape first, then reads the tensors one at a time
    (``pcn_model_from_reader``), each converted to float32 and packed. With ``release`` (a
    mutable mapping such as a dict the caller no longer needs), each entry is deleted from
    ``arrays`` once C has read it, so the weights are held about once while the model is built,
    not twice (clause 15.7's memory budget)."""
    names = list(arrays)
    tensors = _ffi.new("pcn_tensor[]", max(len(names), 1))
    keep: list[Any] = []
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise InputError(f"tensor names must be strings, got {name!r}")
        value = arrays[name]
        dtype = value.dtype if isinstance(value, np.ndarray) else np.asarray(value).dtype
        if dtype.kind != "f":
            raise WeightsError(f"{name} has dtype {dtype}; weights must be floating point")
        shape = np.shape(value)
        if len(shape) > _lib.PCN_TENSOR_MAX_DIMS:
            raise WeightsError(f"{name} has {len(shape)} dimensions")
        cname = _ffi.new("char[]", name.encode())
        keep.append(cname)
        t = tensors[i]
        t.name = cname
        t.dtype = _DTYPES.get(dtype, _lib.PCN_DTYPE_F32)  # others are converted when read
        t.ndim = len(shape)
        for k, d in enumerate(shape):
            t.shape[k] = d
    failure: list[BaseException] = []

    @_ffi.callback("int(void *, size_t, void *, size_t)")
    def read(context: Any, index: int, data: Any, size: int) -> int:
        try:
            name = names[index]
            value = cast(MutableMapping[str, Any], arrays).pop(name) if release else arrays[name]
            arr = np.asarray(value)
            if arr.dtype not in _DTYPES:
                arr = arr.astype(np.float32)
            arr = np.ascontiguousarray(arr)
            if arr.nbytes != size:
                raise WeightsError(f"{name} changed while the model was built")
            _ffi.memmove(data, arr, size)
            return 0
        except BaseException as exc:  # re-raised below, once C has returned
            failure.append(exc)
            return 1

    out, err = _ffi.new("pcn_model **"), _ffi.new("pcn_error *")
    opt = _model_options(isa, interpolate)
    status = _lib.pcn_model_from_reader(out, tensors, len(names), read, _ffi.NULL, opt, err)
    if failure:
        raise failure[0]
    _raise(status, err, "weights")
    return Model(out[0], threads)
