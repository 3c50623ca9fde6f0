"""Exact port (``modules``) whose token mixer merges OC and the 7x7 conv into one dense kernel.

Per channel the dense kernel is outer(k_h, k_w) with the 7x7 kernel added at its centre
(supplement Sec. B, H): one depthwise convolution with "same" zero padding replaces the three
convolutions. It is rebuilt from the parameters on every call, so loaded weights take effect;
the convolution runs channels-last, where PyTorch's large depthwise kernels are fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import modules


def merged_kernel(k_h: torch.Tensor, k_w: torch.Tensor, k7: torch.Tensor) -> torch.Tensor:
    """(C, 1, max(Kh, 7), max(Kw, 7)) dense kernel of OC + DW7, centres aligned."""
    kh, kw, local = k_h.shape[2], k_w.shape[3], k7.shape[2]
    rows, cols = max(kh, local), max(kw, local)
    dense = k_h.new_zeros(k_h.shape[0], 1, rows, cols)
    top, left = (rows - kh) // 2, (cols - kw) // 2
    dense[:, :, top : top + kh, left : left + kw] = k_h * k_w
    top, left = (rows - local) // 2, (cols - local) // 2
    dense[:, :, top : top + local, left : left + local] += k7
    return dense


class ReparameterizedParCV2(modules.ParCV2):
    merge = staticmethod(merged_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pwconv1(x.permute(0, 3, 1, 2))
        x1, x2 = x.chunk(2, 1)
        x2 = self.act(x2)
        k_h, k_w = self.dwconv1.kernels(x2.shape[2], x2.shape[3])
        kernel = self.merge(k_h, k_w, self.dwconv2.weight).contiguous(memory_format=torch.channels_last)
        x2 = x2.contiguous(memory_format=torch.channels_last)
        padding = (kernel.shape[2] // 2, kernel.shape[3] // 2)
        x = x1 * F.conv2d(x2, kernel, padding=padding, groups=x2.shape[1])
        return self.pwconv2(x).permute(0, 2, 3, 1)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    parts = modules.Parts(token_mixer=ReparameterizedParCV2)
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=parts)
