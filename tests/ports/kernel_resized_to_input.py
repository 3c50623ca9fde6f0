"""Broken port (semantics): the oversized kernels are always resized to 2H-1 and
2W-1 of the input (the paper's prose), even with interpolate=False. Exact at 224 x 224, where
2H-1 equals the stored K in every stage; wrong at any other resolution."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from . import modules


class AlwaysResizedOversizeConv2d(modules.OversizeConv2d):
    def __init__(self, dim: int, kernel_size: int, interpolate: Any = False):
        super().__init__(dim, kernel_size, interpolate)
        self.resize = -1


PARTS = modules.Parts(oversized=AlwaysResizedOversizeConv2d)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
