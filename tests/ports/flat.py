"""Exact port, style (c): flat and functional.

The parameters sit in a tree of plain ``nn.Module()`` containers built from the official
name/shape list; no component has a class of its own. ``forward`` reads them as one flat
``{name: tensor}`` dict and runs the pure method ``run``. Pointwise convolutions and linears are
fused ``addmm``/``matmul`` calls on (pixels, channels) matrices in NHWC, so their summation order
differs from a convolution's; only the depthwise and strided convolutions use ``F.conv2d``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .variants import GLOBAL_KERNEL_SIZES, NUM_CLASSES, RES_SCALE_STAGES, lookup

Tensor = torch.Tensor
EPS = 1e-6


@dataclass(frozen=True)
class Arch:
    depths: tuple[int, ...]
    dims: tuple[int, ...]
    kernels: tuple[int, ...]
    interpolate: Any = False


def official_shapes(arch: Arch) -> dict[str, tuple[int, ...]]:
    """Official parameter names and shapes, in the official order."""
    d = arch.dims
    shapes: dict[str, tuple[int, ...]] = {
        "downsample_layers.0.conv.weight": (d[0], 3, 7, 7),
        "downsample_layers.0.conv.bias": (d[0],),
        "downsample_layers.0.post_norm.weight": (d[0],),
    }
    for i in range(1, len(d)):
        shapes[f"downsample_layers.{i}.pre_norm.weight"] = (d[i - 1],)
        shapes[f"downsample_layers.{i}.conv.weight"] = (d[i], d[i - 1], 3, 3)
        shapes[f"downsample_layers.{i}.conv.bias"] = (d[i],)
    for i, (depth, c, k) in enumerate(zip(arch.depths, d, arch.kernels)):
        for j in range(depth):
            b = f"stages.{i}.{j}."
            shapes[b + "norm1.weight"] = (c,)
            shapes[b + "token_mixer.pwconv1.weight"] = (2 * c, c, 1, 1)
            shapes[b + "token_mixer.pwconv1.bias"] = (2 * c,)
            shapes[b + "token_mixer.dwconv1.conv_h.weight"] = (c, 1, k, 1)
            shapes[b + "token_mixer.dwconv1.conv_w.weight"] = (c, 1, 1, k)
            shapes[b + "token_mixer.dwconv2.weight"] = (c, 1, 7, 7)
            shapes[b + "token_mixer.pwconv2.weight"] = (c, c, 1, 1)
            if RES_SCALE_STAGES[i]:
                shapes[b + "res_scale1.scale"] = (c,)
            shapes[b + "norm2.weight"] = (c,)
            shapes[b + "mlp.fc1.weight"] = (5 * c, c)
            shapes[b + "mlp.fc1.bias"] = (5 * c,)
            shapes[b + "mlp.fc2.weight"] = (c, 5 * c // 2)
            if RES_SCALE_STAGES[i]:
                shapes[b + "res_scale2.scale"] = (c,)
    shapes["norm.weight"] = (d[-1],)
    shapes["norm.bias"] = (d[-1],)
    shapes["head.weight"] = (NUM_CLASSES, d[-1])
    shapes["head.bias"] = (NUM_CLASSES,)
    return shapes


def dense(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """x @ w.T (+ b) on the last axis, as one (pixels, channels) GEMM; 1x1 conv weights accepted."""
    w2 = w.reshape(w.shape[0], -1)
    rows = x.reshape(-1, x.shape[-1])
    out = torch.addmm(b, rows, w2.t()) if b is not None else rows @ w2.t()
    return out.reshape(*x.shape[:-1], w2.shape[0])


def resized(k: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(k, size=size, mode="bilinear", align_corners=True)


class FlatParCNetV2(nn.Module):
    """One module; parameters in plain containers under the official names, computed by ``run``."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.arch = arch
        for name, shape in official_shapes(arch).items():
            *path, leaf = name.split(".")
            owner: nn.Module = self
            for part in path:
                if not hasattr(owner, part):
                    owner.add_module(part, nn.Module())
                owner = getattr(owner, part)
            init = torch.zeros(shape) if leaf == "bias" else torch.ones(shape)
            if len(shape) > 1:
                init = nn.init.trunc_normal_(torch.empty(shape), std=0.02)
            owner.register_parameter(leaf, nn.Parameter(init))

    def forward(self, x: Tensor) -> Tensor:
        return self.run(dict(self.named_parameters()), x)

    @staticmethod
    def lng(x: Tensor, w: Tensor) -> Tensor:
        c = x - x.mean(-1, keepdim=True)
        inv = torch.rsqrt(torch.square(c).sum(-1, keepdim=True)).clamp_max(1.0 / EPS)
        return c * inv * w

    @staticmethod
    def gelu(x: Tensor) -> Tensor:
        return F.gelu(x)

    def spatial(self, p: Mapping[str, Tensor], m: str, x: Tensor) -> Tensor:
        """OC + DW7 of NCHW x with the token mixer ``m``'s kernels."""
        c, h, w = x.shape[1:]
        k_h, k_w = p[m + "dwconv1.conv_h.weight"], p[m + "dwconv1.conv_w.weight"]
        interpolate = self.arch.interpolate
        if interpolate is True:
            k_h, k_w = resized(k_h, (2 * h - 1, 1)), resized(k_w, (1, 2 * w - 1))
        elif interpolate:
            k_h, k_w = resized(k_h, (interpolate, 1)), resized(k_w, (1, interpolate))
        oc = F.conv2d(x, k_h, padding=(k_h.shape[2] // 2, 0), groups=c)
        oc = F.conv2d(oc, k_w, padding=(0, k_w.shape[3] // 2), groups=c)
        return oc + F.conv2d(x, p[m + "dwconv2.weight"], padding=3, groups=c)

    def block(self, p: Mapping[str, Tensor], b: str, x: Tensor) -> Tensor:
        c = x.shape[-1]
        m = b + "token_mixer."
        t = dense(self.lng(x, p[b + "norm1.weight"]), p[m + "pwconv1.weight"], p[m + "pwconv1.bias"])
        g = self.gelu(t[..., c:]).permute(0, 3, 1, 2)
        t = t[..., :c] * self.spatial(p, m, g).permute(0, 2, 3, 1)
        scale1 = p.get(b + "res_scale1.scale")
        x = (x if scale1 is None else x * scale1) + dense(t, p[m + "pwconv2.weight"])
        h = dense(self.lng(x, p[b + "norm2.weight"]), p[b + "mlp.fc1.weight"], p[b + "mlp.fc1.bias"])
        half = h.shape[-1] // 2
        gated = h[..., :half] * self.gelu(h[..., half:])
        scale2 = p.get(b + "res_scale2.scale")
        return (x if scale2 is None else x * scale2) + dense(gated, p[b + "mlp.fc2.weight"])

    def run(self, p: Mapping[str, Tensor], x: Tensor) -> Tensor:
        """Logits (N, classes) of NCHW images x, from the flat official-name dict ``p``."""
        for i, depth in enumerate(self.arch.depths):
            d = f"downsample_layers.{i}."
            if i == 0:
                x = F.conv2d(x, p[d + "conv.weight"], p[d + "conv.bias"], stride=4, padding=2)
                x = self.lng(x.permute(0, 2, 3, 1), p[d + "post_norm.weight"])
            else:
                x = self.lng(x, p[d + "pre_norm.weight"]).permute(0, 3, 1, 2)
                x = F.conv2d(x, p[d + "conv.weight"], p[d + "conv.bias"], stride=2, padding=1).permute(0, 2, 3, 1)
            for j in range(depth):
                x = self.block(p, f"stages.{i}.{j}.", x)
        pooled = x.mean(dim=(1, 2))
        pooled = F.layer_norm(pooled, pooled.shape[-1:], p["norm.weight"], p["norm.bias"], eps=EPS)
        return dense(pooled, p["head.weight"], p["head.bias"])


def arch_of(variant: str, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> Arch:
    depths, dims = lookup(variant)
    return Arch(depths, dims, tuple(global_kernel_sizes or GLOBAL_KERNEL_SIZES), interpolate)


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return FlatParCNetV2(arch_of(variant, interpolate, global_kernel_sizes))
