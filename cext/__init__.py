"""parcnetv2.cext: the C kernels from Python: the depthwise convolutions (spec clause 12), the fused
kernels of the inference engine (clause 15: erf, GELU, gates, norms, residual, head, patches) and
the packed-weight GEMM (clause 16.2). The whole model is ``parcnetv2.cext.model`` (clause 16).

NumPy in, NumPy out. Computation is float32: inputs of another floating dtype (float16, float64)
are converted to float32 first and the result is float32. Any memory layout of the input arrays
is accepted (non-contiguous arrays are copied to C order). Weights use PyTorch's shapes.
Shape legend: N batch, C channels, H height, W width, K kernel length.

Validation lives in C, once (clause 16.5): this module converts the arguments to C types (float32
arrays, sizes taken from the arrays' shapes, names of enums, ``None`` for a default), checks only
what C cannot see (that each array holds the elements the sizes say), asks C for the output shape
before allocating it, and turns a C status into ``InputError`` (``MemoryError`` for
``PCN_ERR_NOMEM``) with C's message. An empty batch (N = 0, no rows) gives an empty result.

The compiled module ``parcnetv2.cext._kernels`` is built by ``pip install`` (cffi, API mode);
nothing is compiled at import time, and importing changes no process-wide state. The GIL is
released during every C call, and calls from several Python threads at once are safe (the library
has no global mutable state).

Every function takes ``threads`` (None: the OpenMP default; else 1..``MAX_THREADS``; results are
bit-identical for any thread count), ``isa`` (None/"auto", "scalar", "avx2", "avx512", "neon"; an
ISA the CPU lacks is refused by C) and, for NCHW data, ``nchw_kernel`` ("auto"; "plane": kernels
vectorized along W; "slab": planes gathered into channel vectors, the NHWC kernels) - a speed
knob, the results agree to within the rounding bound.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from parcnetv2.errors import InputError

try:
    from parcnetv2.cext._kernels import ffi as _ffi
    from parcnetv2.cext._kernels import lib as _lib
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "parcnetv2.cext._kernels is missing: the C kernels are compiled when the package is "
        "installed (pip install .); reinstall with a working C compiler"
    ) from exc

__all__ = [
    "IMAGE_MAX_PIXELS",
    "IMAGE_MAX_RESIZED_PIXELS",
    "MAX_KERNEL",
    "MAX_THREADS",
    "PackedMatrix",
    "available_isas",
    "best_isa",
    "bias_gelu",
    "build_info",
    "check_threads",
    "choose_path",
    "dwconv2d",
    "erf",
    "gate",
    "gelu_gate",
    "has_openmp",
    "head",
    "im2col",
    "layer_norm",
    "layer_norm_general",
    "oversized_conv",
    "parc_spatial",
    "reparameterize",
    "residual_norm",
    "version",
]

# The limits are the C headers' (their one home): parcnetv2.h, pcn_image.h.
MAX_KERNEL = int(_lib.PCN_MAX_KERNEL)
MAX_THREADS = int(_lib.PCN_MAX_THREADS)
IMAGE_MAX_PIXELS = int(_lib.PCN_IMAGE_MAX_PIXELS)
IMAGE_MAX_RESIZED_PIXELS = int(_lib.PCN_IMAGE_MAX_RESIZED_PIXELS)

_LAYOUTS = {"NCHW": _lib.PCN_NCHW, "NHWC": _lib.PCN_NHWC}
# The ISA list is the C enum's (PCN_ISA_COUNT values named by pcn_isa_name): one list, in C.
_ISAS = {None: _lib.PCN_ISA_AUTO} | {_ffi.string(_lib.pcn_isa_name(v)).decode(): v for v in range(_lib.PCN_ISA_COUNT)}
_NCHW_KERNELS = {"auto": 0, "plane": 1, "slab": 2}
_PATHS = {"auto": _lib.PCN_PATH_AUTO, "separable": _lib.PCN_PATH_SEPARABLE, "dense": _lib.PCN_PATH_DENSE}
_SIZE_MAX = 2 ** (8 * _ffi.sizeof("size_t")) - 1


def version() -> str:
    """Version of the C library ("major.minor.patch")."""
    return _ffi.string(_lib.pcn_version()).decode()


def build_info() -> str:
    """ISAs compiled in and whether OpenMP is used."""
    return _ffi.string(_lib.pcn_build_info()).decode()


def has_openmp() -> bool:
    """True when the C library was built with OpenMP (threads > 1 take effect)."""
    return bool(_lib.pcn_has_openmp())


def available_isas() -> list[str]:
    """ISAs this build supports on this CPU, e.g. ["scalar", "avx2"]."""
    return [name for name, v in _ISAS.items() if name not in (None, "auto") and _lib.pcn_isa_available(v)]


def best_isa() -> str:
    """The ISA that "auto" selects on this CPU."""
    return _ffi.string(_lib.pcn_isa_name(_lib.pcn_isa_best())).decode()


# ---------------------------------------------------------------------------- argument conversion


def check_threads(threads: Any) -> int | None:
    """A thread count of the Python API: None (the OpenMP default) or an int in 1..MAX_THREADS
    (``PCN_MAX_THREADS``, the C library's limit and the command line's); InputError otherwise
    (bools, floats, NaN, strings, and numbers no C int holds)."""
    if threads is None:
        return None
    if isinstance(threads, (bool, np.bool_)) or not isinstance(threads, (int, np.integer)):
        raise InputError(f"threads must be None or an int in 1..{MAX_THREADS}, got {threads!r}")
    if not 1 <= threads <= MAX_THREADS:
        raise InputError(f"threads must be None or an int in 1..{MAX_THREADS}, got {int(threads)}")
    return int(threads)


def _c_threads(threads: Any) -> int:
    checked = check_threads(threads)
    return 0 if checked is None else checked


def _size(value: Any, name: str, op: str) -> int:
    """A size_t: a non-negative integer (not a bool) that fits; C checks the value's range."""
    try:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError
        v = operator.index(value)
    except TypeError:
        raise InputError(f"{op}: {name} must be a non-negative int, got {value!r}") from None
    if not 0 <= v <= _SIZE_MAX:
        raise InputError(f"{op}: {name} = {v} is not a size (0..{_SIZE_MAX})")
    return v


