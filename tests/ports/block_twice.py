"""Broken port (coverage): block stages.1.1 is run twice in a row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import modules


class RepeatingParCNetV2(modules.ParCNetV2):
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for i, (down, stage) in enumerate(zip(self.downsample_layers, self.stages)):
            x = down(x)
            for j, block in enumerate(stage):
                x = block(x)
                if (i, j) == (1, 1):
                    x = block(x)
        return self.norm(self.pool(x))


PARTS = modules.Parts(model=RepeatingParCNetV2)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
