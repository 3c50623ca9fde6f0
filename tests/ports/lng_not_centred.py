"""Broken port (semantics): LayerNormGeneral forgets to subtract the mean: x / max(||x||, eps)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import modules


class UncentredLNG(modules.LayerNormGeneral):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        return x / norm.clamp_min(self.eps) * self.weight


PARTS = modules.Parts(norm=UncentredLNG)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