def _pair(value: Any, name: str, op: str) -> tuple[int, int]:
    """An int or a pair of ints (height, width), each a size_t."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray):
        value = (value, value)
    if len(value) != 2:
        raise InputError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    return _size(value[0], name, op), _size(value[1], name, op)


def _as_f32(a: Any, name: str) -> np.ndarray:
    """A C-contiguous float32 array (a 0-d array stays 0-d) from any floating-point array."""
    arr = np.asarray(a)
    if arr.dtype.kind != "f":
        raise InputError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
    return np.asarray(arr, dtype=np.float32, order="C")


def _expect(a: np.ndarray, shape: tuple[int | str, ...], name: str, op: str) -> np.ndarray:
    """``a`` must have ``shape`` (a str entry names a size that may be anything): the elements C
    will read, which C cannot check (it sees pointers only)."""
    if a.ndim != len(shape) or any(not isinstance(s, str) and d != s for d, s in zip(a.shape, shape)):
        want = "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"
        raise InputError(f"{op}: {name} must be {want}, got shape {a.shape}")
    return a


def _layout(layout: Any) -> int:
    if not isinstance(layout, str) or layout not in _LAYOUTS:
        raise InputError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
    return _LAYOUTS[layout]


def _choice(value: Any, table: dict, name: str) -> int:
    if not isinstance(value, (str, type(None))) or value not in table:
        raise InputError(f"{name} must be one of {sorted(k for k in table if k)}, got {value!r}")
    return table[value]


def _isa_value(isa: Any) -> int:
    """The pcn_isa value of an ISA name (None/"auto": the best this CPU has); C refuses one the CPU lacks."""
    return _choice(isa, _ISAS, "isa")


def _options(threads: Any, isa: Any, path: Any = "auto", nchw_kernel: Any = "auto") -> Any:
    opt = _ffi.new("pcn_options *", _lib.pcn_options_default())
    opt.threads = _c_threads(threads)
    opt.isa = _isa_value(isa)
    opt.path = _choice(path, _PATHS, "path")
    opt.nchw_kernel = _choice(nchw_kernel, _NCHW_KERNELS, "nchw_kernel")
    return opt


def _raise_status(status: int, err: Any, op: str) -> None:
    """InputError (MemoryError for PCN_ERR_NOMEM) with C's message, unless ``status`` is PCN_OK."""
    if status != _lib.PCN_OK:
        msg = _ffi.string(err.message).decode(errors="replace")
        if status == _lib.PCN_ERR_NOMEM:
            raise MemoryError(f"{op}: {msg}")
        raise InputError(f"{op}: {msg}")


