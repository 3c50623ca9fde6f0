"""Exact port (``modules``) whose GELU keeps its constant 1/sqrt(2) in a non-persistent buffer.

The buffer is not part of the state_dict (the official names are unchanged) but moves with
``.to()``; it is created in float64 so that a float64 run gets the full-precision constant
(a float32-rounded 1/sqrt(2) kept through ``.double()`` moves float64 logits by about 2e-8).
GELU(x) = x/2 * (1 + erf(x * buffer)) is the exact form, rounded differently from ``F.gelu``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import modules


class BufferedGELU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("inv_sqrt2", torch.tensor(0.5**0.5, dtype=torch.float64), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1.0 + torch.erf(x * self.inv_sqrt2))


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    parts = modules.Parts(act=BufferedGELU)
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=parts)
