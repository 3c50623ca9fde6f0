"""Broken port (precision): the final feature map is cast to float16 and averaged
there, then cast back; everything else is float32."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import modules


class HalfPoolParCNetV2(modules.ParCNetV2):
    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return x.half().mean((1, 2), dtype=torch.float16).to(x.dtype)


PARTS = modules.Parts(model=HalfPoolParCNetV2)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
