"""Broken port (pooling): global sum over H and W instead of the mean.

The head LayerNorm is scale-invariant except for its eps, so the logits change only through
eps: relatively about eps / var(pooled) * (1 - 1/(H W)^2), tiny unless the pooled features are small."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import modules


class SumPoolParCNetV2(modules.ParCNetV2):
    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum((1, 2))


PARTS = modules.Parts(model=SumPoolParCNetV2)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
