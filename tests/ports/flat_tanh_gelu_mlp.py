"""Broken port (semantics), on ``flat`` (no submodules to probe): the channel BGU uses the tanh
GELU; the token mixer uses the exact one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import flat


class TanhMlpFlatParCNetV2(flat.FlatParCNetV2):
    def block(self, p: Mapping[str, torch.Tensor], b: str, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[-1]
        m = b + "token_mixer."
        t = flat.dense(self.lng(x, p[b + "norm1.weight"]), p[m + "pwconv1.weight"], p[m + "pwconv1.bias"])
        g = self.gelu(t[..., c:]).permute(0, 3, 1, 2)
        t = t[..., :c] * self.spatial(p, m, g).permute(0, 2, 3, 1)
        scale1 = p.get(b + "res_scale1.scale")
        x = (x if scale1 is None else x * scale1) + flat.dense(t, p[m + "pwconv2.weight"])
        h = flat.dense(self.lng(x, p[b + "norm2.weight"]), p[b + "mlp.fc1.weight"], p[b + "mlp.fc1.bias"])
        half = h.shape[-1] // 2
        gated = h[..., :half] * F.gelu(h[..., half:], approximate="tanh")
        scale2 = p.get(b + "res_scale2.scale")
        return (x if scale2 is None else x * scale2) + flat.dense(gated, p[b + "mlp.fc2.weight"])


def factory(variant: str, *, interpolate: Any = False, global_kernel_sizes: Sequence[int] | None = None) -> nn.Module:
    return TanhMlpFlatParCNetV2(flat.arch_of(variant, interpolate, global_kernel_sizes))
