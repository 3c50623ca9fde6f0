"""Broken port (precision): the token mixer runs the 7x7 depthwise conv in float16."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import modules


class HalfLocalParCV2(modules.ParCV2):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pwconv1(x.permute(0, 3, 1, 2))
        x1, x2 = x.chunk(2, 1)
        x2 = self.act(x2)
        local = F.conv2d(x2.half(), self.dwconv2.weight.half(), padding=3, groups=x2.shape[1]).to(x2.dtype)
        x = x1 * (self.dwconv1(x2) + local)
        return self.pwconv2(x).permute(0, 2, 3, 1)


PARTS = modules.Parts(token_mixer=HalfLocalParCV2)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
