"""Broken port (semantics), on ``reparameterized``: the merged kernel places the 7x7 kernel one
column right of the centre (an off-by-one in its column offset). Needs K >= 9, as in every
official stage."""

from __future__ import annotations

import torch
from torch import nn

from . import modules, reparameterized


def offcentre_merged_kernel(k_h: torch.Tensor, k_w: torch.Tensor, k7: torch.Tensor) -> torch.Tensor:
    kh, kw, local = k_h.shape[2], k_w.shape[3], k7.shape[2]
    rows, cols = max(kh, local), max(kw, local)
    dense = k_h.new_zeros(k_h.shape[0], 1, rows, cols)
    top, left = (rows - kh) // 2, (cols - kw) // 2
    dense[:, :, top : top + kh, left : left + kw] = k_h * k_w
    top, left = (rows - local) // 2, (cols - local) // 2 + 1
    dense[:, :, top : top + local, left : left + local] += k7
    return dense


class OffcentreParCV2(reparameterized.ReparameterizedParCV2):
    merge = staticmethod(offcentre_merged_kernel)


def factory(variant: str) -> nn.Module:
    return modules.build(variant, parts=modules.Parts(token_mixer=OffcentreParCV2))
