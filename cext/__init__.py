"""parcnetv2.cext: the C kernels from Python: the depthwise convolutions (spec clause 12) and the
fused kernels of the inference engine (clause 15: erf, GELU, gates, norms, residual, head, im2col).

NumPy in, NumPy out. Computation is float32: inputs of another floating dtype (float16, float64)
are converted to float32 first and the result is float32. Any memory layout of the input arrays
is accepted (non-contiguous arrays are copied to C order). Weights use PyTorch's shapes.
Shape legend: N batch, C channels, H height, W width, K kernel length.

The compiled module ``parcnetv2.cext._kernels`` is built by ``pip install`` (cffi, API mode);
nothing is compiled at import time. The GIL is released during every C call, and calls from
several Python threads at once are safe (the library has no global mutable state).

Every function takes ``threads`` (None: the OpenMP default; results are bit-identical for any
thread count), ``isa`` (None/"auto", "scalar", "avx2", "avx512", "neon"; forcing an ISA the
CPU lacks raises ValueError) and, for NCHW data, ``nchw_kernel`` ("auto"; "plane": kernels
vectorized along W; "slab": planes gathered into channel vectors, the NHWC kernels) - a speed
knob, the results agree to within the rounding bound.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from parcnetv2.errors import InputError

# OpenMP threads sleep between parallel regions instead of spinning (unless the user chose
# otherwise): read by libgomp when the extension below loads it. The engine (clause 15) runs
# hundreds of short regions per inference; threads spinning between them starve the thread that
# runs Python on a machine whose CPUs are shared (measured on a 2-vCPU VM: tiny 2 threads 1.7 s
# spinning, 129 ms passive, 126 ms 1 thread), while a sleeping thread costs only its wake-up.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    from parcnetv2.cext._kernels import ffi as _ffi
    from parcnetv2.cext._kernels import lib as _lib
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "parcnetv2.cext._kernels is missing: the C kernels are compiled when the package is "
        "installed (pip install .); reinstall with a working C compiler"
    ) from exc

__all__ = [
    "available_isas",
    "best_isa",
    "bias_gelu",
    "build_info",
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

_LAYOUTS = {"NCHW": _lib.PCN_NCHW, "NHWC": _lib.PCN_NHWC}
# The ISA list is the C enum's (PCN_ISA_COUNT values named by pcn_isa_name): one list, in C.
_ISAS = {None: _lib.PCN_ISA_AUTO} | {_ffi.string(_lib.pcn_isa_name(v)).decode(): v for v in range(_lib.PCN_ISA_COUNT)}
_NCHW_KERNELS = {"auto": 0, "plane": 1, "slab": 2}
_PATHS = {"auto": _lib.PCN_PATH_AUTO, "separable": _lib.PCN_PATH_SEPARABLE, "dense": _lib.PCN_PATH_DENSE}
MAX_KERNEL = int(_lib.PCN_MAX_KERNEL)


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


# ---------------------------------------------------------------------------- argument handling


def _as_f32(a, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _layout(layout: str) -> int:
    if layout not in _LAYOUTS:
        raise InputError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
    return _LAYOUTS[layout]


def _input(x, layout: str, op: str) -> tuple[np.ndarray, int, int, int, int]:
    x = _as_f32(x, "x")
    if x.ndim != 4:
        raise InputError(f"{op}: x must have rank 4 ({layout}), got shape {x.shape}")
    if layout == "NCHW":
        n, c, h, w = x.shape
    else:
        n, h, w, c = x.shape
    if c == 0 or h == 0 or w == 0:
        raise InputError(f"{op}: x {layout} shape {x.shape} has an empty channel or spatial axis")
    return x, n, c, h, w


_INT_MAX = 2**31 - 1


def _check_threads(threads) -> int:
    """An int thread count in 1..INT_MAX (C's int), else InputError."""
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= _INT_MAX:
        raise InputError(f"threads must be None or an int in 1..{_INT_MAX}, got {threads!r}")
    return int(threads)


def _isa_value(isa) -> int:
    """The pcn_isa value of an ISA name (None/"auto": the best this CPU has), else InputError."""
    if not isinstance(isa, (str, type(None))) or isa not in _ISAS:
        raise InputError(f"isa must be one of {sorted(k for k in _ISAS if k)} or None, got {isa!r}")
    if _ISAS[isa] != _lib.PCN_ISA_AUTO and not _lib.pcn_isa_available(_ISAS[isa]):
        raise InputError(f"isa {isa!r} is not available on this CPU or in this build (have {available_isas()})")
    return _ISAS[isa]


def _options(threads, isa, path: str = "auto", nchw_kernel: str = "auto"):
    opt = _ffi.new("pcn_options *")
    opt.threads = 0 if threads is None else _check_threads(threads)
    opt.isa = _isa_value(isa)
    if path not in _PATHS:
        raise InputError(f"path must be one of {list(_PATHS)}, got {path!r}")
    opt.path = _PATHS[path]
    if nchw_kernel not in _NCHW_KERNELS:
        raise InputError(f"nchw_kernel must be one of {list(_NCHW_KERNELS)}, got {nchw_kernel!r}")
    opt.nchw_kernel = _NCHW_KERNELS[nchw_kernel]
    return opt


def _check(status: int, err, op: str) -> None:
    if status != _lib.PCN_OK:
        msg = _ffi.string(err.message).decode(errors="replace")
        if status == _lib.PCN_ERR_NOMEM:
            raise MemoryError(f"{op}: {msg}")
        raise InputError(f"{op}: {msg}")


def _ptr(a: np.ndarray):
    return _ffi.cast("float *", _ffi.from_buffer(a))


def _out(shape_nchw: tuple[int, int, int, int], layout: str) -> np.ndarray:
    n, c, h, w = shape_nchw
    return np.empty((n, c, h, w) if layout == "NCHW" else (n, h, w, c), dtype=np.float32)


def _odd_kernel(k_h, k_w, c: int, op: str, need_odd: bool) -> tuple[np.ndarray, np.ndarray, int, int]:
    k_h = _as_f32(k_h, "k_h")
    k_w = _as_f32(k_w, "k_w")
    if k_h.ndim != 4 or k_h.shape[0] != c or k_h.shape[1] != 1 or k_h.shape[3] != 1:
        raise InputError(f"{op}: k_h must be ({c}, 1, K, 1) for {c} channels, got shape {k_h.shape}")
    if k_w.ndim != 4 or k_w.shape[0] != c or k_w.shape[1] != 1 or k_w.shape[2] != 1:
        raise InputError(f"{op}: k_w must be ({c}, 1, 1, K) for {c} channels, got shape {k_w.shape}")
    kv, kw = k_h.shape[2], k_w.shape[3]
    for name, k in (("k_h", kv), ("k_w", kw)):
        if not 1 <= k <= MAX_KERNEL:
            raise InputError(
                f"{op}: {name} length {k} must be in 1..{MAX_KERNEL} (shape "
                f"{k_h.shape if name == 'k_h' else k_w.shape})"
            )
        if need_odd and k % 2 == 0:
            raise InputError(f"{op}: {name} length {k} must be odd (shapes k_h {k_h.shape}, k_w {k_w.shape})")
    return k_h, k_w, kv, kw


def _k7(k7, c: int, op: str) -> np.ndarray:
    k7 = _as_f32(k7, "k7")
    if k7.shape != (c, 1, 7, 7):
        raise InputError(f"{op}: k7 must be ({c}, 1, 7, 7), got shape {k7.shape}")
    return k7


# ---------------------------------------------------------------------------- operations


def dwconv2d(
    x,
    weight,
    bias=None,
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
    Float inputs of other dtypes are converted to float32. Implicit GEMM: taps that fall
    entirely into the zero padding are skipped.
    """
    op = "dwconv2d"
    lay = _layout(layout)
    x, n, c, h, w = _input(x, layout, op)
    weight = _as_f32(weight, "weight")
    if weight.ndim != 4 or weight.shape[0] != c or weight.shape[1] != 1:
        raise InputError(f"{op}: weight must be ({c}, 1, KH, KW) for x {layout} {x.shape}, got {weight.shape}")
    kh, kw = weight.shape[2], weight.shape[3]
    if not (1 <= kh <= MAX_KERNEL and 1 <= kw <= MAX_KERNEL):
        raise InputError(f"{op}: kernel {kh}x{kw} (weight {weight.shape}) must be within 1..{MAX_KERNEL}")
    if padding is None:
        ph, pw = kh // 2, kw // 2
    else:
        pair = (padding, padding) if np.isscalar(padding) else tuple(padding)
        if len(pair) != 2 or any(isinstance(p, bool) or int(p) != p or p < 0 for p in pair):
            raise InputError(f"{op}: padding must be a non-negative int or a pair of them, got {padding!r}")
        ph, pw = int(pair[0]), int(pair[1])
    if bias is not None:
        bias = _as_f32(bias, "bias")
        if bias.shape != (c,):
            raise InputError(f"{op}: bias must be ({c},), got shape {bias.shape}")
    oh, ow = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    if oh < 1 or ow < 1:
        raise InputError(f"{op}: kernel {kh}x{kw} does not fit input {h}x{w} with padding ({ph}, {pw}) (x {x.shape})")
    opt = _options(threads, isa, nchw_kernel=nchw_kernel)
    y = _out((n, c, oh, ow), layout)
    if n == 0:
        return y
    err = _ffi.new("pcn_error *")
    st = _lib.pcn_dwconv2d(
        _ptr(x),
        _ptr(weight),
        _ptr(bias) if bias is not None else _ffi.NULL,
        _ptr(y),
        n,
        c,
        h,
        w,
        kh,
        kw,
        ph,
        pw,
        lay,
        opt,
        err,
    )
    _check(st, err, op)
    return y


def oversized_conv(
    x, k_h, k_w, layout: str = "NCHW", threads: int | None = None, isa: str | None = None, nchw_kernel: str = "auto"
) -> np.ndarray:
    """Oversized separable depthwise conv OC (spec clause 5; clause 12).

    x: (N, C, H, W) or (N, H, W, C); k_h: (C, 1, KV, 1) applied vertically with padding KV // 2,
    then k_w: (C, 1, 1, KW) horizontally with padding KW // 2; no bias. Returns float32 with
    H + 2*(KV//2) - KV + 1 rows (H for odd KV) and likewise columns, in the input's layout.
    """
    op = "oversized_conv"
    lay = _layout(layout)
    x, n, c, h, w = _input(x, layout, op)
    k_h, k_w, kv, kw = _odd_kernel(k_h, k_w, c, op, need_odd=False)
    opt = _options(threads, isa, nchw_kernel=nchw_kernel)
    y = _out((n, c, h + 2 * (kv // 2) - kv + 1, w + 2 * (kw // 2) - kw + 1), layout)
    if n == 0:
        return y
    err = _ffi.new("pcn_error *")
    st = _lib.pcn_oversized_conv(_ptr(x), _ptr(k_h), _ptr(k_w), _ptr(y), n, c, h, w, kv, kw, lay, opt, err)
    _check(st, err, op)
    return y


def parc_spatial(
    x,
    k_h,
    k_w,
    k7,
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
    lay = _layout(layout)
    x, n, c, h, w = _input(x, layout, op)
    k_h, k_w, kv, kw = _odd_kernel(k_h, k_w, c, op, need_odd=True)
    k7 = _k7(k7, c, op)
    opt = _options(threads, isa, path, nchw_kernel)
    y = _out((n, c, h, w), layout)
    if n == 0:
        return y
    err = _ffi.new("pcn_error *")
    st = _lib.pcn_parc_spatial(_ptr(x), _ptr(k_h), _ptr(k_w), _ptr(k7), _ptr(y), n, c, h, w, kv, kw, lay, opt, err)
    _check(st, err, op)
    return y


def reparameterize(k_h, k_w, k7) -> np.ndarray:
    """Dense kernel of OC + DW7 (spec clause 7): k_h (C,1,KV,1), k_w (C,1,1,KW), k7 (C,1,7,7),
    KV and KW odd -> float32 (C, 1, max(KV,7), max(KW,7)): outer(k_h, k_w) centred plus k7 centred."""
    op = "reparameterize"
    k_h0 = np.asarray(k_h)
    if k_h0.ndim != 4:
        raise InputError(f"{op}: k_h must be (C, 1, K, 1), got shape {k_h0.shape}")
    c = k_h0.shape[0]
    if c == 0:
        raise InputError(f"{op}: k_h has no channels (shape {k_h0.shape})")
    k_h, k_w, kv, kw = _odd_kernel(k_h, k_w, c, op, need_odd=True)
    k7 = _k7(k7, c, op)
    out = np.empty((c, 1, max(kv, 7), max(kw, 7)), dtype=np.float32)
    err = _ffi.new("pcn_error *")
    st = _lib.pcn_reparameterize(_ptr(k_h), _ptr(k_w), _ptr(k7), _ptr(out), c, kv, kw, err)
    _check(st, err, op)
    return out


def choose_path(n: int, c: int, h: int, w: int, kv: int, kw: int | None = None, layout: str = "NCHW") -> dict:
    """The cost model of parc_spatial: {"path": "separable" | "dense", "cost_separable": ...,
    "cost_dense": ...} (costs in multiply-add equivalents; spec clause 12.5 gives the formula)."""
    kw = kv if kw is None else kw
    cs = _ffi.new("double *")
    cd = _ffi.new("double *")
    p = _lib.pcn_parc_choose_path(n, c, h, w, kv, kw, _layout(layout), cs, cd)
    if p == _lib.PCN_PATH_AUTO:
        raise InputError(f"choose_path: invalid sizes N={n} C={c} H={h} W={w} KV={kv} KW={kw}")
    return {
        "path": "separable" if p == _lib.PCN_PATH_SEPARABLE else "dense",
        "cost_separable": float(cs[0]),
        "cost_dense": float(cd[0]),
    }


# ---------------------------------------------------------------------------- fused kernels (clause 15)
#
# Row operations act on the last axis: x (..., C) is the matrix of prod(...) rows and C columns
# (an NHWC map (N, H, W, C) is N*H*W pixels by C channels). They return new float32 arrays.


def _rows(x, name: str, op: str) -> tuple[np.ndarray, int, int]:
    x = _as_f32(x, name)
    if x.ndim < 1 or x.shape[-1] == 0:
        raise InputError(f"{op}: {name} must be (..., C) with C >= 1, got shape {x.shape}")
    return x, int(np.prod(x.shape[:-1], dtype=np.int64)), x.shape[-1]


def _vector(v, n: int, name: str, op: str, optional: bool = False):
    if v is None:
        if optional:
            return None
        raise InputError(f"{op}: {name} is required")
    v = _as_f32(v, name)
    if v.shape != (n,):
        raise InputError(f"{op}: {name} must be ({n},), got shape {v.shape}")
    return v


def _ptr_or_null(a):
    return _ptr(a) if a is not None else _ffi.NULL


def _run(op: str, call, threads, isa) -> None:
    err = _ffi.new("pcn_error *")
    _check(call(_options(threads, isa), err), err, op)


def erf(x, threads: int | None = None, isa: str | None = None) -> np.ndarray:
    """erf elementwise (clause 15.3), any shape, float32 result: the engine's vectorized erf."""
    x = _as_f32(x, "x")
    y = np.empty_like(x)
    if x.size:
        _run("erf", lambda o, e: _lib.pcn_erf(_ptr(x), _ptr(y), x.size, o, e), threads, isa)
    return y


def bias_gelu(x, bias=None, threads: int | None = None, isa: str | None = None) -> np.ndarray:
    """GELU(x + bias) over (..., C) with bias (C,) or None (clauses 8.1, 15): exact erf form."""
    op = "bias_gelu"
    x, rows, c = _rows(x, "x", op)
    bias = _vector(bias, c, "bias", op, optional=True)
    y = np.empty_like(x)
    if rows:
        _run(
            op, lambda o, e: _lib.pcn_bias_gelu(_ptr(x), c, _ptr_or_null(bias), _ptr(y), c, rows, c, o, e), threads, isa
        )
    return y


def gate(a, s, bias=None, threads: int | None = None, isa: str | None = None) -> np.ndarray:
    """Token-mixer gate (a + bias) * s over (..., C), a and s of one shape (clauses 8.1, 15)."""
    op = "gate"
    a, rows, c = _rows(a, "a", op)
    s = _as_f32(s, "s")
    if s.shape != a.shape:
        raise InputError(f"{op}: s must have a's shape {a.shape}, got {s.shape}")
    bias = _vector(bias, c, "bias", op, optional=True)
    y = np.empty_like(a)
    if rows:
        _run(
            op,
            lambda o, e: _lib.pcn_gate(_ptr(a), c, _ptr_or_null(bias), _ptr(s), c, _ptr(y), c, rows, c, o, e),
            threads,
            isa,
        )
    return y


def gelu_gate(h, bias=None, threads: int | None = None, isa: str | None = None) -> np.ndarray:
    """Channel-BGU gate (clauses 8.2, 15): h (..., 2C) -> (h[..., :C] + b[:C]) * GELU(h[..., C:] + b[C:]),
    bias (2C,) or None; returns (..., C)."""
    op = "gelu_gate"
    h, rows, c2 = _rows(h, "h", op)
    if c2 % 2:
        raise InputError(f"{op}: the last axis of h must be even (two halves), got shape {h.shape}")
    bias = _vector(bias, c2, "bias", op, optional=True)
    y = np.empty(h.shape[:-1] + (c2 // 2,), np.float32)
    if rows:
        _run(
            op,
            lambda o, e: _lib.pcn_gelu_gate(_ptr(h), c2, _ptr_or_null(bias), _ptr(y), c2 // 2, rows, c2 // 2, o, e),
            threads,
            isa,
        )
    return y


def layer_norm_general(x, weight, eps: float = 1e-6, threads: int | None = None, isa: str | None = None) -> np.ndarray:
    """Official LayerNormGeneral over the last axis (clause 4.1): c = x - mean, c / max(||c||, eps) * w."""
    op = "layer_norm_general"
    x, rows, c = _rows(x, "x", op)
    weight = _vector(weight, c, "weight", op)
    y = np.empty_like(x)
    if rows:
        _run(
            op,
            lambda o, e: _lib.pcn_layer_norm_general(_ptr(x), c, _ptr(weight), _ptr(y), c, rows, c, eps, o, e),
            threads,
            isa,
        )
    return y


def residual_norm(
    x, branch, scale=None, weight=None, eps: float = 1e-6, threads: int | None = None, isa: str | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Residual step and the next norm (clauses 8.3, 8.4, 4.1): returns (x * scale + branch,
    LayerNormGeneral(that) * weight or None without a weight). x, branch (..., C); scale,
    weight (C,) or None. x is not modified (the C call updates a copy in place)."""
    op = "residual_norm"
    x, rows, c = _rows(x, "x", op)
    x = x.copy()
    branch = _as_f32(branch, "branch")
    if branch.shape != x.shape:
        raise InputError(f"{op}: branch must have x's shape {x.shape}, got {branch.shape}")
    scale = _vector(scale, c, "scale", op, optional=True)
    weight = _vector(weight, c, "weight", op, optional=True)
    y = np.empty_like(x) if weight is not None else None
    if rows:
        _run(
            op,
            lambda o, e: _lib.pcn_residual_norm(
                _ptr(x),
                c,
                _ptr_or_null(scale),
                _ptr(branch),
                c,
                _ptr_or_null(weight),
                _ptr_or_null(y),
                c,
                rows,
                c,
                eps,
                o,
                e,
            ),
            threads,
            isa,
        )
    return x, y


def layer_norm(x, weight, bias, eps: float = 1e-6, threads: int | None = None, isa: str | None = None) -> np.ndarray:
    """Standard LayerNorm over the last axis (clause 4.2): (x - mean) / sqrt(var + eps) * w + b."""
    op = "layer_norm"
    x, rows, c = _rows(x, "x", op)
    weight = _vector(weight, c, "weight", op)
    bias = _vector(bias, c, "bias", op)
    y = np.empty_like(x)
    if rows:
        _run(
            op,
            lambda o, e: _lib.pcn_layer_norm(_ptr(x), c, _ptr(weight), _ptr(bias), _ptr(y), c, rows, c, eps, o, e),
            threads,
            isa,
        )
    return y


def head(
    x,
    norm_weight,
    norm_bias,
    fc_weight,
    fc_bias=None,
    eps: float = 1e-6,
    threads: int | None = None,
    isa: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The head (clause 8.5): x NHWC (N, H, W, C) -> (features (N, C), logits (N, K)): mean over
    H and W, LayerNorm(norm_weight, norm_bias, eps), Linear with fc_weight (K, C) and fc_bias (K,)."""
    op = "head"
    x = _as_f32(x, "x")
    if x.ndim != 4 or min(x.shape[1:]) == 0:
        raise InputError(f"{op}: x must be NHWC (N, H, W, C) with H, W, C >= 1, got shape {x.shape}")
    n, h, w, c = x.shape
    norm_weight = _vector(norm_weight, c, "norm_weight", op)
    norm_bias = _vector(norm_bias, c, "norm_bias", op)
    fc_weight = _as_f32(fc_weight, "fc_weight")
    if fc_weight.ndim != 2 or fc_weight.shape[1] != c or fc_weight.shape[0] == 0:
        raise InputError(f"{op}: fc_weight must be (K, {c}), got shape {fc_weight.shape}")
    k = fc_weight.shape[0]
    fc_bias = _vector(fc_bias, k, "fc_bias", op, optional=True)
    fc_wt = np.ascontiguousarray(fc_weight.T)
    features, logits = np.empty((n, c), np.float32), np.empty((n, k), np.float32)
    if n:
        _run(
            op,
            lambda o, e: _lib.pcn_head(
                _ptr(x),
                n,
                h * w,
                c,
                _ptr(norm_weight),
                _ptr(norm_bias),
                eps,
                _ptr(fc_wt),
                _ptr_or_null(fc_bias),
                k,
                _ptr(features),
                _ptr(logits),
                o,
                e,
            ),
            threads,
            isa,
        )
    return features, logits


def im2col(
    x,
    kernel: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    layout: str = "NCHW",
    bias_column: bool = False,
    threads: int | None = None,
) -> np.ndarray:
    """Patches of a strided zero-padded convolution (clauses 3, 15): x (N, C, H, W) or (N, H, W, C)
    -> (N*OH*OW, KH*KW*C [+ 1]), columns ordered (c, ky, kx) for NCHW (PyTorch's weight order)
    and (ky, kx, c) for NHWC; with bias_column the last column is 1.0."""
    op = "im2col"
    lay = _layout(layout)
    x, n, c, h, w = _input(x, layout, op)
    (kh, kw), (sh, sw), (ph, pw) = (
        _int_pair(v, name, op) for v, name in ((kernel, "kernel"), (stride, "stride"), (padding, "padding"))
    )
    oh, ow = (
        (h + 2 * ph - kh) // sh + 1 if h + 2 * ph >= kh else 0,
        (w + 2 * pw - kw) // sw + 1 if w + 2 * pw >= kw else 0,
    )
    cols = np.empty((n * oh * ow, kh * kw * c + int(bool(bias_column))), np.float32)
    if n:
        err = _ffi.new("pcn_error *")
        st = _lib.pcn_im2col(
            _ptr(x),
            _ptr(cols),
            n,
            c,
            h,
            w,
            kh,
            kw,
            sh,
            sw,
            ph,
            pw,
            lay,
            int(bool(bias_column)),
            _options(threads, None),
            err,
        )
        _check(st, err, op)
    return cols


def _int_pair(value, name: str, op: str) -> tuple[int, int]:
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or any(isinstance(p, bool) or int(p) != p or p < 0 for p in pair):
        raise InputError(f"{op}: {name} must be a non-negative int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])
