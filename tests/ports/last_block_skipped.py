"""Broken port (coverage): the last block of the last stage is never run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import modules


class SkippingParCNetV2(modules.ParCNetV2):
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.stages) - 1
        for i, (down, stage) in enumerate(zip(self.downsample_layers, self.stages)):
            x = down(x)
            blocks = list(stage)
            for block in blocks[:-1] if i == last else blocks:
                x = block(x)
        return self.norm(self.pool(x))


PARTS = modules.Parts(model=SkippingParCNetV2)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
