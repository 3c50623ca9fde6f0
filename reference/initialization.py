"""Weights: the official initialisation (spec clause 2.3) and the project's test weights (clause
14.4), the one place every test, benchmark and the conformance harness draws weights from.

``initial_state_dict``: Conv2d and Linear weights truncated normal, mean 0, std 0.02, cut at the
absolute values -2 and 2 (timm's ``trunc_normal_`` defaults, which at this std never bind); their
biases zero; LayerNormGeneral, LayerNorm and Scale weights one; the LayerNorm bias zero.

Test weights are deliberately not like an initialisation (every parameter matters):
``independent_weights`` draws each tensor on its own (single operations and components),
``conditioned_state_dict`` draws whole models that stay well-conditioned through all four stages, as
trained networks do, with the norms' eps in play (clause 14.4).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from parcnetv2.reference import components as C
from parcnetv2.reference.architecture import Config, components, parameter_shapes

INIT_STD = 0.02
INIT_CUTOFF = 2.0


def truncated_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Normal(0, 0.02) samples, redrawn until inside [-2, 2]; float32 like PyTorch parameters."""
    values = rng.normal(0.0, INIT_STD, size=shape)
    outside = np.abs(values) > INIT_CUTOFF
    while outside.any():
        values[outside] = rng.normal(0.0, INIT_STD, size=int(outside.sum()))
        outside = np.abs(values) > INIT_CUTOFF
    return values.astype(np.float32)


