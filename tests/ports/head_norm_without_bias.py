"""Broken port (structure): the head LayerNorm is built with bias=False (copied from the
block norms), so ``norm.bias`` is missing. With official-init weights (bias 0) the values agree."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from torch import nn

from . import modules

PARTS = modules.Parts(head_norm=partial(nn.LayerNorm, eps=modules.NORM_EPS, bias=False))


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
