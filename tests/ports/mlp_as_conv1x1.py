"""Broken port (structure): the channel BGU uses 1x1 nn.Conv2d layers, so fc1.weight is
(5C, C, 1, 1) and fc2.weight (C, 5C/2, 1, 1) instead of the official Linear shapes (5C, C) and
(C, 5C/2). The values are right."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import modules


class ConvBGU(nn.Module):
    def __init__(self, dim: int, parts: modules.Parts):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, 5 * dim, 1)
        self.act = parts.act()
        self.fc2 = nn.Conv2d(5 * dim // 2, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.fc1(x.permute(0, 3, 1, 2)).chunk(2, 1)
        return self.fc2(x1 * self.act(x2)).permute(0, 2, 3, 1)


PARTS = modules.Parts(mlp=ConvBGU)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
