"""Broken port (pooling): global max pool over H and W instead of the mean."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import modules


class MaxPoolParCNetV2(modules.ParCNetV2):
    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax((1, 2))


PARTS = modules.Parts(model=MaxPoolParCNetV2)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
