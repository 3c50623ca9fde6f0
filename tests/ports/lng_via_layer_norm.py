"""Exact port (``modules``) whose LayerNormGeneral is built on ``F.layer_norm``.

c / ||c|| = LayerNorm(x) / sqrt(C) (biased variance, eps 0); the official eps only acts when
||c|| < eps, where the output is c / eps, so that branch is taken explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import modules


class LayerNormBasedLNG(modules.LayerNormGeneral):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = x.shape[-1]
        c = x - x.mean(-1, keepdim=True)
        tiny = torch.linalg.vector_norm(c, dim=-1, keepdim=True) < self.eps
        unit = F.layer_norm(x, (dim,), eps=0.0) / dim**0.5
        return torch.where(tiny, c / self.eps, unit) * self.weight


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    parts = modules.Parts(norm=LayerNormBasedLNG)
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=parts)
