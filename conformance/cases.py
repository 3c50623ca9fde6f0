"""What the conformance tests draw (spec clause 14.4): configurations, weights and inputs.

Hypothesis draws the structure of each case (channel counts including odd, prime and SIMD-tile
edge counts; H != W; H and W from 1; K = 2H-1, K > 2H-1, K < H; batch 1-3; the oversized-kernel
modes; input scales) and one integer seed; the arrays are then generated from that seed by
NumPy, so a case prints as a short, complete description (its repr) and replays exactly.

Weights come from ``parcnetv2.reference.initialization`` (clause 14.4): each tensor of an
operation or component drawn on its own (``independent_weights``), whole models calibrated on their
image so that they stay well-conditioned through every stage (``conditioned_state_dict``).

Every array is rounded to the backend's dtype before use, and the float64 reference computes on
those rounded values, so the backend and the reference see the same numbers.
Shape legend: N, C, H, W, K.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from parcnetv2.reference.architecture import Config, stage_sizes
from parcnetv2.reference.initialization import conditioned_state_dict, independent_weights
from parcnetv2.reference.registry import bgu_shapes, block_shapes, downsampling_shapes, token_mixer_shapes
from parcnetv2.spec import architecture_defaults

__all__ = [
    "CHANNELS",
    "EVEN_CHANNELS",
    "BguCase",
    "BlockCase",
    "Case",
    "DenseCase",
    "DepthwiseCase",
    "DownsamplingCase",
    "GeluCase",
    "MixerCase",
    "ModelCase",
    "NormCase",
    "ResizeCase",
    "SpatialCase",
    "bgu_cases",
    "block_cases",
    "config_cases",
    "conv_cases",
    "depthwise_cases",
    "downsampling_cases",
    "gelu_cases",
    "linear_cases",
    "mixer_cases",
    "model_cases",
    "norm_cases",
    "pointwise_cases",
    "resize_cases",
    "rounded",
    "spatial_cases",
]

# Odd, prime and SIMD-tile-edge counts (4/8/16 lanes) where a component allows any C; the BGU and
# the whole model need even C (clause 2.4).
CHANNELS = (1, 2, 3, 7, 8, 15, 16, 17, 31, 33)
EVEN_CHANNELS = (2, 4, 6, 8, 14, 16, 18, 32, 34)
_SEEDS = st.integers(0, 2**32 - 1)
_BATCH = st.integers(1, 3)


def rounded(arrays: Mapping[str, np.ndarray], dtype: Any) -> dict[str, np.ndarray]:
    """Arrays rounded to ``dtype`` (what the backend receives)."""
    return {k: np.asarray(v).astype(dtype) for k, v in arrays.items()}


@dataclasses.dataclass(frozen=True)
class Case:
    """Base of every drawn case: ``seed`` generates its arrays; ``scale`` is the input's scale."""

    seed: int
    scale: float

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def input(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """A zero-mean normal input of this case's scale."""
        return rng.standard_normal(shape) * self.scale

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _scale(low: int = -3, high: int = 2) -> st.SearchStrategy[float]:
    """Input scales 10^k for integer k in [low, high]: small inputs expose eps handling."""
    return st.integers(low, high).map(lambda k: float(10.0**k))


def _odd(lo: int, hi: int) -> st.SearchStrategy[int]:
    """Odd integers in [lo, hi] (hi >= lo, and the range holds one)."""
    return st.integers(lo // 2, (hi - 1) // 2).map(lambda k: 2 * k + 1)


@st.composite
def _kernel_for(draw, height: int, width: int) -> tuple[int, str]:
    """An odd oversized kernel length K and how it relates to the map (clause 5.1)."""
    modes = ["2H-1", "K>2H-1", "any"] + (["K<H"] if height >= 2 else [])
    mode = draw(st.sampled_from(modes))
    if mode == "2H-1":
        return 2 * height - 1, mode
    if mode == "K>2H-1":
        return 2 * height - 1 + 2 * draw(st.integers(1, 4)), mode
    if mode == "K<H":
        return draw(_odd(1, height - 1)), mode
    return draw(_odd(1, 2 * max(height, width) + 5)), mode


@st.composite
def _interpolate_for(draw, height: int, width: int) -> bool | int:
    """An oversized-conv mode (clauses 5.1-5.3): False (twice as likely), True or an odd S."""
    mode = draw(st.sampled_from(["fixed", "fixed", "2H-1", "S"]))
    if mode == "fixed":
        return False
    if mode == "2H-1":
        return True
    return draw(_odd(1, 2 * max(height, width) + 3))


@dataclasses.dataclass(frozen=True)
class SpatialCase(Case):
    """OC, OC + DW7 and their reparameterization (clauses 5-7): x (N, C, H, W)."""

    batch: int
    channels: int
    height: int
    width: int
    kernel: int
    kernel_mode: str
    interpolate: bool | int

    def arrays(self, dtype: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(x NCHW, {"dwconv1.conv_h.weight", "dwconv1.conv_w.weight", "dwconv2.weight"})."""
        rng = self.rng()
        c, k = self.channels, self.kernel
        local = architecture_defaults()["local_kernel_size"]
        params = independent_weights(
            {
                "dwconv1.conv_h.weight": (c, 1, k, 1),
                "dwconv1.conv_w.weight": (c, 1, 1, k),
                "dwconv2.weight": (c, 1, local, local),
            },
            rng,
        )
        x = self.input(rng, (self.batch, c, self.height, self.width))
        return x.astype(dtype), rounded(params, dtype)


@st.composite
def spatial_cases(draw, max_size: int = 12, fixed_only: bool = False) -> SpatialCase:
    h, w = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    kernel, mode = draw(_kernel_for(h, w))
    interpolate = False if fixed_only else draw(_interpolate_for(h, w))
    return SpatialCase(
        seed=draw(_SEEDS),
        scale=draw(_scale()),
        batch=draw(_BATCH),
        channels=draw(st.sampled_from(CHANNELS)),
        height=h,
        width=w,
        kernel=kernel,
        kernel_mode=mode,
        interpolate=interpolate,
    )


@dataclasses.dataclass(frozen=True)
class DepthwiseCase(Case):
    """Depthwise conv (clauses 6, 7): any KH x KW with "same" padding KH//2, KW//2, optional bias."""

    batch: int
    channels: int
    height: int
    width: int
    kernel_h: int
    kernel_w: int
    bias: bool

    def arrays(self, dtype: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        rng = self.rng()
        c = self.channels
        shapes = {"weight": (c, 1, self.kernel_h, self.kernel_w)}
        if self.bias:
            shapes["bias"] = (c,)
        params = independent_weights(shapes, rng)
        return self.input(rng, (self.batch, c, self.height, self.width)).astype(dtype), rounded(params, dtype)


@st.composite
def depthwise_cases(draw, max_size: int = 12) -> DepthwiseCase:
    h, w = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    return DepthwiseCase(
        seed=draw(_SEEDS),
        scale=draw(_scale()),
        batch=draw(_BATCH),
        channels=draw(st.sampled_from(CHANNELS)),
        height=h,
        width=w,
        kernel_h=draw(_odd(1, 2 * h + 3)),
        kernel_w=draw(_odd(1, 2 * w + 3)),
        bias=draw(st.booleans()),
    )


@dataclasses.dataclass(frozen=True)
class ResizeCase(Case):
    """Kernel resize (clause 5.2): kernel (C, K) -> (C, size)."""

    channels: int
    length: int
    size: int

    def arrays(self, dtype: Any) -> np.ndarray:
        rng = self.rng()
        return (rng.standard_normal((self.channels, self.length)) * self.scale).astype(dtype)


@st.composite
def resize_cases(draw) -> ResizeCase:
    return ResizeCase(
        seed=draw(_SEEDS),
        scale=draw(_scale(-2, 1)),
        channels=draw(st.sampled_from(CHANNELS)),
        length=draw(_odd(1, 31)),
        size=draw(st.integers(1, 40)),
    )


@dataclasses.dataclass(frozen=True)
class NormCase(Case):
    """LayerNormGeneral / LayerNorm (clause 4) over the last axis of x (shape), with a common
    ``offset`` (cancellation in the mean) added to the zero-mean input."""

    shape: tuple[int, ...]
    offset: float

    def arrays(self, dtype: Any, standard: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        rng = self.rng()
        c = self.shape[-1]
        names = {"norm.weight": (c,), "norm.bias": (c,)} if standard else {"norm1.weight": (c,)}
        params = independent_weights(names, rng)
        x = self.input(rng, self.shape) + self.offset * self.scale
        return x.astype(dtype), rounded(params, dtype)


@st.composite
def norm_cases(draw) -> NormCase:
    c = draw(st.sampled_from(CHANNELS + (64, 65)))
    lead = draw(st.sampled_from([(draw(_BATCH),), (draw(_BATCH), draw(st.integers(1, 6)), draw(st.integers(1, 6)))]))
    return NormCase(
        seed=draw(_SEEDS),
        scale=draw(_scale(-4, 2)),
        shape=lead + (c,),
        offset=draw(st.sampled_from([0.0, 0.0, 1.0, -3.0, 30.0])),
    )


@dataclasses.dataclass(frozen=True)
class GeluCase(Case):
    """GELU (clause 8.1) on a map of ``shape``."""

    shape: tuple[int, ...]

    def arrays(self, dtype: Any) -> np.ndarray:
        return self.input(self.rng(), self.shape).astype(dtype)


@st.composite
def gelu_cases(draw) -> GeluCase:
    shape = (draw(_BATCH), draw(st.sampled_from(CHANNELS)), draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    return GeluCase(seed=draw(_SEEDS), scale=draw(_scale(-2, 1)), shape=shape)


@dataclasses.dataclass(frozen=True)
class DenseCase(Case):
    """Dense conv2d / 1x1 conv / linear (clauses 3, 8): weight (Cout, Cin, KH, KW) or (Cout, Cin)."""

    batch: int
    cin: int
    cout: int
    height: int
    width: int
    kernel: int
    stride: int
    padding: int
    bias: bool
    kind: str  # "conv2d", "pointwise_conv2d" or "linear"

    def arrays(self, dtype: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        rng = self.rng()
        if self.kind == "linear":
            shapes = {"weight": (self.cout, self.cin)}
            x_shape: tuple[int, ...] = (self.batch, self.height, self.width, self.cin)
        else:
            shapes = {"weight": (self.cout, self.cin, self.kernel, self.kernel)}
            x_shape = (self.batch, self.cin, self.height, self.width)
        if self.bias:
            shapes["bias"] = (self.cout,)
        params = independent_weights(shapes, rng)
        return self.input(rng, x_shape).astype(dtype), rounded(params, dtype)


def _dense(draw, kind: str, kernel: int, stride: int, padding: int) -> DenseCase:
    return DenseCase(
        seed=draw(_SEEDS),
        scale=draw(_scale()),
        batch=draw(_BATCH),
        cin=draw(st.sampled_from(CHANNELS)),
        cout=draw(st.sampled_from(CHANNELS)),
        height=draw(st.integers(kernel - 2 * padding if kernel > 2 * padding else 1, 14)),
        width=draw(st.integers(kernel - 2 * padding if kernel > 2 * padding else 1, 14)),
        kernel=kernel,
        stride=stride,
        padding=padding,
        bias=draw(st.booleans()),
        kind=kind,
    )


@st.composite
def conv_cases(draw) -> DenseCase:
    """The stem's 7x7/4 pad 2 and the downsampling 3x3/2 pad 1 geometries (clause 3)."""
    geometry = architecture_defaults()[draw(st.sampled_from(["stem", "downsample"]))]
    return _dense(draw, "conv2d", geometry["kernel_size"], geometry["stride"], geometry["padding"])


@st.composite
def pointwise_cases(draw) -> DenseCase:
    return _dense(draw, "pointwise_conv2d", 1, 1, 0)


@st.composite
def linear_cases(draw) -> DenseCase:
    return _dense(draw, "linear", 1, 1, 0)


@dataclasses.dataclass(frozen=True)
class MixerCase(Case):
    """Token mixer (clause 8.1): x (N, H, W, C), any C."""

    batch: int
    channels: int
    height: int
    width: int
    kernel: int
    kernel_mode: str
    interpolate: bool | int

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return token_mixer_shapes(self.channels, self.kernel)

    def arrays(self, dtype: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        rng = self.rng()
        params = independent_weights(self.shapes(), rng)
        x = self.input(rng, (self.batch, self.height, self.width, self.channels))
        return x.astype(dtype), rounded(params, dtype)


def _mixer_fields(draw, channels: Sequence[int], max_size: int) -> dict[str, Any]:
    """The fields a token mixer and a block share: map, kernel and its mode, channels, batch."""
    h, w = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    kernel, mode = draw(_kernel_for(h, w))
    return {
        "seed": draw(_SEEDS),
        "scale": draw(_scale()),
        "batch": draw(_BATCH),
        "channels": draw(st.sampled_from(channels)),
        "height": h,
        "width": w,
        "kernel": kernel,
        "kernel_mode": mode,
        "interpolate": draw(_interpolate_for(h, w)),
    }


@st.composite
def mixer_cases(draw, max_size: int = 10) -> MixerCase:
    return MixerCase(**_mixer_fields(draw, CHANNELS, max_size))


@dataclasses.dataclass(frozen=True)
class BguCase(Case):
    """Channel BGU (clause 8.2): x (..., C), C even."""

    shape: tuple[int, ...]

    def arrays(self, dtype: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        rng = self.rng()
        params = independent_weights(bgu_shapes(self.shape[-1]), rng)
        return self.input(rng, self.shape).astype(dtype), rounded(params, dtype)


@st.composite
def bgu_cases(draw) -> BguCase:
    c = draw(st.sampled_from(EVEN_CHANNELS))
    lead = draw(st.sampled_from([(draw(_BATCH),), (draw(_BATCH), draw(st.integers(1, 6)), draw(st.integers(1, 6)))]))
    return BguCase(seed=draw(_SEEDS), scale=draw(_scale()), shape=lead + (c,))


@dataclasses.dataclass(frozen=True)
class BlockCase(MixerCase):
    """Block (clause 8.4): x (N, H, W, C), C even; ``res_scale`` as in stages 2 and 3."""

    res_scale: bool = False

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return block_shapes(self.channels, self.kernel, self.res_scale)


@st.composite
def block_cases(draw, max_size: int = 10) -> BlockCase:
    return BlockCase(**_mixer_fields(draw, EVEN_CHANNELS, max_size), res_scale=draw(st.booleans()))


@dataclasses.dataclass(frozen=True)
class DownsamplingCase(Case):
    """Stem (NCHW in) or downsampling layer (NHWC in), clause 3."""

    batch: int
    stem: bool
    cin: int
    cout: int
    height: int
    width: int

    def geometry(self) -> dict[str, int]:
        return architecture_defaults()["stem" if self.stem else "downsample"]

    def arrays(self, dtype: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        rng = self.rng()
        params = independent_weights(downsampling_shapes(self.cin, self.cout, self.stem), rng)
        layout = (
            (self.batch, self.cin, self.height, self.width)
            if self.stem
            else (self.batch, self.height, self.width, self.cin)
        )
        return self.input(rng, layout).astype(dtype), rounded(params, dtype)


@st.composite
def downsampling_cases(draw) -> DownsamplingCase:
    stem = draw(st.booleans())
    low = 3 if stem else 1
    return DownsamplingCase(
        seed=draw(_SEEDS),
        scale=draw(_scale()),
        batch=draw(_BATCH),
        stem=stem,
        cin=architecture_defaults()["in_chans"] if stem else draw(st.sampled_from(EVEN_CHANNELS)),
        cout=draw(st.sampled_from(EVEN_CHANNELS)),
        height=draw(st.integers(low, 20)),
        width=draw(st.integers(low, 20)),
    )


@st.composite
def config_cases(draw) -> Config:
    """A small custom configuration (clause 2.4): 1-4 stages, 0-2 blocks each, even dims."""
    stages = draw(st.integers(1, 4))
    return Config(
        depths=tuple(draw(st.lists(st.integers(0, 2), min_size=stages, max_size=stages))),
        dims=tuple(draw(st.lists(st.sampled_from(EVEN_CHANNELS), min_size=stages, max_size=stages))),
        global_kernel_sizes=tuple(draw(st.lists(_odd(1, 21), min_size=stages, max_size=stages))),
        num_classes=draw(st.integers(1, 12)),
        interpolate=draw(st.sampled_from([False, False, True, 5])),
    )


@dataclasses.dataclass(frozen=True)
class ModelCase(Case):
    """Whole model (clause 2) of a small custom configuration on NCHW images."""

    depths: tuple[int, ...]
    dims: tuple[int, ...]
    kernels: tuple[int, ...]
    num_classes: int
    interpolate: bool | int
    batch: int
    height: int
    width: int

    def config(self) -> Config:
        return Config(self.depths, self.dims, self.kernels, self.num_classes, self.interpolate)

    def arrays(self, dtype: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(image, weights): the image first, then whole-model weights calibrated on it (clause 14.4)."""
        rng = self.rng()
        x = self.input(rng, (self.batch, architecture_defaults()["in_chans"], self.height, self.width))
        params = conditioned_state_dict(self.config(), rng, x)
        return x.astype(dtype), rounded(params, dtype)


@st.composite
def model_cases(draw, max_image: int = 64) -> ModelCase:
    """Depths 0-2, even dims, one kernel per stage drawn against that stage's map (K = 2H-1,
    K > 2H-1, K < H or any), the three kernel modes, images from 3 x 3, H != W."""
    stages = draw(st.integers(1, 4))
    height, width = draw(st.integers(3, max_image)), draw(st.integers(3, max_image))
    sizes = stage_sizes(Config((0,) * stages, (2,) * stages, (1,) * stages), height, width)
    kernels = tuple(draw(_kernel_for(h, w))[0] for h, w in sizes)
    return ModelCase(
        seed=draw(_SEEDS),
        scale=draw(_scale(-1, 1)),
        depths=tuple(draw(st.lists(st.integers(0, 2), min_size=stages, max_size=stages))),
        dims=tuple(draw(st.lists(st.sampled_from(EVEN_CHANNELS), min_size=stages, max_size=stages))),
        kernels=kernels,
        num_classes=draw(st.integers(1, 12)),
        interpolate=draw(st.sampled_from([False, False, True, 5])),
        batch=draw(_BATCH),
        height=height,
        width=width,
    )


@dataclasses.dataclass(frozen=True)
class ProbeCase(Case):
    """An input for one named module of a model (clause 14.6), in the layout it receives: the
    module's channel count, a drawn batch and map size (or the fixed shape an exported module
    takes), values ``scale * (offset + spread * z)`` with z standard normal. Scales 1e-6 to 1e4
    reach the inputs where float16 underflows or overflows and GELU saturates; a common offset with
    a small spread gives the nearly constant vectors where a norm's eps decides."""

    batch: int
    height: int
    width: int
    offset: float
    spread: float

    def array(self, template: tuple[int, ...], layout: str, fixed: bool, dtype: Any) -> np.ndarray:
        """The input, shaped like ``template`` (the module's input in the model) with its batch and
        map size replaced unless ``fixed``; ``layout`` "NCHW", "NHWC" or "NC"."""
        shape = list(template)
        if not fixed:
            shape[0] = self.batch
            if layout in ("NCHW", "NHWC"):
                h_axis = 2 if layout == "NCHW" else 1
                shape[h_axis], shape[h_axis + 1] = self.height, self.width
        z = self.rng().standard_normal(shape)
        return (self.scale * (self.offset + self.spread * z)).astype(dtype)


def critical_probes(kind: str, min_size: int = 1) -> list[ProbeCase]:
    """The probes every profile runs for a module of ``kind``, where the common mistakes show: for
    the norms, centred norms near sqrt(eps) (eps inside a square root), near eps (eps added or
    misplaced) and exactly zero (a constant vector); for GELU, its tails; for every module, tiny
    and large scales (float16 underflows below 6e-5 and overflows above 65504)."""
    size = min_size + 3

    def probe(seed: int, scale: float, offset: float = 0.0, spread: float = 1.0, batch: int = 2) -> ProbeCase:
        return ProbeCase(seed, scale, batch, size, size + 2, offset, spread)

    common = [probe(1, 1.0), probe(2, 1e-6), probe(3, 1e3, batch=1)]
    if kind in ("layer_norm_general", "layer_norm", "downsampling", "block"):
        common += [probe(4, 1e-3), probe(5, 1.0, 1.0, 1e-6), probe(6, 1.0, 1.0, 0.0), probe(7, 1e-7)]
    if kind in ("gelu", "token_mixer", "bgu"):
        common += [probe(8, 10.0), probe(9, 1e4, batch=1)]
    return common


@st.composite
def probe_cases(draw, min_size: int = 1) -> ProbeCase:
    """Probe inputs (see ``ProbeCase``); ``min_size`` is the smallest map the module accepts."""
    return ProbeCase(
        seed=draw(_SEEDS),
        scale=draw(_scale(-6, 4)),
        batch=draw(_BATCH),
        height=draw(st.integers(min_size, min_size + 7)),
        width=draw(st.integers(min_size, min_size + 7)),
        offset=draw(st.sampled_from([0.0, 0.0, 1.0, -3.0])),
        spread=draw(st.sampled_from([1.0, 1.0, 1e-3, 1e-6, 0.0])),
    )
