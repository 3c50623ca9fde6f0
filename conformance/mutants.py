"""Deliberately broken and legitimately different backends: the sensitivity suite (spec clause 14.10).

Each backend is the NumPy reference in float32 (``backend_numpy.ReferenceBackend``) with one
change patched into the reference's modules for the duration of its calls. The harness must
reject every one of ``MUTANTS`` (``pytest conformance --backend
parcnetv2.conformance.mutants:NAME`` exits with 1) and accept every one of ``LEGITIMATE``: other
evaluation orders and layouts of the same mathematics, which float32 rounding alone separates from
the reference. ``tests/test_conformance_sensitivity.py`` runs them all and the README reports
the kill rate.

Shape legend: N, C, H, W, K. All functions here take the layouts of the reference functions
they replace.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import erf

from parcnetv2 import reference as R
from parcnetv2.conformance.backend_numpy import ReferenceBackend
from parcnetv2.reference.architecture import parameter_shapes as official_shapes
from parcnetv2.reference.components import REFERENCE, NumpyArithmetic, subtree
from parcnetv2.reference.oversized import instance_kernels

__all__ = ["LEGITIMATE", "MUTANTS", "suite_args"]

# Module functions replaced by ``patches`` (the others are ``overrides`` of the composition).
_RESIZE = "parcnetv2.reference.oversized.resize_kernel"
_SHAPES = "parcnetv2.reference.architecture.parameter_shapes"


# ---- broken operations ---------------------------------------------------------------------


def _standard_layer_norm(x, weight, eps=1e-6):
    """LayerNorm's divisor sqrt(var + eps) where the official norm divides by ||c||_2 (clause 4.1)."""
    centred = x - x.mean(axis=-1, keepdims=True)
    return (
        centred / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + x.dtype.type(eps)) * weight.astype(x.dtype)
    )


def _lng_eps_inside_sqrt(x, weight, eps=1e-6):
    """c / sqrt(||c||^2 + eps): eps in the wrong place."""
    centred = x - x.mean(axis=-1, keepdims=True)
    return (
        centred
        / np.sqrt(np.sum(centred * centred, axis=-1, keepdims=True) + x.dtype.type(eps))
        * weight.astype(x.dtype)
    )


def _lng_eps_added(x, weight, eps=1e-6):
    """c / (||c|| + eps): eps added instead of max(||c||, eps)."""
    centred = x - x.mean(axis=-1, keepdims=True)
    return (
        centred
        / (np.sqrt(np.sum(centred * centred, axis=-1, keepdims=True)) + x.dtype.type(eps))
        * weight.astype(x.dtype)
    )


def _tanh_gelu(x):
    """The tanh approximation of GELU where the official model uses erf (clause 8.1)."""
    c = x.dtype.type(math.sqrt(2.0 / math.pi))
    return x.dtype.type(0.5) * x * (1 + np.tanh(c * (x + x.dtype.type(0.044715) * x**3)))


def _swap_halves(array: np.ndarray, axis: int) -> np.ndarray:
    half = array.shape[axis] // 2
    return np.concatenate([np.take(array, range(half, 2 * half), axis), np.take(array, range(half), axis)], axis)


def _mixer_gate_wrong_half(params, x, **settings):
    """Token mixer gating with the second half and convolving the first (clause 8.1)."""
    swapped = dict(params)
    swapped["pwconv1.weight"] = _swap_halves(params["pwconv1.weight"], 0)
    swapped["pwconv1.bias"] = _swap_halves(params["pwconv1.bias"], 0)
    return _ORIGINAL["token_mixer"](swapped, x, **settings)


def _bgu_gate_wrong_half(params, x, **settings):
    """Channel BGU computing GELU(x1) * x2 instead of x1 * GELU(x2) (clause 8.2)."""
    swapped = dict(params)
    swapped["fc1.weight"] = _swap_halves(params["fc1.weight"], 0)
    swapped["fc1.bias"] = _swap_halves(params["fc1.bias"], 0)
    return _ORIGINAL["bgu"](swapped, x, **settings)


def _mixer_without_pwconv1_bias(params, x, **settings):
    """Token mixer ignoring pwconv1's bias."""
    return _ORIGINAL["token_mixer"]({**params, "pwconv1.bias": np.zeros_like(params["pwconv1.bias"])}, x, **settings)


