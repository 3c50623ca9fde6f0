"""Exact port (``modules``) that crops oversized kernels to the taps that can reach the map.

On a map of H rows only the central 2H - 1 taps of a vertical kernel ever meet an input pixel;
the rest multiply zero padding. Cropping them (and the padding with them) changes nothing but
the work; at 224 x 224 (K = 2H - 1) nothing is cropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import modules


def crop(kernel: torch.Tensor, axis: int, reach: int) -> torch.Tensor:
    """The central ``min(K, 2 * reach - 1)`` taps of ``kernel`` along ``axis``."""
    k = kernel.shape[axis]
    keep = min(k, 2 * reach - 1)
    return kernel.narrow(axis, (k - keep) // 2, keep)


class CroppedOversizeConv2d(modules.OversizeConv2d):
    def reaches(self, x: torch.Tensor) -> tuple[int, int]:
        """How far the vertical and horizontal passes can reach: the map's height and width."""
        return x.shape[-2], x.shape[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k_h, k_w = self.kernels(x.shape[-2], x.shape[-1])
        reach_h, reach_w = self.reaches(x)
        k_h, k_w = crop(k_h, 2, reach_h), crop(k_w, 3, reach_w)
        x = F.conv2d(x, k_h, padding=(k_h.shape[2] // 2, 0), groups=self.dim)
        return F.conv2d(x, k_w, padding=(0, k_w.shape[3] // 2), groups=self.dim)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    parts = modules.Parts(oversized=CroppedOversizeConv2d)
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=parts)
