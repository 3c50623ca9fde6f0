"""The project's own PyTorch implementation of the official ParCNetV2 model.

An independent implementation written from the spec (spec/SPEC.md) and the project notes on the
official code; it keeps the official module names, parameter names and ``state_dict`` order, so a
checkpoint of the official code loads into it unchanged (clause 2). It serves as the model the
NumPy reference is checked against, as a conformance backend and as the source of ONNX exports.

Parameter-free modules that are inert at inference in the official code (dropout, drop path,
layer scale, all identities there) are omitted; ``act`` (GELU) modules and the identity
``res_scale1/2`` of stages 0 and 1 are kept, so module names match the official ones.

Importing this module imports torch.

Shape legend: N batch, C channels, H height, W width, K kernel length. Layouts (clause 1): the
stem reads NCHW images; everything after it runs channels-last (NHWC) except inside the
convolutions, which work in NCHW.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from parcnetv2.errors import InputError, WeightsError
from parcnetv2.spec import architecture_defaults, get_variant

__all__ = [
    "BGU",
    "Downsampling",
    "LayerNormGeneral",
    "OversizeConv2d",
    "ParCNetV2",
    "ParCNetV2Block",
    "ParC_V2",
    "Scale",
    "build_model",
    "load_numpy_state_dict",
    "numpy_state_dict",
    "reparameterize",
]

Interpolate = bool | int


def _hwc_to_chw(x: torch.Tensor) -> torch.Tensor:
    """(N, H, W, C) -> (N, C, H, W) view (clause 1)."""
    return x.permute(0, 3, 1, 2)


def _chw_to_hwc(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H, W, C) view (clause 1)."""
    return x.permute(0, 2, 3, 1)


