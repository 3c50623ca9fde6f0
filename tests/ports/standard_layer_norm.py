"""Broken port (semantics): standard nn.LayerNorm (no bias, eps 1e-6) in place of
LayerNormGeneral; its output is sqrt(C) times the official one."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from torch import nn

from . import modules

PARTS = modules.Parts(norm=partial(nn.LayerNorm, eps=modules.NORM_EPS, bias=False))


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
