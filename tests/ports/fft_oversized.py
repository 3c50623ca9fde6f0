"""Exact port (``modules``) whose oversized conv runs both 1-D passes with ``torch.fft``.

Each pass is a zero-padded linear cross-correlation: FFT length L + K - 1, the kernel flipped,
the "same" window cut out of the full result. Correct up to rounding; FFT rounding error
scales with the energy of the whole row or column rather than with each output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import modules


class FFTOversizeConv2d(modules.OversizeConv2d):
    @staticmethod
    def fft_length(length: int, kernel: int) -> int:
        """FFT size of a zero-padded linear correlation (no wrap-around)."""
        return length + kernel - 1

    @staticmethod
    def as_convolution_kernel(kernel: torch.Tensor) -> torch.Tensor:
        """FFT products convolve; a cross-correlation convolves with the flipped kernel."""
        return kernel.flip(-1)

    def correlate(self, x: torch.Tensor, kernel: torch.Tensor, axis: int) -> torch.Tensor:
        """Depthwise "same" cross-correlation of NCHW x along ``axis`` (2 or 3), (C, K) kernels."""
        length, k = x.shape[axis], kernel.shape[-1]
        n = self.fft_length(length, k)
        spectrum = torch.fft.rfft(x, n=n, dim=axis)
        shape = [1, kernel.shape[0], 1, 1]
        shape[axis] = -1
        response = torch.fft.rfft(self.as_convolution_kernel(kernel), n=n, dim=-1).reshape(shape)
        full = torch.fft.irfft(spectrum * response, n=n, dim=axis)
        return full.narrow(axis, k // 2, length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k_h, k_w = self.kernels(x.shape[-2], x.shape[-1])
        x = self.correlate(x, k_h.reshape(k_h.shape[0], -1), axis=2)
        return self.correlate(x, k_w.reshape(k_w.shape[0], -1), axis=3)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    parts = modules.Parts(oversized=FFTOversizeConv2d)
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=parts)