class LayerNormGeneral(nn.Module):
    """The official normalisation (clause 4.1): over the last axis, no bias.

    ``c = x - mean(x)``, ``y = c / max(||c||_2, eps) * weight``: the L2 norm of the centred
    vector, not the standard deviation (so ``y`` is a standard LayerNorm divided by sqrt(C)).
    Input (..., C) (NHWC feature maps); output the same shape. Parameter ``weight`` (C,).
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=-1, keepdim=True)
        length = torch.linalg.vector_norm(centred, ord=2, dim=-1, keepdim=True)
        return centred / length.clamp_min(self.eps) * self.weight

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class Scale(nn.Module):
    """Per-channel residual scale ``res_scale`` (clause 8.3): ``y = x * scale``.

    Input (..., C) channels-last; parameter ``scale`` (C,), initialised to ones.
    """

    def __init__(self, dim: int, init_value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class Downsampling(nn.Module):
    """Stem (``downsample_layers.0``) or downsampling layer (``downsample_layers.{1,2,3}``), clause 3.

    Stem (``stem=True``): input NCHW (N, Cin, H, W) -> ``conv`` -> NHWC -> ``post_norm``.
    Downsampling: input NHWC (N, H, W, Cin) -> ``pre_norm`` -> NCHW -> ``conv`` -> NHWC.
    Output NHWC (N, Ho, Wo, Cout), Ho = (H + 2p - k) // s + 1. ``conv`` has a bias; both norms are
    LayerNormGeneral (clause 4.1) without bias.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        padding: int,
        *,
        stem: bool,
        eps: float = 1e-6,
    ):
        super().__init__()
        self.stem = stem
        # Registration order gives the official state_dict order: pre_norm, conv, post_norm.
        if not stem:
            self.pre_norm = LayerNormGeneral(in_channels, eps)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
        if stem:
            self.post_norm = LayerNormGeneral(out_channels, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem:
            return self.post_norm(_chw_to_hwc(self.conv(x)))
        return _chw_to_hwc(self.conv(_hwc_to_chw(self.pre_norm(x))))


def _check_interpolate(interpolate: object) -> Interpolate:
    """Validate an oversized-conv mode (clause 5): False, True or an odd positive int S."""
    if interpolate is None or isinstance(interpolate, (bool, np.bool_)):
        return bool(interpolate)
    if isinstance(interpolate, (int, np.integer)) and interpolate > 0 and interpolate % 2 == 1:
        return int(interpolate)
    raise InputError(f"interpolate must be False, True or an odd positive int, got {interpolate!r}")


class OversizeConv2d(nn.Module):
    """Oversized separable depthwise convolution ``dwconv1`` (clause 5), no bias. NCHW in and out.

    Parameters ``conv_h.weight`` (C, 1, K, 1) and ``conv_w.weight`` (C, 1, 1, K). The vertical pass
    ``conv_h`` runs first, then the horizontal pass ``conv_w``; both are cross-correlations with
    zero padding and keep the size (N, C, H, W).

    ``interpolate``:
      * ``False`` (clause 5.1, official default): the K-tap kernels as they are, padding K // 2
        (K must be odd);
      * ``True`` (clause 5.2): per input, both 1-D kernels are resized by bilinear interpolation
        with ``align_corners=True`` to 2H - 1 (vertical) and 2W - 1 (horizontal) taps; padding
        H - 1 and W - 1;
      * an odd int S (clause 5.3): both kernels resized to S taps the same way; padding S // 2.
    """

    def __init__(self, dim: int, kernel_size: int, interpolate: Interpolate = False):
        super().__init__()
        interpolate = _check_interpolate(interpolate)
        if interpolate is False and kernel_size % 2 != 1:
            raise InputError(f"the oversized kernel size must be odd, got {kernel_size}")
        pad = kernel_size // 2 if interpolate is False else 0
        self.conv_h = nn.Conv2d(dim, dim, (kernel_size, 1), padding=(pad, 0), groups=dim, bias=False)
        self.conv_w = nn.Conv2d(dim, dim, (1, kernel_size), padding=(0, pad), groups=dim, bias=False)
        self.dim = dim
        self.kernel_size = kernel_size
        self.interpolate = interpolate

    def resized_kernels(self, size_h: int, size_w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The 1-D kernels resized to ``size_h`` and ``size_w`` taps (clauses 5.2, 5.3).

        Bilinear with ``align_corners=True`` (on a K x 1 / 1 x K "image", i.e. linear along the
        kernel). Returns weights of shapes (C, 1, size_h, 1) and (C, 1, 1, size_w).
        """
        k_h = F.interpolate(self.conv_h.weight, size=(size_h, 1), mode="bilinear", align_corners=True)
        k_w = F.interpolate(self.conv_w.weight, size=(1, size_w), mode="bilinear", align_corners=True)
        return k_h, k_w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.interpolate is False:
            return self.conv_w(self.conv_h(x))
        if self.interpolate is True:
            height, width = x.shape[-2:]
            k_h, k_w = self.resized_kernels(2 * height - 1, 2 * width - 1)
            pad_h, pad_w = height - 1, width - 1
        else:
            k_h, k_w = self.resized_kernels(self.interpolate, self.interpolate)
            pad_h = pad_w = self.interpolate // 2
        x = F.conv2d(x, k_h, padding=(pad_h, 0), groups=self.dim)
        return F.conv2d(x, k_w, padding=(0, pad_w), groups=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, kernel_size={self.kernel_size}, interpolate={self.interpolate}"


class ParC_V2(nn.Module):
    """Token mixer ``token_mixer`` (clause 8): spatial BGU with uniform local-global convolution.

    Input and output NHWC (N, H, W, C); the convolutions run in NCHW:
    ``pwconv1`` 1x1 C -> 2C (bias); split channels into x1 (first C) and x2 (last C);
    x2 = GELU(x2) (exact erf, clause 8.1); x2 = ``dwconv1``(x2) + ``dwconv2``(x2) (clauses 5, 6);
    ``pwconv2``(x1 * x2), 1x1 C -> C without bias.
    """

    def __init__(
        self,
        dim: int,
        global_kernel_size: int,
        *,
        expansion_ratio: int = 2,
        local_kernel_size: int = 7,
        interpolate: Interpolate = False,
    ):
        super().__init__()
        hidden = int(expansion_ratio * dim)
        half = hidden // 2
        self.pwconv1 = nn.Conv2d(dim, hidden, 1, bias=True)
        self.act = nn.GELU()
        self.dwconv1 = OversizeConv2d(half, global_kernel_size, interpolate)
        self.dwconv2 = nn.Conv2d(half, half, local_kernel_size, padding=local_kernel_size // 2, groups=half, bias=False)
        self.pwconv2 = nn.Conv2d(half, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.pwconv1(_hwc_to_chw(x)).chunk(2, dim=1)
        x2 = self.act(x2)
        x2 = self.dwconv1(x2) + self.dwconv2(x2)
        return _chw_to_hwc(self.pwconv2(x1 * x2))


class BGU(nn.Module):
    """Channel bifurcate gate unit ``mlp`` (clause 8.2). Input and output (..., C), channels-last.

    ``fc1`` Linear C -> rC (bias, r = mlp_ratio = 5); split the last axis into halves x1, x2;
    ``fc2``(x1 * GELU(x2)), Linear rC/2 -> C without bias.
    """

    def __init__(self, dim: int, mlp_ratio: int = 5):
        super().__init__()
        hidden = int(mlp_ratio * dim)
        self.fc1 = nn.Linear(dim, hidden, bias=True)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden // 2, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(x1 * self.act(x2))


class ParCNetV2Block(nn.Module):
    """One block ``stages.{i}.{j}`` (clause 8.4). Input and output NHWC (N, H, W, C).

    ``x = res_scale1(x) + token_mixer(norm1(x))``; ``x = res_scale2(x) + mlp(norm2(x))``.
    ``res_scale1/2`` are Scale modules (clause 8.3) when ``res_scale`` is set, else identities.
    """

    def __init__(
        self,
        dim: int,
        global_kernel_size: int,
        *,
        res_scale: bool,
        interpolate: Interpolate = False,
        defaults: Mapping[str, object] | None = None,
    ):
        super().__init__()
        d = architecture_defaults() if defaults is None else defaults
        eps = float(d["norm_eps"])
        self.norm1 = LayerNormGeneral(dim, eps)
        self.token_mixer = ParC_V2(
            dim,
            global_kernel_size,
            expansion_ratio=int(d["expansion_ratio"]),
            local_kernel_size=int(d["local_kernel_size"]),
            interpolate=interpolate,
        )
        self.res_scale1 = Scale(dim) if res_scale else nn.Identity()
        self.norm2 = LayerNormGeneral(dim, eps)
        self.mlp = BGU(dim, int(d["mlp_ratio"]))
        self.res_scale2 = Scale(dim) if res_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.res_scale1(x) + self.token_mixer(self.norm1(x))
        return self.res_scale2(x) + self.mlp(self.norm2(x))


class ParCNetV2(nn.Module):
    """The whole network (clause 2): stem, 4 stages with downsampling, head (clause 8.5).

    ``forward``: images NCHW (N, in_chans, H, W) -> logits (N, num_classes).
    ``forward_features``: NCHW images -> ``norm``(mean over H and W of the last NHWC map), (N, C).
    ``norm`` is the standard LayerNorm with bias, eps 1e-6 (clause 4.2); ``head`` a Linear.
    Parameters are left as PyTorch creates them; ``build_model`` applies the official init.
    """

    def __init__(
        self,
        depths: Sequence[int],
        dims: Sequence[int],
        *,
        num_classes: int = 1000,
        global_kernel_sizes: Sequence[int] | None = None,
        interpolate: Interpolate | Sequence[Interpolate] = False,
    ):
        super().__init__()
        d = architecture_defaults()
        depths, dims = [int(v) for v in depths], [int(v) for v in dims]
        num_stages = len(depths)
        res_scale_stages = list(d["res_scale_stages"])
        if not 1 <= num_stages <= len(res_scale_stages) or len(dims) != num_stages:
            raise InputError(
                f"depths and dims must give the same number of stages (1 to "
                f"{len(res_scale_stages)}), got depths={depths}, dims={dims}"
            )
        if any(c < 1 or c % 2 for c in dims):
            raise InputError(f"dims must be positive and even (the BGU halves 5C), got {dims}")
        if any(n < 0 for n in depths):
            raise InputError(f"depths must be non-negative, got {depths}")
        kernels = list(d["global_kernel_sizes"] if global_kernel_sizes is None else global_kernel_sizes)
        kernels = kernels[:num_stages] if global_kernel_sizes is None else kernels
        if len(kernels) != num_stages:
            raise InputError(f"need one global kernel size per stage, got {kernels}")
        if isinstance(interpolate, (list, tuple)):
            modes = [_check_interpolate(m) for m in interpolate]
            if len(modes) != num_stages:
                raise InputError(f"need one interpolate mode per stage, got {list(interpolate)}")
        else:
            modes = [_check_interpolate(interpolate)] * num_stages

        self.num_classes = num_classes
        self.num_stage = num_stages
        self.depths, self.dims = tuple(depths), tuple(dims)
        self.global_kernel_sizes = tuple(int(k) for k in kernels)
        self.interpolate = tuple(modes)

        eps = float(d["norm_eps"])
        stem, down = d["stem"], d["downsample"]
        in_dims = [int(d["in_chans"])] + dims[:-1]
        self.downsample_layers = nn.ModuleList(
            Downsampling(
                in_dims[i],
                dims[i],
                int(cfg["kernel_size"]),
                int(cfg["stride"]),
                int(cfg["padding"]),
                stem=i == 0,
                eps=eps,
            )
            for i, cfg in enumerate([stem] + [down] * (num_stages - 1))
        )
        self.stages = nn.ModuleList(
            nn.Sequential(
                *(
                    ParCNetV2Block(
                        dims[i],
                        self.global_kernel_sizes[i],
                        res_scale=bool(res_scale_stages[i]),
                        interpolate=modes[i],
                        defaults=d,
                    )
                    for _ in range(depths[i])
                )
            )
            for i in range(num_stages)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=eps)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW images (N, 3, H, W) -> pooled, normalised features (N, C_last) (clause 8.5)."""
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        return self.norm(x.mean(dim=(1, 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW images (N, 3, H, W) -> logits (N, num_classes) (clauses 2, 8.5)."""
        return self.head(self.forward_features(x))


def _official_init(model: nn.Module, generator: torch.Generator | None) -> None:
    """The official initialisation of Conv2d/Linear: weights truncated normal, std 0.02, absolute
    cutoffs -2 and 2 (timm's convention); biases zero. (Norms and scales: see build_model.)"""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, std=0.02, a=-2.0, b=2.0, generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def build_model(
    variant: str | None = None,
    *,
    num_classes: int = 1000,
    depths: Sequence[int] | None = None,
    dims: Sequence[int] | None = None,
    global_kernel_sizes: Sequence[int] | None = None,
    interpolate: Interpolate | Sequence[Interpolate] = False,
    dtype: torch.dtype = torch.float32,
    seed: int | None = None,
    init: bool = True,
) -> ParCNetV2:
    """A ParCNetV2 in eval mode, initialised like the official code (clauses 2 and 9).

    ``variant`` names an official variant (``parcnetv2_xt``, ``_tiny``, ``_small``, ``_base``;
    data from ``parcnetv2.spec``); ``depths`` / ``dims`` override it, or define a custom model
    when ``variant`` is None (then both are required). ``global_kernel_sizes`` defaults to the
    spec's per-stage sizes; ``interpolate`` is the oversized-conv mode (clause 5), one for all
    stages or one per stage (the official constructor only builds ``False``). ``seed`` makes the
    random initialisation reproducible (else torch's global generator is used). ``init=False``
    skips initialisation and leaves the parameters uninitialised (fast; fill them with
    ``load_numpy_state_dict`` or ``load_state_dict``).
    """
    if variant is not None:
        v = get_variant(variant)
        depths = v.depths if depths is None else depths
        dims = v.dims if dims is None else dims
    elif depths is None or dims is None:
        raise InputError("build_model needs a variant name or both depths and dims")
    with torch.device("meta"):  # no PyTorch default init: it would be overwritten anyway
        model = ParCNetV2(
            depths,
            dims,
            num_classes=num_classes,
            global_kernel_sizes=global_kernel_sizes,
            interpolate=interpolate,
        )
    model = model.to_empty(device="cpu").to(dtype)
    if init:
        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            _official_init(model, generator)
            for module in model.modules():
                if isinstance(module, (LayerNormGeneral, nn.LayerNorm)):
                    nn.init.ones_(module.weight)
                    if getattr(module, "bias", None) is not None:
                        nn.init.zeros_(module.bias)
                elif isinstance(module, Scale):
                    nn.init.ones_(module.scale)
    return model.eval()


def reparameterize(k_h: torch.Tensor, k_w: torch.Tensor, k_local: torch.Tensor) -> torch.Tensor:
    """The dense depthwise kernel equal to ``dwconv1 + dwconv2`` (clause 7).

    k_h (C, 1, K, 1), k_w (C, 1, 1, K), k_local (C, 1, k, k) with k <= K, both odd.
    Returns (C, 1, K, K): ``outer(k_h[c], k_w[c])`` with ``k_local[c]`` added at its centre; use it
    with zero padding K // 2.
    """
    size, small = k_h.shape[2], k_local.shape[2]
    if k_w.shape[3] != size or small > size or size % 2 != 1 or small % 2 != 1:
        raise InputError(
            f"reparameterize needs odd K x 1, 1 x K and k x k kernels with k <= K, got "
            f"{tuple(k_h.shape)}, {tuple(k_w.shape)}, {tuple(k_local.shape)}"
        )
    dense = k_h * k_w  # (C,1,K,1) * (C,1,1,K) -> (C,1,K,K)
    off = (size - small) // 2
    dense[:, :, off : off + small, off : off + small] += k_local
    return dense


def numpy_state_dict(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's ``state_dict`` as NumPy arrays (copies), official names and order (clause 2).

    Each array keeps its tensor's shape (PyTorch layouts: conv weights (Cout, Cin/groups, KH, KW),
    linear weights (Cout, Cin)) and dtype.
    """
    return {name: t.detach().cpu().numpy().copy() for name, t in model.state_dict().items()}


def load_numpy_state_dict(model: nn.Module, sd: Mapping[str, np.ndarray], strict: bool = True) -> nn.Module:
    """Copy NumPy arrays, under the official names (clause 2), into the model's parameters, cast
    to each parameter's dtype. Shapes are PyTorch's, as ``numpy_state_dict`` returns them.

    With ``strict`` every model key must be given and no other key may be; shapes must always
    match. Raises WeightsError naming the offending keys. Returns the model.
    """
    own = model.state_dict()
    if strict:
        missing = [k for k in own if k not in sd]
        unexpected = [k for k in sd if k not in own]
        if missing or unexpected:
            raise WeightsError(f"state_dict mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    bad = [
        f"{k}: {tuple(np.shape(sd[k]))} != {tuple(t.shape)}"
        for k, t in own.items()
        if k in sd and tuple(np.shape(sd[k])) != tuple(t.shape)
    ]
    if bad:
        raise WeightsError("state_dict shape mismatch: " + "; ".join(bad[:5]))
    with torch.no_grad():
        for k, t in own.items():
            if k in sd:
                t.copy_(torch.as_tensor(np.asarray(sd[k])).to(t.dtype))
    return model
