"""parcnetv2.cext: the C depthwise-convolution kernels from Python (spec clause 12).

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

from typing import Sequence

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
    "dwconv2d",
    "oversized_conv",
    "parc_spatial",
    "reparameterize",
    "choose_path",
    "available_isas",
    "best_isa",
    "has_openmp",
    "build_info",
    "version",
]

_LAYOUTS = {"NCHW": _lib.PCN_NCHW, "NHWC": _lib.PCN_NHWC}
_ISAS = {
    None: _lib.PCN_ISA_AUTO,
    "auto": _lib.PCN_ISA_AUTO,
    "scalar": _lib.PCN_ISA_SCALAR,
    "avx2": _lib.PCN_ISA_AVX2,
    "avx512": _lib.PCN_ISA_AVX512,
    "neon": _lib.PCN_ISA_NEON,
}
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


def _options(threads, isa, path: str = "auto", nchw_kernel: str = "auto"):
    opt = _ffi.new("pcn_options *")
    if threads is None:
        opt.threads = 0
    else:
        if isinstance(threads, bool) or int(threads) != threads or threads < 1:
            raise InputError(f"threads must be None or an int >= 1, got {threads!r}")
        opt.threads = int(threads)
    if isa not in _ISAS:
        raise InputError(f"isa must be one of {sorted(k for k in _ISAS if k)} or None, got {isa!r}")
    if _ISAS[isa] != _lib.PCN_ISA_AUTO and not _lib.pcn_isa_available(_ISAS[isa]):
        raise InputError(f"isa {isa!r} is not available on this CPU or in this build (have {available_isas()})")
    opt.isa = _ISAS[isa]
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
            raise InputError(f"{op}: {name} length {k} must be in 1..{MAX_KERNEL} (shape {k_h.shape if name == 'k_h' else k_w.shape})")
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
        raise InputError(
            f"{op}: kernel {kh}x{kw} does not fit input {h}x{w} with padding ({ph}, {pw}) (x {x.shape})"
        )
    opt = _options(threads, isa, nchw_kernel=nchw_kernel)
    y = _out((n, c, oh, ow), layout)
    if n == 0:
        return y
    err = _ffi.new("pcn_error *")
    st = _lib.pcn_dwconv2d(
        _ptr(x), _ptr(weight), _ptr(bias) if bias is not None else _ffi.NULL, _ptr(y),
        n, c, h, w, kh, kw, ph, pw, lay, opt, err,
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
    "cost_dense": ...} (costs in multiply-add equivalents; SPEC-NOTES.md gives the formula)."""
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
