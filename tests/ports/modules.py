"""Exact port, style (a): one ``nn.Module`` per component, laid out like the official code.

Activations are NHWC between components; the token mixer runs its convolutions in NCHW and
permutes in and out. Every component class can be swapped through ``Parts`` (the way the
official code takes ``partial`` constructors), which is how the other ports in this folder
change exactly one thing. TorchScript-compatible (``torch.jit.script`` works on the result).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .variants import GLOBAL_KERNEL_SIZES, NUM_CLASSES, RES_SCALE_STAGES, lookup

NORM_EPS = 1e-6


class LayerNormGeneral(nn.Module):
    """The official norm over the last axis: (x - mean) / max(||x - mean||_2, eps) * weight."""

    def __init__(self, dim: int, eps: float = NORM_EPS):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x - x.mean(-1, keepdim=True)
        norm = torch.sqrt((c * c).sum(-1, keepdim=True))
        return c / norm.clamp_min(self.eps) * self.weight


class Scale(nn.Module):
    """Per-channel multiplier on the last axis (``res_scale1``/``res_scale2``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def resize_mode(interpolate: Any) -> int:
    """0: fixed kernels; -1: kernels resized to 2H-1 / 2W-1 per input; S > 0: resized to S."""
    if interpolate is True:
        return -1
    if interpolate is False or interpolate is None:
        return 0
    if int(interpolate) < 1 or int(interpolate) % 2 == 0:
        raise ValueError(f"interpolate must be False, True or an odd positive int, got {interpolate!r}")
    return int(interpolate)


class OversizeConv2d(nn.Module):
    """Separable depthwise oversized conv: ``conv_h`` (K x 1) then ``conv_w`` (1 x K), no bias.

    With ``interpolate`` the 1-D kernels are resized (bilinear, align_corners=True) to 2H-1 and
    2W-1 of the input, or to a fixed odd length, before the convolution.
    """

    def __init__(self, dim: int, kernel_size: int, interpolate: Any = False):
        super().__init__()
        self.dim = dim
        self.kernel_size = kernel_size
        self.resize = resize_mode(interpolate)
        pad = {0: kernel_size // 2, -1: 0}.get(self.resize, self.resize // 2)
        self.conv_h = nn.Conv2d(dim, dim, (kernel_size, 1), padding=(pad, 0), groups=dim, bias=False)
        self.conv_w = nn.Conv2d(dim, dim, (1, kernel_size), padding=(0, pad), groups=dim, bias=False)

    def kernels(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The (C, 1, Kh, 1) and (C, 1, 1, Kw) kernels an input of this size uses."""
        if self.resize == 0:
            return self.conv_h.weight, self.conv_w.weight
        if self.resize < 0:
            kh, kw = 2 * height - 1, 2 * width - 1
        else:
            kh, kw = self.resize, self.resize
        wh = F.interpolate(self.conv_h.weight, size=(kh, 1), mode="bilinear", align_corners=True)
        ww = F.interpolate(self.conv_w.weight, size=(1, kw), mode="bilinear", align_corners=True)
        return wh, ww

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize == 0:
            return self.conv_w(self.conv_h(x))
        wh, ww = self.kernels(x.shape[-2], x.shape[-1])
        x = F.conv2d(x, wh, padding=(wh.shape[2] // 2, 0), groups=self.dim)
        return F.conv2d(x, ww, padding=(0, ww.shape[3] // 2), groups=self.dim)


class ParCV2(nn.Module):
    """Token mixer, NHWC in and out: pwconv1 (C -> 2C), x1 * (OC + DW7)(GELU(x2)), pwconv2."""

    def __init__(self, dim: int, kernel_size: int, interpolate: Any, parts: Parts):
        super().__init__()
        self.pwconv1 = nn.Conv2d(dim, 2 * dim, 1)
        self.act = parts.act()
        self.dwconv1 = parts.oversized(dim, kernel_size, interpolate)
        self.dwconv2 = nn.Conv2d(dim, dim, 7, padding=3, groups=dim, bias=False)
        self.pwconv2 = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pwconv1(x.permute(0, 3, 1, 2))
        x1, x2 = x.chunk(2, 1)
        x2 = self.act(x2)
        x = x1 * (self.dwconv1(x2) + self.dwconv2(x2))
        return self.pwconv2(x).permute(0, 2, 3, 1)


class BGU(nn.Module):
    """Channel bifurcate gate unit: fc1 (C -> 5C), first half * GELU(second half), fc2 (no bias)."""

    def __init__(self, dim: int, parts: Parts):
        super().__init__()
        hidden = 5 * dim
        self.fc1 = nn.Linear(dim, hidden)
        self.act = parts.act()
        self.fc2 = nn.Linear(hidden // 2, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.fc1(x).chunk(2, -1)
        return self.fc2(x1 * self.act(x2))


class Block(nn.Module):
    """x = res_scale1(x) + token_mixer(norm1(x)); x = res_scale2(x) + mlp(norm2(x)) (NHWC)."""

    def __init__(self, dim: int, kernel_size: int, res_scale: bool, interpolate: Any, parts: Parts):
        super().__init__()
        self.norm1 = parts.norm(dim)
        self.token_mixer = parts.token_mixer(dim, kernel_size, interpolate, parts)
        self.res_scale1 = parts.scale(dim) if res_scale else nn.Identity()
        self.norm2 = parts.norm(dim)
        self.mlp = parts.mlp(dim, parts)
        self.res_scale2 = parts.scale(dim) if res_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.res_scale1(x) + self.token_mixer(self.norm1(x))
        return self.res_scale2(x) + self.mlp(self.norm2(x))


class Stem(nn.Module):
    """``downsample_layers.0``: 7x7 stride-4 conv on NCHW images, then NHWC and post_norm."""

    def __init__(self, out_dim: int, parts: Parts):
        super().__init__()
        self.conv = nn.Conv2d(3, out_dim, 7, stride=4, padding=2)
        self.post_norm = parts.norm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post_norm(self.conv(x).permute(0, 2, 3, 1))


class Downsampling(nn.Module):
    """``downsample_layers.{1,2,3}``: pre_norm on NHWC, 3x3 stride-2 conv in NCHW, back to NHWC."""

    def __init__(self, in_dim: int, out_dim: int, parts: Parts):
        super().__init__()
        self.pre_norm = parts.norm(in_dim)
        self.conv = nn.Conv2d(in_dim, out_dim, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre_norm(x).permute(0, 3, 1, 2)
        return self.conv(x).permute(0, 2, 3, 1)


class ParCNetV2(nn.Module):
    """The whole model: four (downsampling, stage) pairs, mean pool, LayerNorm, linear head."""

    def __init__(
        self,
        depths: Sequence[int],
        dims: Sequence[int],
        global_kernel_sizes: Sequence[int],
        num_classes: int,
        interpolate: Any,
        parts: Parts,
    ):
        super().__init__()
        layers: list[nn.Module] = [parts.stem(dims[0], parts)]
        layers += [parts.downsampling(dims[i - 1], dims[i], parts) for i in range(1, len(dims))]
        self.downsample_layers = nn.ModuleList(layers)
        self.stages = nn.ModuleList(
            nn.Sequential(*(parts.block(dim, kernel, scaled, interpolate, parts) for _ in range(depth)))
            for depth, dim, kernel, scaled in zip(depths, dims, global_kernel_sizes, RES_SCALE_STAGES)
        )
        self.norm = parts.head_norm(dims[-1])
        self.head = nn.Linear(dims[-1], num_classes)
        self.apply(init_weights)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Global average over H and W: (N, H, W, C) -> (N, C)."""
        return x.mean((1, 2))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        return self.norm(self.pool(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def init_weights(module: nn.Module) -> None:
    """The official initialisation: conv/linear weights N(0, 0.02) truncated at +-2, biases 0."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def head_layer_norm(dim: int) -> nn.Module:
    """The head's standard LayerNorm, with the official eps."""
    return nn.LayerNorm(dim, eps=NORM_EPS)


@dataclass(frozen=True)
class Parts:
    """The classes a model is assembled from; a port that differs in one component replaces it."""

    norm: Callable[..., nn.Module] = LayerNormGeneral
    head_norm: Callable[..., nn.Module] = head_layer_norm
    act: Callable[..., nn.Module] = nn.GELU
    scale: Callable[..., nn.Module] = Scale
    oversized: Callable[..., nn.Module] = OversizeConv2d
    token_mixer: Callable[..., nn.Module] = ParCV2
    mlp: Callable[..., nn.Module] = BGU
    block: Callable[..., nn.Module] = Block
    stem: Callable[..., nn.Module] = Stem
    downsampling: Callable[..., nn.Module] = Downsampling
    model: Callable[..., nn.Module] = ParCNetV2


def build(
    variant: str,
    *,
    interpolate: Any = False,
    global_kernel_sizes: Sequence[int] | None = None,
    num_classes: int = NUM_CLASSES,
    parts: Parts = Parts(),
) -> nn.Module:
    """An official variant assembled from ``parts``."""
    depths, dims = lookup(variant)
    kernels = tuple(global_kernel_sizes or GLOBAL_KERNEL_SIZES)
    return parts.model(depths, dims, kernels, num_classes, interpolate, parts)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    """The exact port of ``variant`` (1000 classes)."""
    return build(variant, interpolate=interpolate, global_kernel_sizes=global_kernel_sizes)
