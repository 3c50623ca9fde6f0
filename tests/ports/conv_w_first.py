"""Exact port (``modules``) whose oversized conv runs the horizontal pass before the vertical one.

OC is the rank-1 kernel k_h k_w^T, so conv_w then conv_h gives the same values up to rounding
(supplement Sec. B).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import modules


class WidthFirstOversizeConv2d(modules.OversizeConv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wh, ww = self.kernels(x.shape[-2], x.shape[-1])
        x = F.conv2d(x, ww, padding=(0, ww.shape[3] // 2), groups=self.dim)
        return F.conv2d(x, wh, padding=(wh.shape[2] // 2, 0), groups=self.dim)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    parts = modules.Parts(oversized=WidthFirstOversizeConv2d)
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=parts)
