"""Broken port (semantics), on ``fft_oversized``: the kernel is not flipped before the FFT
product, so the oversized conv is a true convolution instead of PyTorch's cross-correlation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import fft_oversized, modules


class UnflippedFFTOversizeConv2d(fft_oversized.FFTOversizeConv2d):
    @staticmethod
    def as_convolution_kernel(kernel: torch.Tensor) -> torch.Tensor:
        return kernel


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    parts = modules.Parts(oversized=UnflippedFFTOversizeConv2d)
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=parts)
