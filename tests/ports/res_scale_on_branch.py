"""Broken port (semantics): res_scale multiplies the branch instead of the residual:
x + scale * branch. Invisible while the scales are 1 (official init)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import modules


class BranchScaledBlock(modules.Block):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.res_scale1(self.token_mixer(self.norm1(x)))
        return x + self.res_scale2(self.mlp(self.norm2(x)))


PARTS = modules.Parts(block=BranchScaledBlock)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
