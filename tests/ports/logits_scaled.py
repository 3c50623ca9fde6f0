"""Broken port (output): the logits are multiplied by 1.001 after the head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import modules


class ScaledParCNetV2(modules.ParCNetV2):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 1.001


PARTS = modules.Parts(model=ScaledParCNetV2)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
