"""Exact port (``modules``) recorded with ``torch.jit.trace`` on one 224 x 224 image.

The fixed-kernel model has no shape-dependent Python control flow, so the trace runs other
input sizes and batch sizes correctly. (With ``interpolate=True`` it would not: the kernel
lengths 2H - 1 would be frozen at the traced size, so the factory refuses that mode.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from . import modules


def factory(variant: str, *, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    model = modules.factory(variant, global_kernel_sizes=global_kernel_sizes).eval()
    example = torch.zeros(1, 3, 224, 224)
    with torch.no_grad():
        return torch.jit.trace(model, example, check_trace=False)