def _pad_conv(x, kh, kw, padding, mode):
    """Depthwise correlation of NCHW ``x`` with 1-D kernels kh (C, Kh) then kw (C, Kw) after
    padding with numpy ``mode``."""
    ph, pw = padding
    y = np.pad(x, ((0, 0), (0, 0), (ph, ph), (0, 0)), mode=mode)
    y = R.depthwise_conv2d(y, kh[:, None, :, None], padding=(0, 0))
    y = np.pad(y, ((0, 0), (0, 0), (0, 0), (pw, pw)), mode=mode)
    return R.depthwise_conv2d(y, kw[:, None, None, :], padding=(0, 0))


def _circular_oversized(x, k_h, k_w, interpolate=False):
    """OC with circular padding where the official model pads with zeros (clause 5.1)."""
    x = np.asarray(x)
    kh, kw, ph, pw = instance_kernels(k_h.astype(x.dtype), k_w.astype(x.dtype), x.shape[2], x.shape[3], interpolate)
    return _pad_conv(x, kh, kw, (ph, pw), "wrap")


def _flipped_oversized(x, k_h, k_w, interpolate=False):
    """OC as a true convolution (kernels flipped) instead of a cross-correlation."""
    return _ORIGINAL["oversized_conv"](x, k_h[:, :, ::-1], k_w[..., ::-1], interpolate)


def _vertical_only_oversized(x, k_h, k_w, interpolate=False):
    """OC without its horizontal pass conv_w."""
    x = np.asarray(x)
    kh, _, ph, _ = instance_kernels(k_h.astype(x.dtype), k_w.astype(x.dtype), x.shape[2], x.shape[3], interpolate)
    return R.depthwise_conv2d(x, kh[:, None, :, None], padding=(ph, 0))


def _interpolate_ignored(x, k_h, k_w, interpolate=False):
    """OC always using the stored kernels, whatever the interpolate mode (clause 5.2, 5.3)."""
    return _ORIGINAL["oversized_conv"](x, k_h, k_w, False)


def _resize_half_pixel(kernel, size):
    """Kernel resize with align_corners=False (half-pixel centres) instead of True (clause 5.2)."""
    k = kernel.shape[-1]
    position = np.clip((np.arange(size) + 0.5) * k / size - 0.5, 0, k - 1).astype(kernel.dtype)
    lo = np.minimum(np.floor(position).astype(np.int64), k - 1)
    hi = np.minimum(lo + 1, k - 1)
    frac = position - lo
    return kernel[..., lo] * (1 - frac) + kernel[..., hi] * frac


def _shifted_local(x, weight, bias=None, padding=None):
    """The 7x7 conv padded 2 rows above and 4 below instead of 3 and 3 (clause 6)."""
    if weight.shape[2:] == (7, 7) and (padding is None or tuple(padding) == (3, 3)):
        x = np.pad(np.asarray(x), ((0, 0), (0, 0), (2, 4), (3, 3)))
        return _ORIGINAL["depthwise_conv2d"](x, weight, bias, (0, 0))
    return _ORIGINAL["depthwise_conv2d"](x, weight, bias, padding)


def _identity_scale(params, x):
    """res_scale left out: the residual is not multiplied by its scale (clause 8.3)."""
    return np.asarray(x)


def _block_scale_on_branch(params, x, *, res_scale, eps, interpolate, local_padding, reparameterized=False, **_):
    """Block scaling the branch instead of the residual input (clause 8.4)."""
    mixed = REFERENCE.token_mixer(
        subtree(params, "token_mixer"),
        REFERENCE.layer_norm_general(x, params["norm1.weight"], eps),
        interpolate=interpolate,
        local_padding=local_padding,
        reparameterized=reparameterized,
    )
    x = x + (REFERENCE.scale(subtree(params, "res_scale1"), mixed) if res_scale else mixed)
    gated = REFERENCE.bgu(subtree(params, "mlp"), REFERENCE.layer_norm_general(x, params["norm2.weight"], eps))
    return x + (REFERENCE.scale(subtree(params, "res_scale2"), gated) if res_scale else gated)


