"""Broken port (semantics): the token mixer runs GELU and the spatial convs on the
first half of pwconv1 and gates with the second."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import modules


class SwappedParCV2(modules.ParCV2):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pwconv1(x.permute(0, 3, 1, 2))
        x2, x1 = x.chunk(2, 1)
        x2 = self.act(x2)
        x = x1 * (self.dwconv1(x2) + self.dwconv2(x2))
        return self.pwconv2(x).permute(0, 2, 3, 1)


PARTS = modules.Parts(token_mixer=SwappedParCV2)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
