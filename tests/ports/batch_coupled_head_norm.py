"""Broken port (semantics): the head LayerNorm takes mean and variance over the whole
(N, C) batch tensor instead of per image: right for batch 1, mixes images for batch > 1."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from . import modules


class BatchCoupledLayerNorm(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean()
        var = x.var(unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


PARTS = modules.Parts(head_norm=partial(BatchCoupledLayerNorm, eps=modules.NORM_EPS))


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
