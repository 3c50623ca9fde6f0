"""Parameter and MAC counts (spec clause 10).

Parameters are counted from the official shapes. MACs count every convolution tap including
zero padding, plus the linear layers (the convention of the usual counting tools); norms,
activations and elementwise products are not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from parcnetv2.errors import InputError
from parcnetv2.reference.architecture import Config, parameter_shapes
from parcnetv2.reference.model import Model

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
class CountRow:
    """One line of the detailed count: a module group (stem, stage, head...) and a component."""

    group: str
    component: str
    params: int
    macs: int


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def breakdown(model: ModelLike, resolution: int | tuple[int, int] = 224) -> list[CountRow]:
    """Parameters and MACs per module group and component (clause 10), batch 1."""
    config = as_config(model)
    h, w = _resolution(resolution)
    shapes = parameter_shapes(config)
    const = config.constants

    def params_under(prefix: str, suffixes: tuple[str, ...] = ("",)) -> int:
        return sum(
            math.prod(shape)
            for name, shape in shapes.items()
            if name.startswith(prefix) and any(name[len(prefix) :].startswith(s) for s in suffixes)
        )

    rows: list[CountRow] = []
    c_in = const["in_chans"]
    for i, (depth, c, k) in enumerate(zip(config.depths, config.dims, config.global_kernel_sizes)):
        geo = const["stem"] if i == 0 else const["downsample"]
        h = _conv_out(h, geo["kernel_size"], geo["stride"], geo["padding"])
        w = _conv_out(w, geo["kernel_size"], geo["stride"], geo["padding"])
        down = f"downsample_layers.{i}"
        rows.append(CountRow(down, "conv", params_under(f"{down}.conv."), h * w * c * c_in * geo["kernel_size"] ** 2))
        rows.append(CountRow(down, "norm", params_under(down, (".pre_norm.", ".post_norm.")), 0))
        hw = h * w
        med = const["expansion_ratio"] * c // 2
        hidden = const["mlp_ratio"] * c
        kh_len, kw_len = _instance_lengths(k, h, w, config.interpolate)
        per_block = {
            "norm1/norm2": (".norm1.", ".norm2."),
            "token_mixer.pwconv1": (".token_mixer.pwconv1.",),
            "token_mixer.dwconv1 (oversized)": (".token_mixer.dwconv1.",),
            "token_mixer.dwconv2 (7x7)": (".token_mixer.dwconv2.",),
            "token_mixer.pwconv2": (".token_mixer.pwconv2.",),
            "mlp.fc1": (".mlp.fc1.",),
            "mlp.fc2": (".mlp.fc2.",),
            "res_scale1/res_scale2": (".res_scale1.", ".res_scale2."),
        }
        local = const["local_kernel_size"]
        macs = {
            "norm1/norm2": 0,
            "token_mixer.pwconv1": hw * 2 * med * c,
            "token_mixer.dwconv1 (oversized)": hw * med * (kh_len + kw_len),
            "token_mixer.dwconv2 (7x7)": hw * med * local * local,
            "token_mixer.pwconv2": hw * c * med,
            "mlp.fc1": hw * hidden * c,
            "mlp.fc2": hw * c * (hidden // 2),
            "res_scale1/res_scale2": 0,
        }
        stage_name = f"stages.{i}"
        for component, suffixes in per_block.items():
            p = sum(params_under(f"{stage_name}.{j}", suffixes) for j in range(depth))
            rows.append(CountRow(stage_name, component, p, macs[component] * depth))
        c_in = c
    rows.append(CountRow("head", "norm", params_under("norm."), 0))
    rows.append(CountRow("head", "head", params_under("head."), c_in * config.num_classes))
    return rows


def _instance_lengths(k: int, h: int, w: int, interpolate: bool | int) -> tuple[int, int]:
    """Lengths of the vertical and horizontal kernels an h x w map uses (clause 5)."""
    if interpolate is True:
        return 2 * h - 1, 2 * w - 1
    if interpolate is False:
        return k, k
    return int(interpolate), int(interpolate)


def count_params(variant_or_model: ModelLike) -> int:
    """Exact number of parameters (clause 10.1) of a variant name, Config or Model."""
    if isinstance(variant_or_model, Model):
        return sum(v.size for v in variant_or_model.state_dict().values())
    return sum(math.prod(s) for s in parameter_shapes(as_config(variant_or_model)).values())


def count_macs(variant: ModelLike, resolution: int | tuple[int, int] = 224) -> int:
    """Multiply-accumulates of one image at ``resolution`` (int or (H, W)), clause 10.2."""
    return sum(row.macs for row in breakdown(variant, resolution))
