"""Every ParCNetV2 component as a NumPy function of (parameters, input) (spec clauses 3-8).

``params`` maps the component's own parameter names (the official names with the module prefix
removed, e.g. ``"pwconv1.weight"`` for a token mixer) to arrays. Layouts follow the official
code: the stem takes NCHW, everything after it is NHWC, convolutions run in NCHW inside.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from parcnetv2.errors import InputError
from parcnetv2.reference.activations import gelu
from parcnetv2.reference.convolution import conv2d, depthwise_conv2d, linear, pointwise_conv2d
from parcnetv2.reference.dtypes import as_input, cast
from parcnetv2.reference.norms import layer_norm, layer_norm_general
from parcnetv2.reference.oversized import instance_kernels, oversized_conv
from parcnetv2.reference.reparameterization import reparameterize

Params = Mapping[str, np.ndarray]


def subtree(params: Params, prefix: str) -> dict[str, np.ndarray]:
    """The parameters under ``prefix.`` with that prefix removed."""
    if not prefix:
        return dict(params)
    head = prefix + "."
    return {k[len(head) :]: v for k, v in params.items() if k.startswith(head)}


def nhwc_to_nchw(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 3, 1, 2)


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 2, 3, 1)


def _require_rank(x: np.ndarray, rank: int, layout: str, op: str) -> np.ndarray:
    x = as_input(x)
    if x.ndim != rank:
        raise InputError(f"{op}: input must be {layout} (rank {rank}), got shape {x.shape}")
    return x


def downsampling(params: Params, x: np.ndarray, *, stride: int, padding: int, stem: bool, eps: float) -> np.ndarray:
    """Stem (``stem=True``: NCHW in, conv, NHWC, post_norm) or downsampling layer (NHWC in,
    pre_norm, NCHW, conv, NHWC) (clause 3). Returns NHWC (N, Ho, Wo, Cout)."""
    x = _require_rank(x, 4, "NCHW" if stem else "NHWC", "downsampling")
    if not stem:
        x = nhwc_to_nchw(layer_norm_general(x, params["pre_norm.weight"], eps))
    x = nchw_to_nhwc(conv2d(x, params["conv.weight"], params["conv.bias"], stride, padding))
    return layer_norm_general(x, params["post_norm.weight"], eps) if stem else x


def parc_spatial(params: Params, x: np.ndarray, *, interpolate: bool | int, local_padding: int) -> np.ndarray:
    """OC(x) + DW7(x), the spatial part of the token mixer (clauses 5 and 6). x: (N, C, H, W)."""
    return oversized_conv(
        x, params["dwconv1.conv_h.weight"], params["dwconv1.conv_w.weight"], interpolate
    ) + depthwise_conv2d(x, params["dwconv2.weight"], padding=(local_padding, local_padding))


def parc_spatial_reparameterized(
    params: Params, x: np.ndarray, *, interpolate: bool | int, local_padding: int
) -> np.ndarray:
    """OC(x) + DW7(x) as one dense depthwise conv with the merged kernel (clause 7.2).

    The kernels of the input's size (clause 5) are merged, so every oversized-conv mode works.
    x: (N, C, H, W) -> (N, C, H, W).
    """
    x = as_input(x)
    kh, kw, _, _ = instance_kernels(
        cast(params["dwconv1.conv_h.weight"], x.dtype),
        cast(params["dwconv1.conv_w.weight"], x.dtype),
        x.shape[2],
        x.shape[3],
        interpolate,
    )
    k7 = cast(params["dwconv2.weight"], x.dtype)
    if k7.shape[2] != 2 * local_padding + 1:
        raise InputError(f"the local kernel {k7.shape} does not match padding {local_padding}")
    dense = reparameterize(kh[:, None, :, None], kw[:, None, None, :], k7)
    return depthwise_conv2d(x, dense)


def token_mixer(
    params: Params,
    x: np.ndarray,
    *,
    interpolate: bool | int,
    local_padding: int,
    reparameterized: bool = False,
) -> np.ndarray:
    """ParC V2 token mixer (clause 8.1): NHWC (N, H, W, C) in and out.

    pwconv1 (C -> 2C, bias); split channels x1 | x2; x2 = GELU(x2); x2 = OC(x2) + DW7(x2);
    x = x1 * x2; pwconv2 (C -> C, no bias). With ``reparameterized`` the spatial part uses the
    merged dense kernel (clause 7.2).
    """
    x = nhwc_to_nchw(_require_rank(x, 4, "NHWC", "token_mixer"))
    x = pointwise_conv2d(x, params["pwconv1.weight"], params["pwconv1.bias"])
    half = x.shape[1] // 2
    gate, x2 = x[:, :half], gelu(x[:, half:])
    spatial = parc_spatial_reparameterized if reparameterized else parc_spatial
    x2 = spatial(params, x2, interpolate=interpolate, local_padding=local_padding)
    return nchw_to_nhwc(pointwise_conv2d(gate * x2, params["pwconv2.weight"]))


def bgu(params: Params, x: np.ndarray) -> np.ndarray:
    """Channel bifurcate gate unit, the block's MLP (clause 8.2): (..., C) -> (..., C).

    fc1 (C -> 5C, bias); split the last axis x1 | x2 (2.5C each); x1 * GELU(x2); fc2 (no bias).
    """
    x = linear(x, params["fc1.weight"], params["fc1.bias"])
    half = x.shape[-1] // 2
    return linear(x[..., :half] * gelu(x[..., half:]), params["fc2.weight"])


def scale(params: Params, x: np.ndarray) -> np.ndarray:
    """Scale (res_scale, clause 8.3): x * scale over the last axis, x (..., C)."""
    x = as_input(x)
    return x * cast(params["scale"], x.dtype)


def block(
    params: Params,
    x: np.ndarray,
    *,
    res_scale: bool,
    eps: float,
    interpolate: bool | int,
    local_padding: int,
    reparameterized: bool = False,
) -> np.ndarray:
    """ParCNetV2 block (clause 8.4), NHWC (N, H, W, C) in and out:
    x = res_scale1(x) + token_mixer(norm1(x)); x = res_scale2(x) + mlp(norm2(x)).
    ``res_scale`` False means both scales are identities (stages 0 and 1 of the official model)."""
    x = _require_rank(x, 4, "NHWC", "block")
    mixed = token_mixer(
        subtree(params, "token_mixer"),
        layer_norm_general(x, params["norm1.weight"], eps),
        interpolate=interpolate,
        local_padding=local_padding,
        reparameterized=reparameterized,
    )
    x = (scale(subtree(params, "res_scale1"), x) if res_scale else x) + mixed
    gated = bgu(subtree(params, "mlp"), layer_norm_general(x, params["norm2.weight"], eps))
    return (scale(subtree(params, "res_scale2"), x) if res_scale else x) + gated


def stage(params: Params, x: np.ndarray, *, depth: int, **block_settings) -> np.ndarray:
    """One stage: ``depth`` blocks in sequence (clause 8.4), NHWC in and out."""
    for j in range(depth):
        x = block(subtree(params, str(j)), x, **block_settings)
    return x


def pooled_norm(params: Params, features: np.ndarray, eps: float) -> np.ndarray:
    """End of forward_features (clause 8.5): (N, H, W, C) -> mean over H, W -> LayerNorm ``norm``
    (standard form, weight and bias) -> (N, C). The ``head`` Linear follows it in the model."""
    features = _require_rank(features, 4, "NHWC", "pooled_norm")
    return layer_norm(features.mean(axis=(1, 2)), params["norm.weight"], params["norm.bias"], eps)


def _layer_norm_general(params: Params, x: np.ndarray, *, eps: float) -> np.ndarray:
    return layer_norm_general(x, params["weight"], eps)


def _layer_norm(params: Params, x: np.ndarray, *, eps: float) -> np.ndarray:
    return layer_norm(x, params["weight"], params["bias"], eps)


def _conv2d(params: Params, x: np.ndarray, *, stride: int, padding: int) -> np.ndarray:
    return conv2d(x, params["weight"], params["bias"], stride, padding)


def _pointwise(params: Params, x: np.ndarray) -> np.ndarray:
    return pointwise_conv2d(x, params["weight"], params.get("bias"))


def _depthwise(params: Params, x: np.ndarray, *, padding: tuple[int, int]) -> np.ndarray:
    return depthwise_conv2d(x, params["weight"], params.get("bias"), padding)


def _oversized(params: Params, x: np.ndarray, *, interpolate: bool | int) -> np.ndarray:
    return oversized_conv(x, params["conv_h.weight"], params["conv_w.weight"], interpolate)


def _linear(params: Params, x: np.ndarray) -> np.ndarray:
    return linear(x, params["weight"], params.get("bias"))


def _gelu(params: Params, x: np.ndarray) -> np.ndarray:
    return gelu(x)


# Component kinds of ``architecture.components`` -> function(params, x, **settings).
COMPONENT_FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "downsampling": downsampling,
    "conv2d": _conv2d,
    "layer_norm_general": _layer_norm_general,
    "layer_norm": _layer_norm,
    "token_mixer": token_mixer,
    "pointwise_conv2d": _pointwise,
    "gelu": _gelu,
    "oversized_conv": _oversized,
    "depthwise_conv2d": _depthwise,
    "bgu": bgu,
    "linear": _linear,
    "scale": scale,
    "block": block,
    "stage": stage,
}
