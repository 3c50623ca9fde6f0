"""Broken port (semantics): the channel BGU (mlp) uses the tanh GELU; the token mixer
uses the exact one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from . import modules


class TanhBGU(modules.BGU):
    def __init__(self, dim: int, parts: modules.Parts):
        super().__init__(dim, parts)
        self.act = nn.GELU(approximate="tanh")


PARTS = modules.Parts(mlp=TanhBGU)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
