"""Parameter and MAC counts (spec clause 10).

Parameters are counted from the official shapes (``parameter_shapes``). MACs come from the
model's own composition (``parcnetv2.reference.components``) run on shapes instead of values: the
``ShapeArithmetic`` below propagates activation shapes, the trace lists every named module with
its input and output shapes, and the registry's per-kind formula counts each leaf module. MACs
count every convolution tap including zero padding, plus the linear layers (the convention of the
usual counting tools); norms, activations and elementwise products are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from parcnetv2.errors import InputError
from parcnetv2.reference.architecture import Config, components, parameter_shapes
from parcnetv2.reference.components import Composition, subtree
from parcnetv2.reference.model import Model
from parcnetv2.reference.oversized import instance_lengths

__all__ = ["CountRow", "as_config", "breakdown", "count_macs", "count_params"]

ModelLike = str | Config | Model


def as_config(model: ModelLike) -> Config:
    """The Config of a variant name, a Config or a Model."""
    if isinstance(model, Model):
        return model.config
    if isinstance(model, Config):
        return model
    if isinstance(model, str):
        return Config.from_variant(model)
    raise InputError(f"expected a variant name, Config or Model, got {type(model).__name__}")


def _resolution(resolution: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    if h < 3 or w < 3:
        raise InputError(f"resolution must be at least 3x3, got {h}x{w}")
    return int(h), int(w)


@dataclass(frozen=True)
class Shaped:
    """An array known only by its shape (an activation or a weight)."""

    shape: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


class ShapeArithmetic:
    """The model's operations on shapes (the counting of clause 10.2 needs nothing else)."""

    @staticmethod
    def conv2d(x: Shaped, weight: Shaped, bias: Any = None, stride: Any = 1, padding: Any = 0) -> Shaped:
        (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
        n, _, h, w = x.shape
        cout, _, kh, kw = weight.shape
        return Shaped((n, cout, _conv_out(h, kh, sh, ph), _conv_out(w, kw, sw, pw)))

    @staticmethod
    def depthwise_conv2d(x: Shaped, weight: Shaped, bias: Any = None, padding: Any = None) -> Shaped:
        kh, kw = weight.shape[2:]
        ph, pw = (kh // 2, kw // 2) if padding is None else _pair(padding)
        n, c, h, w = x.shape
        return Shaped((n, c, _conv_out(h, kh, 1, ph), _conv_out(w, kw, 1, pw)))

    @staticmethod
    def pointwise_conv2d(x: Shaped, weight: Shaped, bias: Any = None) -> Shaped:
        return Shaped((x.shape[0], weight.shape[0], *x.shape[2:]))

    @staticmethod
    def linear(x: Shaped, weight: Shaped, bias: Any = None) -> Shaped:
        return Shaped((*x.shape[:-1], weight.shape[0]))

    @staticmethod
    def oversized_conv(x: Shaped, k_h: Shaped, k_w: Shaped, interpolate: Any = False) -> Shaped:
        return x  # clause 5.4: the input's size in every mode

    @staticmethod
    def merged_spatial(params: Any, x: Shaped, **settings: Any) -> Shaped:
        return x

    @staticmethod
    def same(x: Shaped, *args: Any, **kwargs: Any) -> Shaped:
        return x

    layer_norm_general = layer_norm = gelu = channel_scale = input = same

    @staticmethod
    def mul(a: Shaped, b: Shaped) -> Shaped:
        return a

    add = mul

    @staticmethod
    def mean_hw(x: Shaped) -> Shaped:
        return Shaped((x.shape[0], x.shape[3]))

    @staticmethod
    def to_nchw(x: Shaped) -> Shaped:
        n, h, w, c = x.shape
        return Shaped((n, c, h, w))

    @staticmethod
    def to_nhwc(x: Shaped) -> Shaped:
        n, c, h, w = x.shape
        return Shaped((n, h, w, c))

    @staticmethod
    def halves(x: Shaped, axis: int) -> tuple[Shaped, Shaped]:
        shape = list(x.shape)
        shape[axis] //= 2
        return Shaped(tuple(shape)), Shaped(tuple(shape))


class _Shapes(ShapeArithmetic, Composition):
    """The official composition on shapes."""


# MACs of one module of each counted kind, per image: (local parameter shapes, input shape, output
# shape, settings) -> multiply-accumulates (clause 10.2).
_MACS: dict[str, Callable[[dict[str, tuple[int, ...]], tuple[int, ...], tuple[int, ...], Any], int]] = {
    "conv2d": lambda p, x, y, s: math.prod(y[2:]) * math.prod(p["weight"]),
    "depthwise_conv2d": lambda p, x, y, s: math.prod(y[2:]) * math.prod(p["weight"]),
    "pointwise_conv2d": lambda p, x, y, s: math.prod(y[2:]) * math.prod(p["weight"]),
    "linear": lambda p, x, y, s: math.prod(y[1:-1]) * math.prod(p["weight"]),
    "oversized_conv": lambda p, x, y, s: (
        math.prod(y[1:])
        * sum(instance_lengths(p["conv_h.weight"][2], p["conv_w.weight"][3], y[2], y[3], s["interpolate"]))
    ),
}
# Kinds whose parameters are counted although they cost no MACs.
_PARAMETERS_ONLY = ("layer_norm_general", "layer_norm", "scale")


@dataclass(frozen=True)
class CountRow:
    """One line of the detailed count: a module group (stem, stage, head...) and a component."""

    group: str
    component: str
    params: int
    macs: int


def _group(name: str) -> tuple[str, str]:
    """(group, component) of a module name: ``stages.1.2.mlp.fc1`` -> (``stages.1``, ``mlp.fc1``)."""
    parts = name.split(".")
    if parts[0] == "downsample_layers":
        return ".".join(parts[:2]), ".".join(parts[2:])
    if parts[0] == "stages":
        return ".".join(parts[:2]), ".".join(parts[3:])
    return "head", name


def breakdown(model: ModelLike, resolution: int | tuple[int, int] = 224) -> list[CountRow]:
    """Parameters and MACs per module group and component (clause 10), batch 1, in the official
    order; the blocks of a stage are summed per component."""
    config = as_config(model)
    h, w = _resolution(resolution)
    shapes = parameter_shapes(config)
    kinds = {c.name: c for c in components(config)}
    rows: dict[tuple[str, str], list[int]] = {}

    def count(name: str, inputs: Shaped, output: Shaped) -> Shaped:
        kind = kinds[name].kind
        inside_oversized = name.endswith(("dwconv1.conv_h", "dwconv1.conv_w"))  # counted as dwconv1
        if (kind in _MACS and not inside_oversized) or kind in _PARAMETERS_ONLY:
            params = subtree(shapes, name)
            macs = _MACS[kind](params, inputs.shape, output.shape, kinds[name].settings) if kind in _MACS else 0
            row = rows.setdefault(_group(name), [0, 0])
            row[0] += sum(math.prod(s) for s in params.values())
            row[1] += macs
        return output

    weights = {k: Shaped(v) for k, v in shapes.items()}
    _Shapes().model(config, weights, Shaped((1, config.constants["in_chans"], h, w)), trace=count)
    return [CountRow(group, component, p, m) for (group, component), (p, m) in rows.items()]


def count_params(variant_or_model: ModelLike) -> int:
    """Exact number of parameters (clause 10.1) of a variant name, Config or Model."""
    if isinstance(variant_or_model, Model):
        return sum(v.size for v in variant_or_model.state_dict().values())
    return sum(math.prod(s) for s in parameter_shapes(as_config(variant_or_model)).values())


def count_macs(variant: ModelLike, resolution: int | tuple[int, int] = 224) -> int:
    """Multiply-accumulates of one image at ``resolution`` (int or (H, W)), clause 10.2."""
    return sum(row.macs for row in breakdown(variant, resolution))
