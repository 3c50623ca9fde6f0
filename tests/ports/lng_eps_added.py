"""Broken port (eps): LayerNormGeneral divides by ||c|| + eps instead of max(||c||, eps)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import modules


class AddedEpsLNG(modules.LayerNormGeneral):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x - x.mean(-1, keepdim=True)
        return c / (torch.linalg.vector_norm(c, dim=-1, keepdim=True) + self.eps) * self.weight


PARTS = modules.Parts(norm=AddedEpsLNG)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
