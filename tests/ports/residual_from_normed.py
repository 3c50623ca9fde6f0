"""Broken port (wiring): the first residual adds the normalised input norm1(x) instead of x."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import modules


class NormedResidualBlock(modules.Block):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x)
        x = self.res_scale1(x) + self.token_mixer(x)
        return self.res_scale2(x) + self.mlp(self.norm2(x))


PARTS = modules.Parts(block=NormedResidualBlock)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
