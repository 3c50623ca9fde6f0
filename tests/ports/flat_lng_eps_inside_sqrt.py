"""Broken port (eps), on ``flat`` (no submodules to probe): LayerNormGeneral divides by
sqrt(sum(c^2) + eps) instead of max(||c||, eps)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import flat


class SqrtEpsFlatParCNetV2(flat.FlatParCNetV2):
    @staticmethod
    def lng(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        c = x - x.mean(-1, keepdim=True)
        return c * torch.rsqrt(torch.square(c).sum(-1, keepdim=True) + flat.EPS) * w


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return SqrtEpsFlatParCNetV2(flat.arch_of(variant, interpolate, global_kernel_sizes))
