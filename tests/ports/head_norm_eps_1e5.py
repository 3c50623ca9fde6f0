"""Broken port (eps): the head norm is nn.LayerNorm with its default eps 1e-5
(official: 1e-6)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from . import modules

PARTS = modules.Parts(head_norm=nn.LayerNorm)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
