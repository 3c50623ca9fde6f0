"""Exact port (``modules``) compiled with ``torch.jit.script``: a ``RecursiveScriptModule``
with the official submodule tree and names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import modules


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    model = modules.factory(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes)
    return torch.jit.script(model.eval())