def _call(op: str, fn: Any, *args: Any) -> None:
    """``fn(*args, err)`` with a fresh pcn_error, raising on a non-OK status."""
    err = _ffi.new("pcn_error *")
    _raise_status(fn(*args, err), err, op)


def _ptr(a: np.ndarray) -> Any:
    return _ffi.cast("float *", _ffi.from_buffer(a))


def _ptr_or_null(a: np.ndarray | None) -> Any:
    return _ptr(a) if a is not None else _ffi.NULL


def _map(x: Any, layout: str, op: str) -> tuple[np.ndarray, int, tuple[int, int, int, int]]:
    """x as float32, its layout value and its (N, C, H, W) whatever the layout."""
    lay = _layout(layout)
    x = _as_f32(x, "x")
    if x.ndim != 4:
        raise InputError(f"{op}: x must have rank 4 ({layout}), got shape {x.shape}")
    n, c, h, w = x.shape if layout == "NCHW" else (x.shape[0], x.shape[3], x.shape[1], x.shape[2])
    return x, lay, (n, c, h, w)


def _queried(op: str, query: Any, shape: tuple[int, int, int, int], *args: Any) -> tuple[int, int, int, int]:
    """The output (N, C, OH, OW) C's shape query gives for ``shape`` (N = 0 asks for one image,
    so an empty batch gets the same checks and an empty result)."""
    n = shape[0]
    out = _ffi.new("pcn_shape4 *")
    _call(op, query, (max(n, 1),) + shape[1:], *args, out)
    return n, int(out.c), int(out.h), int(out.w)


def _out_map(shape: tuple[int, int, int, int], layout: str) -> np.ndarray:
    n, c, h, w = shape
    return np.empty((n, c, h, w) if layout == "NCHW" else (n, h, w, c), dtype=np.float32)


def _separable_kernels(k_h: Any, k_w: Any, c: int, op: str) -> tuple[np.ndarray, np.ndarray, int, int]:
    k_h = _expect(_as_f32(k_h, "k_h"), (c, 1, "KV", 1), "k_h", op)
    k_w = _expect(_as_f32(k_w, "k_w"), (c, 1, 1, "KW"), "k_w", op)
    return k_h, k_w, k_h.shape[2], k_w.shape[3]


# ---------------------------------------------------------------------------- operations


