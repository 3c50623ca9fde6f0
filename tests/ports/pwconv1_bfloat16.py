"""Broken port (precision): the token mixer computes pwconv1 in bfloat16 (inputs,
weights and bias rounded to bfloat16), then casts back; everything else is float32."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import modules


class BFloat16PwconvParCV2(modules.ParCV2):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.pwconv1
        x = x.permute(0, 3, 1, 2)
        h = F.conv2d(x.bfloat16(), conv.weight.bfloat16(), conv.bias.bfloat16()).to(x.dtype)
        x1, x2 = h.chunk(2, 1)
        x2 = self.act(x2)
        x = x1 * (self.dwconv1(x2) + self.dwconv2(x2))
        return self.pwconv2(x).permute(0, 2, 3, 1)


PARTS = modules.Parts(token_mixer=BFloat16PwconvParCV2)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
