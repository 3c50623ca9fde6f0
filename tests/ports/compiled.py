"""Exact port (``modules``) wrapped in ``torch.compile``.

The factory returns the ``OptimizedModule``: its state_dict keys carry the ``_orig_mod.``
prefix, the official names live on ``_orig_mod``. Inductor fuses and reorders elementwise
work and reductions, which changes rounding only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import modules


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    model = modules.factory(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes)
    return torch.compile(model, dynamic=False)