def dwconv2d(
    x: Any,
    weight: Any,
    bias: Any = None,
    padding: int | Sequence[int] | None = None,
    layout: str = "NCHW",
    threads: int | None = None,
    isa: str | None = None,
    nchw_kernel: str = "auto",
) -> np.ndarray:
    """Dense depthwise convolution, stride 1, zero padding (spec clauses 6 and 7; clause 12).

    x: (N, C, H, W) for layout "NCHW" or (N, H, W, C) for "NHWC"; weight: (C, 1, KH, KW) with
    1 <= KH, KW <= 255; bias: (C,) or None; padding: int or (PH, PW), default (KH // 2, KW // 2).
    Returns float32 (N, C, OH, OW) or (N, OH, OW, C), OH = H + 2*PH - KH + 1, OW likewise.
    Implicit GEMM (``pcn_depthwise``): taps that fall entirely into the zero padding are skipped.
    """
    op = "dwconv2d"
    x, lay, shape = _map(x, layout, op)
    c = shape[1]
    weight = _expect(_as_f32(weight, "weight"), (c, 1, "KH", "KW"), f"weight (x: {layout} {x.shape})", op)
    kh, kw = weight.shape[2], weight.shape[3]
    ph, pw = (kh // 2, kw // 2) if padding is None else _pair(padding, "padding", op)
    if bias is not None:
        bias = _expect(_as_f32(bias, "bias"), (c,), "bias", op)
    opt = _options(threads, isa, nchw_kernel=nchw_kernel)
    window = (kh, kw, 1, 1, ph, pw)
    y = _out_map(_queried(op, _lib.pcn_depthwise_shape, shape, window), layout)
    if y.size:
        _call(op, _lib.pcn_depthwise, _ptr(x), _ptr(weight), _ptr_or_null(bias), _ptr(y), shape, window, lay, opt)
    return y


def oversized_conv(
    x: Any,
    k_h: Any,
    k_w: Any,
    layout: str = "NCHW",
    threads: int | None = None,
    isa: str | None = None,
    nchw_kernel: str = "auto",
) -> np.ndarray:
    """Oversized separable depthwise conv OC (spec clause 5; clause 12).

    x: (N, C, H, W) or (N, H, W, C); k_h: (C, 1, KV, 1) applied vertically with padding KV // 2,
    then k_w: (C, 1, 1, KW) horizontally with padding KW // 2; no bias. Returns float32 with
    H + 2*(KV//2) - KV + 1 rows (H for odd KV) and likewise columns, in the input's layout.
    """
    op = "oversized_conv"
    x, lay, shape = _map(x, layout, op)
    k_h, k_w, kv, kw = _separable_kernels(k_h, k_w, shape[1], op)
    opt = _options(threads, isa, nchw_kernel=nchw_kernel)
    y = _out_map(_queried(op, _lib.pcn_oversized_shape, shape, kv, kw), layout)
    if y.size:
        _call(op, _lib.pcn_oversized, _ptr(x), _ptr(k_h), _ptr(k_w), _ptr(y), shape, kv, kw, lay, opt)
    return y


def parc_spatial(
    x: Any,
    k_h: Any,
    k_w: Any,
    k7: Any,
    layout: str = "NCHW",
    threads: int | None = None,
    path: str = "auto",
    isa: str | None = None,
    nchw_kernel: str = "auto",
) -> np.ndarray:
    """The fused ParC spatial op OC(x) + DW7(x) (spec clauses 5, 6, 7; clause 12).

    x: (N, C, H, W) or (N, H, W, C); k_h: (C, 1, KV, 1); k_w: (C, 1, 1, KW), KV and KW odd;
    k7: (C, 1, 7, 7). Returns float32 in x's shape. path: "separable" (vertical pass, then the
    horizontal pass with DW7 fused into it), "dense" (reparameterized kernel, clause 7, run by the
    implicit-GEMM dense conv) or "auto" (the cost model, see choose_path).
    """
    op = "parc_spatial"
    x, lay, shape = _map(x, layout, op)
    c = shape[1]
    k_h, k_w, kv, kw = _separable_kernels(k_h, k_w, c, op)
    k7 = _expect(_as_f32(k7, "k7"), (c, 1, 7, 7), "k7", op)
    opt = _options(threads, isa, path, nchw_kernel)
    y = _out_map(shape, layout)
    if y.size:
        _call(op, _lib.pcn_parc, _ptr(x), _ptr(k_h), _ptr(k_w), _ptr(k7), _ptr(y), shape, kv, kw, lay, opt)
    else:  # an empty batch: C's checks of the sizes all the same
        err = _ffi.new("pcn_error *")
        if not _lib.pcn_parc_workspace((max(shape[0], 1),) + shape[1:], kv, kw, lay, opt, err):
            _raise_status(int(err.code), err, op)
    return y


def reparameterize(k_h: Any, k_w: Any, k7: Any) -> np.ndarray:
    """Dense kernel of OC + DW7 (spec clause 7): k_h (C,1,KV,1), k_w (C,1,1,KW), k7 (C,1,7,7),
    KV and KW odd -> float32 (C, 1, max(KV,7), max(KW,7)): outer(k_h, k_w) centred plus k7 centred."""
    op = "reparameterize"
    k_h = _expect(_as_f32(k_h, "k_h"), ("C", 1, "KV", 1), "k_h", op)
    c = k_h.shape[0]
    k_h, k_w, kv, kw = _separable_kernels(k_h, k_w, c, op)
    k7 = _expect(_as_f32(k7, "k7"), (c, 1, 7, 7), "k7", op)
    shape = _ffi.new("pcn_shape4 *")
    _call(op, _lib.pcn_reparameterize_shape, c, kv, kw, shape)
    out = np.empty((c, 1, int(shape.h), int(shape.w)), dtype=np.float32)
    _call(op, _lib.pcn_reparameterize, _ptr(k_h), _ptr(k_w), _ptr(k7), _ptr(out), c, kv, kw)
    return out


def choose_path(n: int, c: int, h: int, w: int, kv: int, kw: int | None = None, layout: str = "NCHW") -> dict:
    """The cost model of parc_spatial: {"path": "separable" | "dense", "cost_separable": ...,
    "cost_dense": ...} (costs in multiply-add equivalents; spec clause 12.5 gives the formula).
    ``layout`` is accepted for symmetry; the model does not depend on it."""
    op = "choose_path"
    _layout(layout)
    sizes = [_size(v, name, op) for v, name in ((n, "n"), (c, "c"), (h, "h"), (w, "w"), (kv, "kv"))]
    kw_size = sizes[4] if kw is None else _size(kw, "kw", op)
    cs, cd = _ffi.new("double *"), _ffi.new("double *")
    p = _lib.pcn_parc_path(tuple(sizes[:4]), sizes[4], kw_size, cs, cd)
    if p == _lib.PCN_PATH_AUTO:  # pcn_parc_path has no message: its sizes are those of pcn_parc
        raise InputError(f"{op}: pcn_parc refuses N={n} C={c} H={h} W={w} KV={kv} KW={kw_size}")
    return {
        "path": "separable" if p == _lib.PCN_PATH_SEPARABLE else "dense",
        "cost_separable": float(cs[0]),
        "cost_dense": float(cd[0]),
    }


# ---------------------------------------------------------------------------- fused kernels (clause 15)
#
# Row operations act on the last axis: x (..., C) is the matrix of prod(...) rows and C columns
# (an NHWC map (N, H, W, C) is N*H*W pixels by C channels); a 0-d x is one row of one element.
# They return new float32 arrays of x's shape (gelu_gate: the last axis halved).


def _rows(x: Any, name: str) -> tuple[np.ndarray, int, int]:
    x = _as_f32(x, name)
    c = x.shape[-1] if x.ndim else 1
    return x, int(np.prod(x.shape[:-1], dtype=np.int64)) if x.ndim else 1, c


def _vector(v: Any, n: int, name: str, op: str) -> np.ndarray | None:
    return None if v is None else _expect(_as_f32(v, name), (n,), name, op)


def erf(x: Any, threads: int | None = None, isa: str | None = None) -> np.ndarray:
    """erf elementwise (clause 15.3), any shape, float32 result: the engine's vectorized erf."""
    x = _as_f32(x, "x")
    y = np.empty_like(x)
    opt = _options(threads, isa)
    if x.size:
        _call("erf", _lib.pcn_erf, _ptr(x), _ptr(y), x.size, opt)
    return y


def bias_gelu(x: Any, bias: Any = None, threads: int | None = None, isa: str | None = None) -> np.ndarray:
    """GELU(x + bias) over (..., C) with bias (C,) or None (clauses 8.1, 15): exact erf form."""
    op = "bias_gelu"
    x, rows, c = _rows(x, "x")
    bias = _vector(bias, c, "bias", op)
    y = np.empty_like(x)
    opt = _options(threads, isa)
    if rows:
        _call(op, _lib.pcn_bias_gelu, _ptr(x), c, _ptr_or_null(bias), _ptr(y), c, rows, c, opt)
    return y


def gate(a: Any, s: Any, bias: Any = None, threads: int | None = None, isa: str | None = None) -> np.ndarray:
    """Token-mixer gate (a + bias) * s over (..., C), a and s of one shape (clauses 8.1, 15)."""
    op = "gate"
    a, rows, c = _rows(a, "a")
    s = _expect(_as_f32(s, "s"), a.shape, "s", op)
    bias = _vector(bias, c, "bias", op)
    y = np.empty_like(a)
    opt = _options(threads, isa)
    if rows:
        _call(op, _lib.pcn_gate, _ptr(a), c, _ptr_or_null(bias), _ptr(s), c, _ptr(y), c, rows, c, opt)
    return y


def gelu_gate(h: Any, bias: Any = None, threads: int | None = None, isa: str | None = None) -> np.ndarray:
    """Channel-BGU gate (clauses 8.2, 15): h (..., 2C) -> (h[..., :C] + b[:C]) * GELU(h[..., C:] + b[C:]),
    bias (2C,) or None; returns (..., C)."""
    op = "gelu_gate"
    h, rows, c2 = _rows(h, "h")
    if c2 % 2:  # the halves are the binding's reading of h's last axis
        raise InputError(f"{op}: the last axis of h must be even (two halves), got shape {h.shape}")
    bias = _vector(bias, c2, "bias", op)
    y = np.empty(h.shape[:-1] + (c2 // 2,), np.float32)
    opt = _options(threads, isa)
    if rows:
        _call(op, _lib.pcn_gelu_gate, _ptr(h), c2, _ptr_or_null(bias), _ptr(y), c2 // 2, rows, c2 // 2, opt)
    return y


def layer_norm_general(
    x: Any, weight: Any, eps: float = 1e-6, threads: int | None = None, isa: str | None = None
) -> np.ndarray:
    """Official LayerNormGeneral over the last axis (clause 4.1): c = x - mean, c / max(||c||, eps) * w."""
    op = "layer_norm_general"
    x, rows, c = _rows(x, "x")
    w = _expect(_as_f32(weight, "weight"), (c,), "weight", op)
    y = np.empty_like(x)
    opt = _options(threads, isa)
    if rows:
        _call(op, _lib.pcn_layer_norm_general, _ptr(x), c, _ptr(w), _ptr(y), c, rows, c, float(eps), opt)
    return y


def residual_norm(
    x: Any,
    branch: Any,
    scale: Any = None,
    weight: Any = None,
    eps: float = 1e-6,
    threads: int | None = None,
    isa: str | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Residual step and the next norm (clauses 8.3, 8.4, 4.1): returns (x * scale + branch,
    LayerNormGeneral(that) * weight or None without a weight). x, branch (..., C); scale,
    weight (C,) or None. x is not modified (the C call updates a copy in place)."""
    op = "residual_norm"
    x, rows, c = _rows(x, "x")
    x = x.copy()
    branch = _expect(_as_f32(branch, "branch"), x.shape, "branch", op)
    scale, w = _vector(scale, c, "scale", op), _vector(weight, c, "weight", op)
    y = np.empty_like(x) if w is not None else None
    opt = _options(threads, isa)
    if rows:
        args = (_ptr(x), c, _ptr_or_null(scale), _ptr(branch), c, _ptr_or_null(w), _ptr_or_null(y), c, rows, c)
        _call(op, _lib.pcn_residual_norm, *args, float(eps), opt)
    return x, y


def layer_norm(
    x: Any, weight: Any, bias: Any, eps: float = 1e-6, threads: int | None = None, isa: str | None = None
) -> np.ndarray:
    """Standard LayerNorm over the last axis (clause 4.2): (x - mean) / sqrt(var + eps) * w + b."""
    op = "layer_norm"
    x, rows, c = _rows(x, "x")
    w = _expect(_as_f32(weight, "weight"), (c,), "weight", op)
    b = _expect(_as_f32(bias, "bias"), (c,), "bias", op)
    y = np.empty_like(x)
    opt = _options(threads, isa)
    if rows:
        _call(op, _lib.pcn_layer_norm, _ptr(x), c, _ptr(w), _ptr(b), _ptr(y), c, rows, c, float(eps), opt)
    return y


def head(
    x: Any,
    norm_weight: Any,
    norm_bias: Any,
    fc_weight: Any,
    fc_bias: Any = None,
    eps: float = 1e-6,
    threads: int | None = None,
    isa: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The head (clause 8.5): x NHWC (N, H, W, C) -> (features (N, C), logits (N, K)): mean over
    H and W, LayerNorm(norm_weight, norm_bias, eps), Linear with fc_weight (K, C) and fc_bias (K,)."""
    op = "head"
    x = _as_f32(x, "x")
    if x.ndim != 4:
        raise InputError(f"{op}: x must be NHWC (N, H, W, C), got shape {x.shape}")
    n, h, w, c = x.shape
    nw = _expect(_as_f32(norm_weight, "norm_weight"), (c,), "norm_weight", op)
    nb = _expect(_as_f32(norm_bias, "norm_bias"), (c,), "norm_bias", op)
    fc = _expect(_as_f32(fc_weight, "fc_weight"), ("K", c), "fc_weight", op)
    k = fc.shape[0]
    fb = _vector(fc_bias, k, "fc_bias", op)
    fc_wt = np.ascontiguousarray(fc.T)
    features, logits = np.empty((n, c), np.float32), np.empty((n, k), np.float32)
    opt = _options(threads, isa)
    if n:
        args = (_ptr(x), n, h * w, c, _ptr(nw), _ptr(nb), float(eps), _ptr(fc_wt), _ptr_or_null(fb), k)
        _call(op, _lib.pcn_head, *args, _ptr(features), _ptr(logits), opt)
    return features, logits


def im2col(
    x: Any,
    kernel: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    layout: str = "NCHW",
    bias_column: bool = False,
    threads: int | None = None,
) -> np.ndarray:
    """Patches of a strided zero-padded convolution (clauses 3, 15; ``pcn_patches``): x (N, C, H, W)
    or (N, H, W, C) -> (N*OH*OW, KH*KW*C [+ 1]), columns ordered (c, ky, kx) for NCHW (PyTorch's
    weight order) and (ky, kx, c) for NHWC; with bias_column the last column is 1.0. The size of
    the result comes from C's checks (``pcn_patches_shape``) before anything is allocated."""
    op = "im2col"
    x, lay, shape = _map(x, layout, op)
    window = _pair(kernel, "kernel", op) + _pair(stride, "stride", op) + _pair(padding, "padding", op)
    if not isinstance(bias_column, (bool, np.bool_)):
        raise InputError(f"{op}: bias_column must be a bool, got {bias_column!r}")
    bias = int(bias_column)
    opt = _options(threads, None)
    rows, cols = _ffi.new("size_t *"), _ffi.new("size_t *")
    _call(op, _lib.pcn_patches_shape, (max(shape[0], 1),) + shape[1:], window, bias, rows, cols)
    out = np.empty((int(rows[0]) if shape[0] else 0, int(cols[0])), np.float32)
    if out.size:
        _call(op, _lib.pcn_patches, _ptr(x), _ptr(out), shape, window, lay, bias, opt)
    return out


# ---------------------------------------------------------------------------- packed GEMM (clause 16.2)


class PackedMatrix:
    """A right-hand GEMM operand B (K, N) packed once for one ISA's kernels (``pcn_gemm_pack``):
    the 1x1 convolutions and Linear layers of the model. ``weight`` is a PyTorch Linear weight
    (N, K) (or a 1x1-conv weight (N, K, 1, 1)) when ``transposed`` (the default), else B (K, N);
    ``bias`` (N,) or None. ``matmul(a)`` = a @ B (+ bias) for a (..., K), float32 (..., N):
    every element one fused multiply-add chain over k in ascending order, then + bias as a
    separate rounding, whatever the thread count or the number of rows (clause 16.2)."""

    def __init__(self, weight: Any, bias: Any = None, transposed: bool = True, isa: str | None = None):
        op = "PackedMatrix"
        w = _as_f32(weight, "weight")
        if transposed and w.ndim == 4 and w.shape[2:] == (1, 1):
            w = w.reshape(w.shape[:2])
        _expect(w, ("N", "K") if transposed else ("K", "N"), "weight", op)
        n, k = w.shape if transposed else w.shape[::-1]
        b = _vector(bias, n, "bias", op)
        out = _ffi.new("pcn_packed_matrix **")
        args = (out, _ptr(w), w.shape[1], int(bool(transposed)), _ptr_or_null(b), k, n, _isa_value(isa))
        _call(op, _lib.pcn_gemm_pack, *args)
        self._ptr = _ffi.gc(out[0], _lib.pcn_gemm_free)
        self.k, self.n = int(_lib.pcn_gemm_packed_k(self._ptr)), int(_lib.pcn_gemm_packed_n(self._ptr))

    def matmul(self, a: Any, threads: int | None = None) -> np.ndarray:
        """a (..., K) -> (..., N) float32."""
        op = "PackedMatrix.matmul"
        a = _as_f32(a, "a")
        if a.ndim == 0 or a.shape[-1] != self.k:
            raise InputError(f"{op}: a must be (..., {self.k}), got shape {a.shape}")
        rows = int(np.prod(a.shape[:-1], dtype=np.int64))
        c = np.empty(a.shape[:-1] + (self.n,), np.float32)
        opt = _options(threads, None)
        if rows:
            _call(op, _lib.pcn_gemm_packed, self._ptr, _ptr(a), self.k, _ptr(c), self.n, rows, opt)
        return c
