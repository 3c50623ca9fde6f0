"""Exact port (``flat``) that computes in float64 whatever its parameters' dtype, and returns
float32 logits. Parameters stay float32, so the official float32 weights load unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import flat


class Float64ParCNetV2(flat.FlatParCNetV2):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = {name: p.double() for name, p in self.named_parameters()}
        return self.run(params, x.double()).float()


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return Float64ParCNetV2(flat.arch_of(variant, interpolate, global_kernel_sizes))
