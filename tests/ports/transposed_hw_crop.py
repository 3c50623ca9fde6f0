"""Broken port (semantics), on ``cropped_kernels``: the crop of the oversized kernels takes the
vertical reach from the width and the horizontal reach from the height.

On square maps both are equal and the port is exact. On a non-square map where a kernel is
longer than 2 * min(H, W) - 1, the pass along the longer side loses taps that reach the map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import cropped_kernels, modules


class TransposedCropOversizeConv2d(cropped_kernels.CroppedOversizeConv2d):
    def reaches(self, x: torch.Tensor) -> tuple[int, int]:
        return x.shape[-1], x.shape[-2]


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    parts = modules.Parts(oversized=TransposedCropOversizeConv2d)
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=parts)
