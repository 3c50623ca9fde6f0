"""Exact port that keeps every activation NCHW (channels first), like many CNN ports do.

The norms normalise over axis 1, the channel BGU runs its linears as 1x1 convolutions on the
(5C, C) weights viewed as (5C, C, 1, 1), the scales broadcast over H and W, and the head pools
over axes 2 and 3. Names and shapes are the official ones; each module's input and output
layout is NCHW where the official module's is NHWC.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import modules


class ChannelsFirstLayerNormGeneral(modules.LayerNormGeneral):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x - x.mean(1, keepdim=True)
        norm = torch.sqrt((c * c).sum(1, keepdim=True))
        return c / norm.clamp_min(self.eps) * self.weight[:, None, None]


class ChannelsFirstScale(modules.Scale):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale[:, None, None]


class ChannelsFirstParCV2(modules.ParCV2):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.pwconv1(x).chunk(2, 1)
        x2 = self.act(x2)
        return self.pwconv2(x1 * (self.dwconv1(x2) + self.dwconv2(x2)))


class ChannelsFirstBGU(modules.BGU):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.conv2d(x, self.fc1.weight[:, :, None, None], self.fc1.bias)
        x1, x2 = h.chunk(2, 1)
        return F.conv2d(x1 * self.act(x2), self.fc2.weight[:, :, None, None])


class ChannelsFirstStem(modules.Stem):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post_norm(self.conv(x))


class ChannelsFirstDownsampling(modules.Downsampling):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pre_norm(x))


class ChannelsFirstParCNetV2(modules.ParCNetV2):
    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


PARTS = modules.Parts(
    norm=ChannelsFirstLayerNormGeneral,
    scale=ChannelsFirstScale,
    token_mixer=ChannelsFirstParCV2,
    mlp=ChannelsFirstBGU,
    stem=ChannelsFirstStem,
    downsampling=ChannelsFirstDownsampling,
    model=ChannelsFirstParCNetV2,
)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return modules.build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes, parts=PARTS)
