"""Broken port (eps): LayerNormGeneral clamps ||c|| at 1e-5 instead of 1e-6.
Only vectors whose centred norm is below 1e-5 (near-constant channel vectors) are affected."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from torch import nn

from . import modules

PARTS = modules.Parts(norm=partial(modules.LayerNormGeneral, eps=1e-5))


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
