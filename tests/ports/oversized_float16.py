"""Broken port (precision): the oversized conv (both passes) runs in float16."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import modules


class HalfOversizeConv2d(modules.OversizeConv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k_h, k_w = self.kernels(x.shape[-2], x.shape[-1])
        y = F.conv2d(x.half(), k_h.half(), padding=(k_h.shape[2] // 2, 0), groups=self.dim)
        y = F.conv2d(y, k_w.half(), padding=(0, k_w.shape[3] // 2), groups=self.dim)
        return y.to(x.dtype)


PARTS = modules.Parts(oversized=HalfOversizeConv2d)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
