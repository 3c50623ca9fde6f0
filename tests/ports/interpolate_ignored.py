"""Broken port (semantics): the factory accepts ``interpolate`` but never passes it on, so the
model always uses the fixed kernels. Right for interpolate=False only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from . import modules


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, global_kernel_sizes=global_kernel_sizes)
