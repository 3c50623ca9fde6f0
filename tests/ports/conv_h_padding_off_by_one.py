"""Broken port (semantics): conv_h pads K//2 + 1 rows on top and K//2 - 1 at the
bottom (total right, output size right), so the vertical pass is shifted by one row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import modules


class ShiftedOversizeConv2d(modules.OversizeConv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k_h, k_w = self.kernels(x.shape[-2], x.shape[-1])
        pad = k_h.shape[2] // 2
        y = F.conv2d(F.pad(x, (0, 0, pad + 1, pad - 1)), k_h, groups=self.dim)
        return F.conv2d(y, k_w, padding=(0, k_w.shape[3] // 2), groups=self.dim)


PARTS = modules.Parts(oversized=ShiftedOversizeConv2d)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
