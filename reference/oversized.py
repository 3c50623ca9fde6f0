"""The oversized separable depthwise convolution OC (spec clause 5, official ``OversizeConv2d``).

A vertical K x 1 depthwise conv followed by a horizontal 1 x K one, both bias-free, zero padded
and cross-correlating. Each pass is written as the paper's Eq. (1)/(2) (supplement Sec. B): a
per-channel Toeplitz matrix T[c, i, r] = k[c, r - i + pad] applied along one axis.

Kernel modes (clause 5.1-5.3), selected by ``interpolate`` as in the official code:
  False  the stored kernels, padding K // 2;
  True   both kernels resized per input to 2H-1 and 2W-1 (bilinear, align_corners=True),
         padding H-1 and W-1;
  S      (odd int) both kernels resized to S, padding S // 2.
"""

from __future__ import annotations

import numpy as np

from parcnetv2.errors import InputError
from parcnetv2.reference.dtypes import as_input, cast

Interpolate = bool | int


def resize_kernel(kernel: np.ndarray, size: int) -> np.ndarray:
    """Linear resize of 1-D kernels along the last axis with align_corners=True (clause 5.2).

    kernel: (C, K) -> (C, size). Sample i reads position i * (K - 1) / (size - 1) and blends its
    two neighbours; with size == 1 it reads position 0 (PyTorch's rule for a single output).
    Computed in the kernel's dtype, like PyTorch's ``F.interpolate(..., mode="bilinear")``.
    """
    if size < 1:
        raise InputError(f"resize_kernel: size must be >= 1, got {size}")
    k = kernel.shape[-1]
    dt = kernel.dtype.type
    scale = dt(k - 1) / dt(size - 1) if size > 1 else dt(0)
    src = scale * np.arange(size, dtype=kernel.dtype)
    lo = np.minimum(np.floor(src).astype(np.int64), k - 1)
    hi = np.minimum(lo + 1, k - 1)
    frac = src - lo.astype(kernel.dtype)
    return kernel[..., lo] * (dt(1) - frac) + kernel[..., hi] * frac


def toeplitz(kernel: np.ndarray, n_in: int, padding: int) -> np.ndarray:
    """Per-channel Toeplitz matrices of a 1-D cross-correlation with zero padding.

    kernel: (C, K) -> T: (C, n_out, n_in) with n_out = n_in + 2 * padding - K + 1 and
    T[c, i, r] = kernel[c, r - i + padding] where that index is inside the kernel, else 0.
    """
    k = kernel.shape[-1]
    n_out = n_in + 2 * padding - k + 1
    if n_out < 1:
        raise InputError(f"a kernel of length {k} with padding {padding} does not fit length {n_in}")
    tap = np.arange(n_in)[None, :] - np.arange(n_out)[:, None] + padding
    inside = (tap >= 0) & (tap < k)
    return np.where(inside, kernel[:, np.clip(tap, 0, k - 1)], kernel.dtype.type(0))


def instance_lengths(k_h: int, k_w: int, height: int, width: int, interpolate: Interpolate) -> tuple[int, int]:
    """Lengths of the vertical and horizontal kernels an input of height x width uses, given the
    stored lengths k_h, k_w (clauses 5.1-5.3)."""
    if interpolate is False or interpolate is None:
        return k_h, k_w
    if interpolate is True:
        return 2 * height - 1, 2 * width - 1
    return int(interpolate), int(interpolate)


def instance_kernels(
    k_h: np.ndarray, k_w: np.ndarray, height: int, width: int, interpolate: Interpolate
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The 1-D kernels and paddings one input of size height x width uses (clause 5.1-5.3).

    k_h: (C, 1, K, 1); k_w: (C, 1, 1, K). Returns (kh (C, Kh), kw (C, Kw), pad_h, pad_w).
    """
    kh, kw = k_h[:, 0, :, 0], k_w[:, 0, 0, :]
    if not isinstance(interpolate, bool) and interpolate is not None:
        size = int(interpolate)
        if size != interpolate or size < 1 or size % 2 == 0:
            raise InputError(f"interpolate must be False, True or an odd positive int, got {interpolate!r}")
    len_h, len_w = instance_lengths(kh.shape[-1], kw.shape[-1], height, width, interpolate)
    if interpolate is not False and interpolate is not None:
        kh, kw = resize_kernel(kh, len_h), resize_kernel(kw, len_w)
    return kh, kw, len_h // 2, len_w // 2


def oversized_conv(x: np.ndarray, k_h: np.ndarray, k_w: np.ndarray, interpolate: Interpolate = False) -> np.ndarray:
    """OC(x): vertical then horizontal depthwise 1-D convolution (clause 5).

    x: (N, C, H, W); k_h: (C, 1, K, 1) (``conv_h.weight``); k_w: (C, 1, 1, K) (``conv_w.weight``).
    Returns (N, C, H, W) in every official mode (clause 5.4 gives the sizes for other kernels).
    """
    x = as_input(x)
    k_h, k_w = cast(k_h, x.dtype), cast(k_w, x.dtype)
    if x.ndim != 4:
        raise InputError(f"oversized_conv: input must be NCHW (rank 4), got shape {x.shape}")
    c = x.shape[1]
    if k_h.shape[:2] != (c, 1) or k_h.ndim != 4 or k_h.shape[3] != 1:
        raise InputError(f"oversized_conv: k_h must be ({c}, 1, K, 1) for {c} channels, got {k_h.shape}")
    if k_w.shape[:3] != (c, 1, 1) or k_w.ndim != 4:
        raise InputError(f"oversized_conv: k_w must be ({c}, 1, 1, K) for {c} channels, got {k_w.shape}")
    kh, kw, pad_h, pad_w = instance_kernels(k_h, k_w, x.shape[2], x.shape[3], interpolate)
    vertical = np.matmul(toeplitz(kh, x.shape[2], pad_h), x)  # (C,Ho,H) @ (N,C,H,W)
    return np.matmul(vertical, toeplitz(kw, x.shape[3], pad_w).transpose(0, 2, 1))