def initial_state_dict(config: Config, seed: int | None = None) -> dict[str, np.ndarray]:
    """A state_dict for ``config`` with the official initialisation, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in parameter_shapes(config).items():
        leaf = name.rsplit(".", 1)[-1]
        is_matrix = leaf == "weight" and len(shape) >= 2  # Conv2d and Linear weights
        if is_matrix:
            state[name] = truncated_normal(rng, shape)
        elif leaf == "bias":
            state[name] = np.zeros(shape, np.float32)
        else:  # norm weights and Scale vectors
            state[name] = np.ones(shape, np.float32)
    return state


# ---- test weights (spec clause 14.4): not like an initialisation, so every parameter matters ----------

GAIN = (0.25, 4.0)  # independent tensors: std gain / sqrt(fan_in), gain log-uniform per tensor
BIAS_STD = (0.05, 1.0)  # independent biases: std log-uniform
NORM_WEIGHT = (0.5, 1.5)  # |vector weights| uniform with a random sign (LayerNormGeneral: times sqrt(C))
_LNG_WEIGHTS = ("norm1.weight", "norm2.weight", "pre_norm.weight", "post_norm.weight")

# Whole models (clause 14.4): blocks are the identity plus a small branch, as in trained residual
# networks, so that the model neither amplifies nor hides rounding errors, and the residual stream
# of each stage sits at a scale where the norms' eps decides visibly (constants of
# ``conditioned_state_dict``; measurements in conformance/README.md).
STREAM_RMS = (3e-3, 3e-7, 1.0, 3e-2)  # residual-stream RMS per stage (repeated for deeper configs)
BRANCH_GAIN = (0.1, 0.3)  # each residual branch adds this fraction of the stream's RMS (log-uniform)
RES_SCALE = (0.8, 1.25)  # |res_scale| log-uniform; negative with probability NEGATIVE_SCALE
NEGATIVE_SCALE = 0.25
MODEL_GAIN = (0.5, 2.0)  # inner matrices and kernels of whole models
MODEL_BIAS = (0.05, 0.5)  # bias std relative to the layer's output scale


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float], size: Any = None) -> Any:
    return np.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]), size))


def _signed(rng: np.random.Generator, n: int | tuple[int, ...]) -> np.ndarray:
    return rng.uniform(*NORM_WEIGHT, n) * rng.choice((-1.0, 1.0), n)


def independent_weights(shapes: Mapping[str, tuple[int, ...]], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """float64 weights for official (local) names and shapes, each tensor drawn on its own (the
    drawn operations and components of clause 14.4): matrices and kernels normal with std
    g / sqrt(fan_in), g log-uniform in ``GAIN``; biases normal with a log-uniform std in
    ``BIAS_STD``; LayerNormGeneral weights sqrt(C) * +-[0.5, 1.5] (the official norm divides by the
    L2 norm, an extra 1/sqrt(C), clause 4.1); LayerNorm and Scale weights +-[0.5, 1.5]. Every sign
    is drawn independently and symmetrically (clause 11.5 relies on it)."""
    out = {}
    for name, shape in shapes.items():
        if name.endswith("bias"):
            values = rng.normal(0.0, float(_log_uniform(rng, BIAS_STD)), shape)
        elif len(shape) >= 2:
            values = rng.standard_normal(shape) * float(_log_uniform(rng, GAIN)) / math.sqrt(math.prod(shape[1:]))
        else:
            gain = math.sqrt(shape[0]) if name.endswith(_LNG_WEIGHTS) else 1.0
            values = gain * _signed(rng, shape)
        out[name] = values
    return out


def random_state_dict(config: Config, seed: int | None = None, dtype: Any = np.float64) -> dict[str, np.ndarray]:
    """A whole state_dict of ``independent_weights`` for ``config``, reproducible from ``seed``."""
    weights = independent_weights(parameter_shapes(config), np.random.default_rng(seed))
    return {k: v.astype(dtype) for k, v in weights.items()}


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a))))


def conditioned_state_dict(config: Config, rng: np.random.Generator, image: Any) -> dict[str, np.ndarray]:
    """float64 weights for ``config`` under the official names, calibrated on ``image`` (N, 3, H, W)
    with one float64 forward pass of the reference (the whole models of clause 14.4):

    * stem and downsampling: convolution gain log-uniform in ``MODEL_GAIN``, the output rescaled so
      that stage i's residual stream has RMS ``STREAM_RMS[i]``; bias std ``MODEL_BIAS`` times that;
      the stem's post_norm weights sqrt(C) STREAM_RMS[0] +-[0.5, 1.5];
    * blocks: norm weights sqrt(C) +-[0.5, 1.5]; pwconv1 and fc1 gain in ``MODEL_GAIN`` with bias std
      in ``MODEL_BIAS``; oversized kernels std gain / sqrt(min(K, H)) (the taps inside the map), the
      7x7 kernel gain / 7; pwconv2 and fc2 (bias-free, so one pass calibrates them) rescaled so that
      each branch adds a fraction ``BRANCH_GAIN`` of the stream's RMS; res_scale entries ``RES_SCALE``,
      negative with probability ``NEGATIVE_SCALE``;
    * head: norm weights +-[0.5, 1.5] with bias std in ``MODEL_BIAS``; head gain in ``MODEL_GAIN``.

    Why the stream scales (LayerNormGeneral is scale invariant except for its eps): stage 0 at 3e-3
    (an eps inside a square root moves the norm by ~1e-3), stage 1 at 3e-7 (||c|| between the official
    eps 1e-6 and a wrong 1e-5), stage 3 at 3e-2 (the head LayerNorm's eps is 0.7 % of its input's
    variance). Every sign is drawn independently and symmetrically.
    """
    shapes = parameter_shapes(config)
    settings = {c.name: c.settings for c in components(config)}
    w: dict[str, np.ndarray] = {}
    x = np.asarray(image, dtype=np.float64)

    def normal(shape: tuple[int, ...], std: float) -> np.ndarray:
        return rng.standard_normal(shape) * std

    for i, depth in enumerate(config.depths):
        stream = STREAM_RMS[i % len(STREAM_RMS)]
        p = f"downsample_layers.{i}"
        s = settings[p]
        cw = shapes[f"{p}.conv.weight"]
        w[f"{p}.conv.weight"] = normal(cw, float(_log_uniform(rng, MODEL_GAIN)) / math.sqrt(math.prod(cw[1:])))
        if s["stem"]:
            y = C.REFERENCE.conv2d(x, w[f"{p}.conv.weight"], None, s["stride"], s["padding"])
            w[f"{p}.conv.bias"] = normal((cw[0],), float(_log_uniform(rng, MODEL_BIAS)) * _rms(y))
            w[f"{p}.post_norm.weight"] = math.sqrt(cw[0]) * stream * _signed(rng, cw[0])
        else:
            w[f"{p}.pre_norm.weight"] = math.sqrt(cw[1]) * _signed(rng, cw[1])
            normed = C.REFERENCE.layer_norm_general(x, w[f"{p}.pre_norm.weight"], s["eps"])
            y = C.REFERENCE.conv2d(normed.transpose(0, 3, 1, 2), w[f"{p}.conv.weight"], None, s["stride"], s["padding"])
            w[f"{p}.conv.weight"] *= stream / _rms(y)
            w[f"{p}.conv.bias"] = normal((cw[0],), float(_log_uniform(rng, MODEL_BIAS)) * stream)
        x = C.downsampling(C.subtree(w, p), x, **s)
        c = x.shape[-1]
        for j in range(depth):
            b, t = f"stages.{i}.{j}", f"stages.{i}.{j}.token_mixer"
            block = settings[b]
            k = shapes[f"{t}.dwconv1.conv_h.weight"][2]
            local = shapes[f"{t}.dwconv2.weight"][2]
            hidden = shapes[f"{b}.mlp.fc1.weight"][0]
            height, width = x.shape[1:3]
            w[f"{b}.norm1.weight"] = math.sqrt(c) * _signed(rng, c)
            w[f"{b}.norm2.weight"] = math.sqrt(c) * _signed(rng, c)
            w[f"{t}.pwconv1.weight"] = normal((2 * c, c, 1, 1), float(_log_uniform(rng, MODEL_GAIN)) / math.sqrt(c))
            w[f"{t}.pwconv1.bias"] = normal((2 * c,), float(_log_uniform(rng, MODEL_BIAS)))
            gain_h, gain_w = _log_uniform(rng, MODEL_GAIN, 2)
            w[f"{t}.dwconv1.conv_h.weight"] = normal((c, 1, k, 1), gain_h / math.sqrt(min(k, height)))
            w[f"{t}.dwconv1.conv_w.weight"] = normal((c, 1, 1, k), gain_w / math.sqrt(min(k, width)))
            w[f"{t}.dwconv2.weight"] = normal((c, 1, local, local), float(_log_uniform(rng, MODEL_GAIN)) / local)
            w[f"{t}.pwconv2.weight"] = normal((c, c, 1, 1), 1 / math.sqrt(c))
            w[f"{b}.mlp.fc1.weight"] = normal((hidden, c), float(_log_uniform(rng, MODEL_GAIN)) / math.sqrt(c))
            w[f"{b}.mlp.fc1.bias"] = normal((hidden,), float(_log_uniform(rng, MODEL_BIAS)))
            w[f"{b}.mlp.fc2.weight"] = normal((c, hidden // 2), 1 / math.sqrt(hidden // 2))
            if block["res_scale"]:
                for r in ("res_scale1", "res_scale2"):
                    negative = rng.uniform(size=c) < NEGATIVE_SCALE
                    w[f"{b}.{r}.scale"] = _log_uniform(rng, RES_SCALE, c) * np.where(negative, -1.0, 1.0)
            mixer = {"interpolate": block["interpolate"], "local_padding": block["local_padding"]}
            normed = C.REFERENCE.layer_norm_general(x, w[f"{b}.norm1.weight"], block["eps"])
            mixed = C.token_mixer(C.subtree(w, t), normed, **mixer)
            factor = float(_log_uniform(rng, BRANCH_GAIN)) * _rms(x) / _rms(mixed)
            w[f"{t}.pwconv2.weight"] *= factor
            x = (x * w[f"{b}.res_scale1.scale"] if block["res_scale"] else x) + mixed * factor
            normed = C.REFERENCE.layer_norm_general(x, w[f"{b}.norm2.weight"], block["eps"])
            gated = C.bgu(C.subtree(w, f"{b}.mlp"), normed)
            factor = float(_log_uniform(rng, BRANCH_GAIN)) * _rms(x) / _rms(gated)
            w[f"{b}.mlp.fc2.weight"] *= factor
            x = (x * w[f"{b}.res_scale2.scale"] if block["res_scale"] else x) + gated * factor
    c = x.shape[-1]
    classes = shapes["head.weight"][0]
    w["norm.weight"] = _signed(rng, c)
    w["norm.bias"] = normal((c,), float(_log_uniform(rng, MODEL_BIAS)))
    w["head.weight"] = normal((classes, c), float(_log_uniform(rng, MODEL_GAIN)) / math.sqrt(c))
    w["head.bias"] = normal((classes,), float(_log_uniform(rng, MODEL_BIAS)))
    return {k: w[k] for k in shapes}
