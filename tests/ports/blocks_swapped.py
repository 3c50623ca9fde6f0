"""Broken port (wiring): blocks stages.2.3 and stages.2.4 run in swapped order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import modules


class SwappingParCNetV2(modules.ParCNetV2):
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for i, (down, stage) in enumerate(zip(self.downsample_layers, self.stages)):
            x = down(x)
            blocks = list(stage)
            if i == 2:
                blocks[3], blocks[4] = blocks[4], blocks[3]
            for block in blocks:
                x = block(x)
        return self.norm(self.pool(x))


PARTS = modules.Parts(model=SwappingParCNetV2)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
