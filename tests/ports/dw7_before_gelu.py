"""Broken port (wiring): the 7x7 depthwise conv reads the token mixer branch before
GELU; the oversized conv reads it after."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import modules


class EarlyLocalParCV2(modules.ParCV2):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pwconv1(x.permute(0, 3, 1, 2))
        x1, x2 = x.chunk(2, 1)
        x = x1 * (self.dwconv1(self.act(x2)) + self.dwconv2(x2))
        return self.pwconv2(x).permute(0, 2, 3, 1)


PARTS = modules.Parts(token_mixer=EarlyLocalParCV2)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
