"""Architecture of ParCNetV2 (spec clause 2): configuration, module names, parameter shapes.

Module and parameter names are the official ones (``XuRuihan/ParCNetV2``, models/parcnetv2.py);
``parameter_shapes`` lists them in the official ``state_dict`` order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from parcnetv2.errors import InputError
from parcnetv2.reference.registry import block_shapes, downsampling_shapes, head_shapes
from parcnetv2.spec import architecture_defaults, get_variant, variant_names


@dataclass(frozen=True)
class Config:
    """Hyper-parameters of one ParCNetV2 model (clause 2). ``variant`` names an official one."""

    depths: tuple[int, ...]
    dims: tuple[int, ...]
    global_kernel_sizes: tuple[int, ...]
    num_classes: int = 1000
    interpolate: bool | int = False  # oversized-conv kernel mode for every block (clause 5)
    variant: str | None = None
    constants: dict[str, Any] = field(default_factory=architecture_defaults, compare=False, repr=False)

    def __post_init__(self) -> None:
        stages = len(self.depths)
        if stages < 1 or len(self.dims) != stages or len(self.global_kernel_sizes) != stages:
            raise InputError(
                f"depths, dims and global_kernel_sizes need one entry per stage, got "
                f"{len(self.depths)}, {len(self.dims)} and {len(self.global_kernel_sizes)}"
            )
        if stages > len(self.constants["res_scale_stages"]):
            raise InputError(f"at most {len(self.constants['res_scale_stages'])} stages, got {stages}")
        if any(d < 0 for d in self.depths):
            raise InputError(f"depths must be >= 0, got {self.depths}")
        if any(c < 2 or c % 2 for c in self.dims):
            raise InputError(
                f"dims must be even and >= 2 (the channel BGU splits 5C into two halves, clause 8.2), got {self.dims}"
            )
        if any(k < 1 or k % 2 == 0 for k in self.global_kernel_sizes):
            raise InputError(f"global_kernel_sizes must be odd and >= 1, got {self.global_kernel_sizes}")
        if self.num_classes < 1:
            raise InputError(f"num_classes must be >= 1, got {self.num_classes}")
        interp = self.interpolate
        if not (isinstance(interp, bool) or (isinstance(interp, int) and interp >= 1 and interp % 2)):
            raise InputError(f"interpolate must be False, True or an odd positive int, got {interp!r}")

    @classmethod
    def from_variant(cls, variant: str, num_classes: int = 1000, **overrides: Any) -> Config:
        """The official variant ``variant`` with optional overrides (depths, dims,
        global_kernel_sizes, interpolate). Changing the architecture drops the variant name."""
        spec = get_variant(variant)
        base: dict[str, Any] = {
            "depths": spec.depths,
            "dims": spec.dims,
            "global_kernel_sizes": tuple(architecture_defaults()["global_kernel_sizes"]),
        }
        unknown = set(overrides) - set(base) - {"interpolate"}
        if unknown:
            raise InputError(f"unknown override(s) {sorted(unknown)}; allowed: {sorted(base) + ['interpolate']}")
        changes: dict[str, Any] = {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in overrides.items()}
        official = all(changes.get(k, v) == v for k, v in base.items())
        return cls(**{**base, **changes}, num_classes=num_classes, variant=variant if official else None)

    @property
    def eps(self) -> float:
        return float(self.constants["norm_eps"])

    @property
    def name(self) -> str:
        """The variant name, or a description of a custom configuration."""
        if self.variant:
            return self.variant
        return f"custom(depths={list(self.depths)}, dims={list(self.dims)}, kernels={list(self.global_kernel_sizes)})"

    def has_res_scale(self, stage: int) -> bool:
        return bool(self.constants["res_scale_stages"][stage])


def infer_official_variant(depths, dims, kernels) -> str | None:
    """The official variant with exactly these depths, dims and kernel sizes, if any."""
    for name in variant_names():
        official = Config.from_variant(name)
        if (official.depths, official.dims, official.global_kernel_sizes) == (
            tuple(depths),
            tuple(dims),
            tuple(kernels),
        ):
            return name
    return None


@dataclass(frozen=True)
class Component:
    """One named module of the official model: its kind, settings and input layout."""

    name: str
    kind: str
    settings: dict[str, Any]
    layout: str  # layout of the input: "NCHW", "NHWC" or "NC"


def _downsample_geometry(config: Config, index: int) -> dict[str, int]:
    table = config.constants["stem"] if index == 0 else config.constants["downsample"]
    return {"stride": table["stride"], "padding": table["padding"]}


def components(config: Config) -> Iterator[Component]:
    """Every named module of the model in the official order (clause 2), Identity modules omitted."""
    eps = config.eps
    local = config.constants["local_kernel_size"]
    yield Component("", "model", {}, "NCHW")
    yield Component("downsample_layers", "container", {}, "NCHW")
    for i in range(len(config.depths)):
        geo = _downsample_geometry(config, i)
        prefix = f"downsample_layers.{i}"
        yield Component(prefix, "downsampling", {**geo, "stem": i == 0, "eps": eps}, "NCHW" if i == 0 else "NHWC")
        if i > 0:
            yield Component(f"{prefix}.pre_norm", "layer_norm_general", {"eps": eps}, "NHWC")
        yield Component(f"{prefix}.conv", "conv2d", geo, "NCHW")
        if i == 0:
            yield Component(f"{prefix}.post_norm", "layer_norm_general", {"eps": eps}, "NHWC")
    yield Component("stages", "container", {}, "NHWC")
    for i, depth in enumerate(config.depths):
        res = config.has_res_scale(i)
        mixer = {"interpolate": config.interpolate, "local_padding": local // 2}
        yield Component(f"stages.{i}", "stage", {"depth": depth, "res_scale": res, "eps": eps, **mixer}, "NHWC")
        for j in range(depth):
            p = f"stages.{i}.{j}"
            yield Component(p, "block", {"res_scale": res, "eps": eps, **mixer}, "NHWC")
            yield Component(f"{p}.norm1", "layer_norm_general", {"eps": eps}, "NHWC")
            yield Component(f"{p}.token_mixer", "token_mixer", mixer, "NHWC")
            yield Component(f"{p}.token_mixer.pwconv1", "pointwise_conv2d", {}, "NCHW")
            yield Component(f"{p}.token_mixer.act", "gelu", {}, "NCHW")
            yield Component(f"{p}.token_mixer.dwconv1", "oversized_conv", {"interpolate": config.interpolate}, "NCHW")
            pad = _conv_h_w_padding(config.global_kernel_sizes[i], config.interpolate)
            yield Component(f"{p}.token_mixer.dwconv1.conv_h", "depthwise_conv2d", {"padding": (pad, 0)}, "NCHW")
            yield Component(f"{p}.token_mixer.dwconv1.conv_w", "depthwise_conv2d", {"padding": (0, pad)}, "NCHW")
            yield Component(
                f"{p}.token_mixer.dwconv2", "depthwise_conv2d", {"padding": (local // 2, local // 2)}, "NCHW"
            )
            yield Component(f"{p}.token_mixer.pwconv2", "pointwise_conv2d", {}, "NCHW")
            if res:
                yield Component(f"{p}.res_scale1", "scale", {}, "NHWC")
            yield Component(f"{p}.norm2", "layer_norm_general", {"eps": eps}, "NHWC")
            yield Component(f"{p}.mlp", "bgu", {}, "NHWC")
            yield Component(f"{p}.mlp.fc1", "linear", {}, "NHWC")
            yield Component(f"{p}.mlp.act", "gelu", {}, "NHWC")
            yield Component(f"{p}.mlp.fc2", "linear", {}, "NHWC")
            if res:
                yield Component(f"{p}.res_scale2", "scale", {}, "NHWC")
    yield Component("norm", "layer_norm", {"eps": eps}, "NC")
    yield Component("head", "linear", {}, "NC")


def _conv_h_w_padding(kernel_size: int, interpolate: bool | int) -> int:
    """Padding the official OversizeConv2d gives its conv_h / conv_w modules (clause 5.5)."""
    if interpolate is True:
        return 0
    if interpolate is False or interpolate is None:
        return kernel_size // 2
    return int(interpolate) // 2


def parameter_shapes(config: Config) -> dict[str, tuple[int, ...]]:
    """Official state_dict names and shapes, in the official order (clauses 2 and 10)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def add(prefix: str, local: dict[str, tuple[int, ...]]) -> None:
        shapes.update({f"{prefix}.{k}": v for k, v in local.items()})

    c_in = config.constants["in_chans"]
    for i, c in enumerate(config.dims):
        add(f"downsample_layers.{i}", downsampling_shapes(c_in, c, stem=i == 0))
        c_in = c
    for i, (depth, c, k) in enumerate(zip(config.depths, config.dims, config.global_kernel_sizes)):
        for j in range(depth):
            add(f"stages.{i}.{j}", block_shapes(c, k, config.has_res_scale(i)))
    shapes.update(head_shapes(c_in, config.num_classes))
    return shapes


def stage_sizes(config: Config, height: int, width: int) -> list[tuple[int, int]]:
    """Feature-map size (H, W) after the stem and after each downsampling layer (clause 3), for an
    input of ``height`` x ``width``: the one place the stage geometry is computed."""
    sizes = []
    for i in range(len(config.depths)):
        g = config.constants["stem" if i == 0 else "downsample"]
        height = (height + 2 * g["padding"] - g["kernel_size"]) // g["stride"] + 1
        width = (width + 2 * g["padding"] - g["kernel_size"]) // g["stride"] + 1
        sizes.append((height, width))
    return sizes
