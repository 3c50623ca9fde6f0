"""Broken port (structure): the token mixer's pwconv2 keeps nn.Conv2d's default bias=True,
an extra persistent parameter ``token_mixer.pwconv2.bias`` (zero-initialised, so the values
agree until a bias is loaded)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from . import modules


class BiasedParCV2(modules.ParCV2):
    def __init__(self, dim: int, kernel_size: int, interpolate: Any, parts: modules.Parts):
        super().__init__(dim, kernel_size, interpolate, parts)
        self.pwconv2 = nn.Conv2d(dim, dim, 1)
        nn.init.zeros_(self.pwconv2.bias)


PARTS = modules.Parts(token_mixer=BiasedParCV2)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
