"""Broken port (semantics), on ``holders`` (blocks are the smallest callable modules): the
residual scales multiply the branches instead of the residual input."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import holders


class BranchScaledBlock(holders.Block):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.residual(self.mixer(holders.lng(x, self.norm1.weight)), "res_scale1")
        return x + self.residual(self.channel_mlp(holders.lng(x, self.norm2.weight)), "res_scale2")


class BranchScaledParCNetV2(holders.ParCNetV2):
    block_class = BranchScaledBlock


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    depths, dims = holders.lookup(variant)
    kernels = tuple(global_kernel_sizes or holders.GLOBAL_KERNEL_SIZES)
    return BranchScaledParCNetV2(depths, dims, kernels, interpolate)
