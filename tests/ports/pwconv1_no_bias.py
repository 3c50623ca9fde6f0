"""Broken port (semantics): the token mixer calls pwconv1 without its bias.
Invisible with official-init weights (all biases zero)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import modules


class NoBiasParCV2(modules.ParCV2):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x.permute(0, 3, 1, 2), self.pwconv1.weight)
        x1, x2 = x.chunk(2, 1)
        x2 = self.act(x2)
        x = x1 * (self.dwconv1(x2) + self.dwconv2(x2))
        return self.pwconv2(x).permute(0, 2, 3, 1)


PARTS = modules.Parts(token_mixer=NoBiasParCV2)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
