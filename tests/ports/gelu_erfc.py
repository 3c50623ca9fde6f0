"""Exact port (``modules``) with GELU written as x/2 * erfc(-x / sqrt(2)).

The same function as x * Phi(x) in erf form; erfc avoids the cancellation in 1 + erf(.) for
negative x, so it is the more accurate of the two.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import modules


class ErfcGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * torch.erfc(-x / math.sqrt(2.0))


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    parts = modules.Parts(act=ErfcGELU)
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=parts)