def _layer_norm_without_bias(x, weight, bias, eps=1e-6):
    """The head LayerNorm ignoring its bias (clause 4.2)."""
    return _ORIGINAL["layer_norm"](x, weight, np.zeros_like(bias), eps)


def _shapes_with_fc2_bias(config):
    """Parameter names with an fc2 bias, which the official BGU lacks (clause 2.2)."""
    shapes = {}
    for name, shape in official_shapes(config).items():
        shapes[name] = shape
        if name.endswith("mlp.fc2.weight"):
            shapes[name.replace("weight", "bias")] = (shape[0],)
    return shapes


def _in_float16(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` with its array arguments and result rounded through float16."""

    def rounded(*args, **kwargs):
        def half(a):
            if isinstance(a, np.ndarray) and a.dtype == np.float32:
                return a.astype(np.float16).astype(np.float32)
            if isinstance(a, dict):
                return {k: half(v) for k, v in a.items()}
            return a

        return half(function(*[half(a) for a in args], **{k: half(v) for k, v in kwargs.items()}))

    return rounded


# ---- legitimate re-implementations --------------------------------------------------------


def _w_then_h(x, k_h, k_w, interpolate=False):
    """OC with the horizontal pass first (clause 5.6: the passes commute)."""
    x = np.asarray(x)
    kh, kw, ph, pw = instance_kernels(k_h.astype(x.dtype), k_w.astype(x.dtype), x.shape[2], x.shape[3], interpolate)
    y = R.depthwise_conv2d(x, kw[:, None, None, :], padding=(0, pw))
    return R.depthwise_conv2d(y, kh[:, None, :, None], padding=(ph, 0))


def _dense_oversized(x, k_h, k_w, interpolate=False):
    """OC as one dense depthwise conv with the rank-1 kernel outer(k_h, k_w) (supplement Sec. B)."""
    x = np.asarray(x)
    kh, kw, _, _ = instance_kernels(k_h.astype(x.dtype), k_w.astype(x.dtype), x.shape[2], x.shape[3], interpolate)
    return R.depthwise_conv2d(x, (kh[:, :, None] * kw[:, None, :])[:, None])


def _nhwc(x):
    return np.ascontiguousarray(np.moveaxis(x, 1, -1))


def _nchw(x):
    return np.ascontiguousarray(np.moveaxis(x, -1, 1))


def _depthwise_channels_last(x, weight, bias=None, padding=None):
    """Depthwise conv computed on an NHWC copy (channels innermost)."""
    x = np.asarray(x)
    weight = weight.astype(x.dtype)
    kh, kw = weight.shape[2:]
    ph, pw = (kh // 2, kw // 2) if padding is None else padding
    padded = np.pad(_nhwc(x), ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    windows = sliding_window_view(padded, (kh, kw), axis=(1, 2))  # (N, Ho, Wo, C, KH, KW)
    out = np.einsum("nhwcij,cij->nhwc", windows, weight[:, 0])
    if bias is not None:
        out = out + bias.astype(x.dtype)
    return _nchw(out)


def _pointwise_channels_last(x, weight, bias=None):
    """1x1 conv as a matmul over the last axis of an NHWC copy."""
    x = np.asarray(x)
    out = _nhwc(x) @ weight[:, :, 0, 0].astype(x.dtype).T
    return _nchw(out if bias is None else out + bias.astype(x.dtype))


def _conv_channels_last(x, weight, bias=None, stride=1, padding=0):
    """Dense conv on NHWC windows."""
    x = np.asarray(x)
    weight = weight.astype(x.dtype)
    s, p = (stride, padding) if np.isscalar(stride) else (stride[0], padding[0])
    padded = np.pad(_nhwc(x), ((0, 0), (p, p), (p, p), (0, 0)))
    windows = sliding_window_view(padded, weight.shape[2:], axis=(1, 2))[:, ::s, ::s]  # (N, Ho, Wo, Cin, KH, KW)
    out = np.tensordot(windows, weight, axes=([3, 4, 5], [1, 2, 3]))
    return _nchw(out if bias is None else out + bias.astype(x.dtype))


def _oversized_channels_last(x, k_h, k_w, interpolate=False):
    """OC on an NHWC copy: per-channel Toeplitz products along H, then along W."""
    x = np.asarray(x)
    kh, kw, ph, pw = instance_kernels(k_h.astype(x.dtype), k_w.astype(x.dtype), x.shape[2], x.shape[3], interpolate)
    from parcnetv2.reference.oversized import toeplitz

    y = np.einsum("cij,njwc->niwc", toeplitz(kh, x.shape[2], ph), _nhwc(x))
    return _nchw(np.einsum("cij,nhjc->nhic", toeplitz(kw, x.shape[3], pw), y))


def _chunked(sum_axis_matmul: Callable[[np.ndarray, np.ndarray], np.ndarray], x, w, chunk=3):
    """Sum of partial products over reversed chunks of the reduction axis (another order)."""
    total = None
    for start in reversed(range(0, w.shape[-1], chunk)):
        part = sum_axis_matmul(x[..., start : start + chunk], w[..., start : start + chunk])
        total = part if total is None else total + part
    return total


def _linear_reordered(x, weight, bias=None):
    """Linear layer summing its inputs in reversed chunks of 3."""
    x = np.asarray(x)
    out = _chunked(lambda a, b: a @ b.T, x, weight.astype(x.dtype))
    return out if bias is None else out + bias.astype(x.dtype)


def _pointwise_reordered(x, weight, bias=None):
    """1x1 conv summing its input channels in reversed chunks of 3."""
    x = np.asarray(x)
    out = _nchw(_linear_reordered(_nhwc(x), weight[:, :, 0, 0], bias))
    return out


def _depthwise_reordered(x, weight, bias=None, padding=None):
    """Depthwise conv accumulating its taps one by one, last tap first."""
    x = np.asarray(x)
    weight = weight.astype(x.dtype)
    kh, kw = weight.shape[2:]
    ph, pw = (kh // 2, kw // 2) if padding is None else padding
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho, wo = padded.shape[2] - kh + 1, padded.shape[3] - kw + 1
    out = np.zeros(x.shape[:2] + (ho, wo), x.dtype)
    for i in reversed(range(kh)):
        for j in reversed(range(kw)):
            out += padded[:, :, i : i + ho, j : j + wo] * weight[None, :, 0, i, j, None, None]
    return out if bias is None else out + bias.astype(x.dtype)[:, None, None]


def _gelu_float64(x):
    """GELU evaluated in float64 and rounded once (more accurate than the reference)."""
    x = np.asarray(x)
    wide = x.astype(np.float64)
    return (0.5 * wide * (1.0 + erf(wide / math.sqrt(2.0)))).astype(x.dtype)


# ---- the backends ------------------------------------------------------------------------

_ORIGINAL = {name: getattr(REFERENCE, name) for name in ("token_mixer", "bgu", "oversized_conv", "depthwise_conv2d")}
_ORIGINAL["layer_norm"] = REFERENCE.layer_norm
_FLOAT16_OPERATIONS = (
    "conv2d", "depthwise_conv2d", "pointwise_conv2d", "linear", "oversized_conv", "reparameterize",
    "layer_norm_general", "layer_norm", "gelu", "merged_spatial", "channel_scale", "mean_hw", "mul", "add",
)  # fmt: skip


def _backend(
    name: str,
    description: str,
    overrides: dict[str, Callable[..., Any]],
    patches: dict[str, Callable[..., Any]] | None = None,
) -> ReferenceBackend:
    return ReferenceBackend(name=f"mutant:{name}", overrides=overrides, patches=patches, description=description)


MUTANTS: dict[str, ReferenceBackend] = {
    "standard_layer_norm": _backend(
        "standard_layer_norm",
        "standard LayerNorm instead of the official L2 form",
        {"layer_norm_general": _standard_layer_norm},
    ),
    "lng_eps_inside_sqrt": _backend(
        "lng_eps_inside_sqrt",
        "LayerNormGeneral divides by sqrt(‖c‖² + eps)",
        {"layer_norm_general": _lng_eps_inside_sqrt},
    ),
    "lng_eps_added": _backend(
        "lng_eps_added", "LayerNormGeneral divides by ‖c‖ + eps", {"layer_norm_general": _lng_eps_added}
    ),
    "tanh_gelu": _backend("tanh_gelu", "tanh approximation of GELU", {"gelu": _tanh_gelu}),
    "mixer_gate_wrong_half": _backend(
        "mixer_gate_wrong_half",
        "token mixer gates with the wrong half of pwconv1",
        {"token_mixer": _mixer_gate_wrong_half},
    ),
    "bgu_gate_wrong_half": _backend(
        "bgu_gate_wrong_half", "channel BGU computes GELU(x1) * x2", {"bgu": _bgu_gate_wrong_half}
    ),
    "missing_pwconv1_bias": _backend(
        "missing_pwconv1_bias", "token mixer ignores pwconv1's bias", {"token_mixer": _mixer_without_pwconv1_bias}
    ),
    "circular_padding": _backend(
        "circular_padding", "oversized conv pads circularly", {"oversized_conv": _circular_oversized}
    ),
    "flipped_kernel": _backend(
        "flipped_kernel", "oversized conv flips its kernels (convolution)", {"oversized_conv": _flipped_oversized}
    ),
    "vertical_pass_only": _backend(
        "vertical_pass_only", "oversized conv without conv_w", {"oversized_conv": _vertical_only_oversized}
    ),
    "interpolate_ignored": _backend(
        "interpolate_ignored",
        "oversized conv ignores the interpolate modes",
        {"oversized_conv": _interpolate_ignored},
    ),
    "align_corners_false": _backend(
        "align_corners_false", "kernel resize with align_corners=False", {}, {_RESIZE: _resize_half_pixel}
    ),
    "shifted_local_padding": _backend(
        "shifted_local_padding",
        "7x7 conv padded (2, 4) rows instead of (3, 3)",
        {"depthwise_conv2d": _shifted_local},
    ),
    "missing_res_scale": _backend("missing_res_scale", "res_scale left out", {"scale": _identity_scale}),
    "res_scale_on_branch": _backend(
        "res_scale_on_branch",
        "res_scale multiplies the branch, not the residual",
        {"block": _block_scale_on_branch},
    ),
    "head_norm_without_bias": _backend(
        "head_norm_without_bias", "head LayerNorm ignores its bias", {"layer_norm": _layer_norm_without_bias}
    ),
    "fc2_with_bias": _backend(
        "fc2_with_bias", "parameter names include mlp.fc2.bias", {}, {_SHAPES: _shapes_with_fc2_bias}
    ),
    "float16_internals": _backend(
        "float16_internals",
        "every operation stores its result in float16",
        {name: _in_float16(getattr(NumpyArithmetic, name)) for name in _FLOAT16_OPERATIONS},
        {_RESIZE: _in_float16(R.resize_kernel)},
    ),
}

LEGITIMATE: dict[str, ReferenceBackend] = {
    "w_then_h": _backend("w_then_h", "oversized conv with conv_w before conv_h", {"oversized_conv": _w_then_h}),
    "reparameterized_dense": _backend(
        "reparameterized_dense",
        "spatial part and oversized conv as dense merged kernels",
        {
            "parc_spatial": REFERENCE.parc_spatial_reparameterized,
            "oversized_conv": _dense_oversized,
        },
    ),
    "channels_last": _backend(
        "channels_last",
        "every convolution computed on NHWC copies",
        {
            "depthwise_conv2d": _depthwise_channels_last,
            "pointwise_conv2d": _pointwise_channels_last,
            "conv2d": _conv_channels_last,
            "oversized_conv": _oversized_channels_last,
        },
    ),
    "summation_order": _backend(
        "summation_order",
        "float32 reductions in other orders (reversed chunks, tap by tap)",
        {
            "linear": _linear_reordered,
            "pointwise_conv2d": _pointwise_reordered,
            "depthwise_conv2d": _depthwise_reordered,
            "gelu": _gelu_float64,
        },
    ),
}


def __getattr__(name: str) -> ReferenceBackend:
    """``--backend parcnetv2.conformance.mutants:NAME`` for every name of MUTANTS and LEGITIMATE."""
    if name in MUTANTS:
        return MUTANTS[name]
    if name in LEGITIMATE:
        return LEGITIMATE[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def suite_args(name: str, seed: int | str, profile: str = "default") -> list[str]:
    """The arguments of ``pytest`` that check the backend ``name`` of this module (clause 14.10)."""
    backend = f"parcnetv2.conformance.mutants:{name}"
    return ["conformance", "--backend", backend, "--conformance-profile", profile, "--seed", str(seed)]
