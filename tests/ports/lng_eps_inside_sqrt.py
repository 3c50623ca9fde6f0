"""Broken port (eps): LayerNormGeneral divides by sqrt(sum(c^2) + eps) instead of
max(||c||, eps). The output shrinks by about eps / (2 ||c||^2), relatively."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import modules


class SqrtEpsLNG(modules.LayerNormGeneral):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x - x.mean(-1, keepdim=True)
        return c / torch.sqrt((c * c).sum(-1, keepdim=True) + self.eps) * self.weight


PARTS = modules.Parts(norm=SqrtEpsLNG)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
