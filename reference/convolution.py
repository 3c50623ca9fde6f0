"""Convolutions and linear layers (spec clauses 3, 6 and 8).

All convolutions are cross-correlations with zero padding, as in PyTorch. Layout NCHW; weights in
PyTorch's shapes. Computation is vectorized over pixels and channels (sliding windows, matmul).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from parcnetv2.errors import InputError
from parcnetv2.reference.dtypes import as_input, cast


def _pair(value: Any, name: str) -> tuple[int, int]:
    pair: tuple[Any, ...] = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or any(int(v) != v or v < 0 for v in pair):
        raise InputError(f"{name} must be a non-negative int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _require_nchw(x: np.ndarray, channels: int, op: str) -> None:
    if x.ndim != 4:
        raise InputError(f"{op}: input must be NCHW (rank 4), got shape {x.shape}")
    if x.shape[1] != channels:
        raise InputError(f"{op}: input has {x.shape[1]} channels, the weight expects {channels}")


def _windows(x: np.ndarray, kh: int, kw: int, padding: tuple[int, int]) -> np.ndarray:
    """Zero-padded sliding windows of an NCHW map: (N, C, Ho, Wo, KH, KW), a view, no copy."""
    ph, pw = padding
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    if padded.shape[2] < kh or padded.shape[3] < kw:
        raise InputError(f"kernel {kh}x{kw} is larger than the padded input {padded.shape[2]}x{padded.shape[3]}")
    return sliding_window_view(padded, (kh, kw), axis=(2, 3))


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
) -> np.ndarray:
    """Dense 2-D convolution (groups=1), as the stem and downsampling layers use it (clause 3).

    x: (N, Cin, H, W); weight: (Cout, Cin, KH, KW); bias: (Cout,) or None.
    Returns (N, Cout, Ho, Wo) with Ho = (H + 2*ph - KH) // sh + 1, likewise Wo.
    """
    x = as_input(x)
    weight = cast(weight, x.dtype)
    if weight.ndim != 4:
        raise InputError(f"conv2d: weight must be (Cout, Cin, KH, KW), got shape {weight.shape}")
    _require_nchw(x, weight.shape[1], "conv2d")
    sh, sw = _pair(stride, "stride")
    if sh == 0 or sw == 0:
        raise InputError(f"conv2d: stride must be positive, got {stride!r}")
    win = _windows(x, weight.shape[2], weight.shape[3], _pair(padding, "padding"))[:, :, ::sh, ::sw]
    out = np.tensordot(win, weight, axes=([1, 4, 5], [1, 2, 3]))  # (N, Ho, Wo, Cout)
    if bias is not None:
        out = out + cast(bias, x.dtype)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def depthwise_conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    padding: int | Sequence[int] | None = None,
) -> np.ndarray:
    """Depthwise 2-D convolution, stride 1, zero padding (clauses 5, 6 and 7).

    x: (N, C, H, W); weight: (C, 1, KH, KW); bias: (C,) or None; padding (ph, pw) defaults to
    (KH // 2, KW // 2). Returns (N, C, H + 2*ph - KH + 1, W + 2*pw - KW + 1).
    """
    x = as_input(x)
    weight = cast(weight, x.dtype)
    if weight.ndim != 4 or weight.shape[1] != 1:
        raise InputError(f"depthwise_conv2d: weight must be (C, 1, KH, KW), got shape {weight.shape}")
    _require_nchw(x, weight.shape[0], "depthwise_conv2d")
    kh, kw = weight.shape[2], weight.shape[3]
    pad = (kh // 2, kw // 2) if padding is None else _pair(padding, "padding")
    out = np.einsum("nchwij,cij->nchw", _windows(x, kh, kw, pad), weight[:, 0])
    if bias is not None:
        out = out + cast(bias, x.dtype)[:, None, None]
    return out


def pointwise_conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """1x1 convolution (clause 8): x (N, Cin, H, W), weight (Cout, Cin, 1, 1) -> (N, Cout, H, W);
    any N >= 0 (an empty batch gives an empty result)."""
    x = as_input(x)
    weight = cast(weight, x.dtype)
    if weight.ndim != 4 or weight.shape[2:] != (1, 1):
        raise InputError(f"pointwise_conv2d: weight must be (Cout, Cin, 1, 1), got {weight.shape}")
    _require_nchw(x, weight.shape[1], "pointwise_conv2d")
    n, _, h, w = x.shape
    out = np.matmul(weight[:, :, 0, 0], x.reshape(n, x.shape[1], h * w)).reshape(n, weight.shape[0], h, w)
    if bias is not None:
        out = out + cast(bias, x.dtype)[:, None, None]
    return out


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """Linear layer over the last axis (clauses 8.2, 8.5): x (..., Cin), weight (Cout, Cin)."""
    x = as_input(x)
    weight = cast(weight, x.dtype)
    if weight.ndim != 2 or x.shape[-1] != weight.shape[1]:
        raise InputError(f"linear: input (..., {x.shape[-1]}) does not fit weight {weight.shape}")
    out = (x.reshape(-1, x.shape[-1]) @ weight.T).reshape(*x.shape[:-1], weight.shape[0])  # one 2-D matmul: fast
    return out if bias is None else out + cast(bias, x.dtype)
