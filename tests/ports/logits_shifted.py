"""Broken port (output): a constant 1e-3 is added to every logit after the head
(softmax would not see it; the logits are still not the official ones)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import modules


class ShiftedParCNetV2(modules.ParCNetV2):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + 1e-3


PARTS = modules.Parts(model=ShiftedParCNetV2)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
