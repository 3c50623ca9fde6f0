"""Exact port, style (b): parameters live in holder modules without ``forward``.

Only the blocks and the model are callable. A block reads its holders' tensors and calls
``F.conv2d`` / ``F.linear`` itself; the stem, downsampling and head run in the model's
``forward``. ``res_scale1``/``res_scale2`` are registered after ``mlp`` (the official order puts
``res_scale1`` before ``norm2``), so the state_dict order differs from the official one while
names and shapes are the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .variants import GLOBAL_KERNEL_SIZES, NUM_CLASSES, RES_SCALE_STAGES, lookup

EPS = 1e-6


class Params(nn.Module):
    """A bag of parameters (and child bags); it computes nothing."""

    def __init__(self, **shapes: tuple[int, ...]):
        super().__init__()
        for name, shape in shapes.items():
            if len(shape) > 1:
                value = nn.init.trunc_normal_(torch.empty(shape), std=0.02)
            elif name == "bias":
                value = torch.zeros(shape)
            else:
                value = torch.ones(shape)
            self.register_parameter(name, nn.Parameter(value))


def bag(**children: nn.Module) -> nn.Module:
    holder = Params()
    for name, child in children.items():
        holder.add_module(name, child)
    return holder


def lng(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    c = x - x.mean(-1, keepdim=True)
    return c / torch.linalg.vector_norm(c, dim=-1, keepdim=True).clamp_min(EPS) * weight


def oversized_kernels(
    k_h: torch.Tensor, k_w: torch.Tensor, interpolate: Any, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The 1-D kernels an input of this size uses (resized when ``interpolate`` asks for it)."""
    if interpolate is False or interpolate is None:
        return k_h, k_w
    lengths = (2 * height - 1, 2 * width - 1) if interpolate is True else (interpolate, interpolate)
    k_h = F.interpolate(k_h, size=(lengths[0], 1), mode="bilinear", align_corners=True)
    k_w = F.interpolate(k_w, size=(1, lengths[1]), mode="bilinear", align_corners=True)
    return k_h, k_w


class Block(nn.Module):
    """One ParCNetV2 block computed from its holders (NHWC in and out)."""

    def __init__(self, dim: int, kernel: int, res_scale: bool, interpolate: Any):
        super().__init__()
        self.interpolate = interpolate
        self.norm1 = Params(weight=(dim,))
        self.token_mixer = bag(
            pwconv1=Params(weight=(2 * dim, dim, 1, 1), bias=(2 * dim,)),
            dwconv1=bag(conv_h=Params(weight=(dim, 1, kernel, 1)), conv_w=Params(weight=(dim, 1, 1, kernel))),
            dwconv2=Params(weight=(dim, 1, 7, 7)),
            pwconv2=Params(weight=(dim, dim, 1, 1)),
        )
        self.norm2 = Params(weight=(dim,))
        self.mlp = bag(fc1=Params(weight=(5 * dim, dim), bias=(5 * dim,)), fc2=Params(weight=(dim, 5 * dim // 2)))
        if res_scale:
            self.res_scale1 = Params(scale=(dim,))
            self.res_scale2 = Params(scale=(dim,))

    def residual(self, x: torch.Tensor, name: str) -> torch.Tensor:
        holder = getattr(self, name, None)
        return x if holder is None else x * holder.scale

    def mixer(self, x: torch.Tensor) -> torch.Tensor:
        tm = self.token_mixer
        dim = x.shape[-1]
        x = F.conv2d(x.permute(0, 3, 1, 2), tm.pwconv1.weight, tm.pwconv1.bias)
        gate, x = x[:, :dim], F.gelu(x[:, dim:])
        k_h, k_w = oversized_kernels(
            tm.dwconv1.conv_h.weight, tm.dwconv1.conv_w.weight, self.interpolate, x.shape[2], x.shape[3]
        )
        oc = F.conv2d(x, k_h, padding=(k_h.shape[2] // 2, 0), groups=dim)
        oc = F.conv2d(oc, k_w, padding=(0, k_w.shape[3] // 2), groups=dim)
        local = F.conv2d(x, tm.dwconv2.weight, padding=3, groups=dim)
        x = F.conv2d(gate * (oc + local), tm.pwconv2.weight)
        return x.permute(0, 2, 3, 1)

    def channel_mlp(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.mlp.fc1.weight, self.mlp.fc1.bias)
        half = x.shape[-1] // 2
        return F.linear(x[..., :half] * F.gelu(x[..., half:]), self.mlp.fc2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.residual(x, "res_scale1") + self.mixer(lng(x, self.norm1.weight))
        return self.residual(x, "res_scale2") + self.channel_mlp(lng(x, self.norm2.weight))


class ParCNetV2(nn.Module):
    block_class = Block

    def __init__(self, depths: Sequence[int], dims: Sequence[int], kernels: Sequence[int], interpolate: Any):
        super().__init__()
        layers = [bag(conv=Params(weight=(dims[0], 3, 7, 7), bias=(dims[0],)), post_norm=Params(weight=(dims[0],)))]
        for i in range(1, len(dims)):
            conv = Params(weight=(dims[i], dims[i - 1], 3, 3), bias=(dims[i],))
            layers.append(bag(pre_norm=Params(weight=(dims[i - 1],)), conv=conv))
        self.downsample_layers = nn.ModuleList(layers)
        self.stages = nn.ModuleList(
            nn.ModuleList(self.block_class(dim, kernel, scaled, interpolate) for _ in range(depth))
            for depth, dim, kernel, scaled in zip(depths, dims, kernels, RES_SCALE_STAGES)
        )
        self.norm = Params(weight=(dims[-1],), bias=(dims[-1],))
        self.head = Params(weight=(NUM_CLASSES, dims[-1]), bias=(NUM_CLASSES,))

    def downsample(self, i: int, x: torch.Tensor) -> torch.Tensor:
        layer = self.downsample_layers[i]
        if i == 0:
            x = F.conv2d(x, layer.conv.weight, layer.conv.bias, stride=4, padding=2)
            return lng(x.permute(0, 2, 3, 1), layer.post_norm.weight)
        x = lng(x, layer.pre_norm.weight).permute(0, 3, 1, 2)
        return F.conv2d(x, layer.conv.weight, layer.conv.bias, stride=2, padding=1).permute(0, 2, 3, 1)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, stage in enumerate(self.stages):
            x = self.downsample(i, x)
            for block in stage:
                x = block(x)
        x = F.layer_norm(self.pool(x), x.shape[-1:], self.norm.weight, self.norm.bias, eps=EPS)
        return F.linear(x, self.head.weight, self.head.bias)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    depths, dims = lookup(variant)
    return ParCNetV2(depths, dims, tuple(global_kernel_sizes or GLOBAL_KERNEL_SIZES), interpolate)
