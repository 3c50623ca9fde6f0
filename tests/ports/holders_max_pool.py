"""Broken port (pooling), on ``holders``: global max pool instead of the mean; the pooling is
inline in the model's forward, between the last block and the head's norm."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import holders


class MaxPoolParCNetV2(holders.ParCNetV2):
    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(1, 2))


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    depths, dims = holders.lookup(variant)
    kernels = tuple(global_kernel_sizes or holders.GLOBAL_KERNEL_SIZES)
    return MaxPoolParCNetV2(depths, dims, kernels, interpolate)
