"""Exact port (``modules``) run in the ``channels_last`` memory format.

Convolution weights are stored channels-last and the input image is converted on entry, so
PyTorch picks its NHWC convolution kernels (another summation order). Values, names and
shapes are unchanged; ``load_state_dict`` copies into the channels-last parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from . import modules


class ChannelsLastParCNetV2(modules.ParCNetV2):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.contiguous(memory_format=torch.channels_last))


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    parts = modules.Parts(model=ChannelsLastParCNetV2)
    model = modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=parts)
    return model.to(memory_format=torch.channels_last)
