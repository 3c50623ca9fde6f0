"""Reparameterization of OC + DW7 into one dense depthwise kernel (spec clause 7, supplement B, H).

OC is the rank-1 kernel outer(k_h, k_w) (supplement Sec. B); both OC and DW7 are bias-free and
zero padded with "same" padding, so their sum is one depthwise conv whose kernel is the two
kernels added with their centres aligned.
"""

from __future__ import annotations

import numpy as np

from parcnetv2.errors import InputError
from parcnetv2.reference.dtypes import as_input, cast


def reparameterize(k_h: np.ndarray, k_w: np.ndarray, k7: np.ndarray) -> np.ndarray:
    """Dense kernel of OC + DW7 (clause 7.1).

    k_h: (C, 1, K, 1); k_w: (C, 1, 1, K'); k7: (C, 1, L, L) (L = 7 in the model).
    Returns (C, 1, max(K, L), max(K', L)) in k_h's dtype: outer(k_h, k_w) plus k7, each centred.
    Kernel lengths must be odd so that centres coincide.
    """
    k_h = as_input(k_h, "k_h")
    k_w, k7 = cast(k_w, k_h.dtype), cast(k7, k_h.dtype)
    c = k_h.shape[0]
    if k_h.ndim != 4 or k_h.shape[1] != 1 or k_h.shape[3] != 1:
        raise InputError(f"reparameterize: k_h must be (C, 1, K, 1), got {k_h.shape}")
    if k_w.ndim != 4 or k_w.shape[:3] != (c, 1, 1):
        raise InputError(f"reparameterize: k_w must be ({c}, 1, 1, K), got {k_w.shape}")
    if k7.ndim != 4 or k7.shape[:2] != (c, 1):
        raise InputError(f"reparameterize: k7 must be ({c}, 1, L, L), got {k7.shape}")
    sizes = (k_h.shape[2], k_w.shape[3], k7.shape[2], k7.shape[3])
    if any(s % 2 == 0 for s in sizes):
        raise InputError(f"reparameterize: kernel lengths must be odd, got {sizes}")
    rows, cols = max(sizes[0], sizes[2]), max(sizes[1], sizes[3])
    dense = np.zeros((c, 1, rows, cols), dtype=k_h.dtype)

    def add_centred(block: np.ndarray) -> None:
        top, left = (rows - block.shape[-2]) // 2, (cols - block.shape[-1]) // 2
        dense[:, 0, top : top + block.shape[-2], left : left + block.shape[-1]] += block

    add_centred(k_h[:, 0, :, 0][:, :, None] * k_w[:, 0, 0, :][:, None, :])
    add_centred(k7[:, 0])
    return dense
