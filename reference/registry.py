"""The component kinds of ParCNetV2 in one table (spec clauses 2-8, 14.2).

Every named module of the official model has a *kind* (``architecture.components`` assigns it):
``conv2d``, ``layer_norm_general``, ``token_mixer``, ... A ``Kind`` says which spec clause defines
it, how to evaluate it with the module's own parameters and settings on any implementation that
speaks the backend protocol (the reference, the harness's bounded reference, or a backend under
test), which protocol operation that is, and the shapes of its parameters. The reference's model,
the conformance checks, the drawn test cases and the parameter counts all read this table, so a
kind is described once.

Shape legend: N, C, H, W, K. ``params`` use the module's local official names (prefix removed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from parcnetv2.errors import InputError
from parcnetv2.spec import architecture_defaults

__all__ = [
    "KINDS",
    "Kind",
    "bgu_shapes",
    "block_shapes",
    "downsampling_shapes",
    "evaluate",
    "head_shapes",
    "token_mixer_shapes",
]

Params = Mapping[str, Any]
Shapes = dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class Kind:
    """One component kind: its clause, its protocol operation (None when the protocol has none:
    ``scale`` and ``stage`` are evaluated through the composition only) and its evaluation."""

    name: str
    clause: str
    operation: str | None
    run: Callable[[Any, Params, Any, Mapping[str, Any]], Any]  # (implementation, params, x, settings)


def _whole_model() -> Any:
    raise InputError("the whole model is evaluated by model(config, state_dict), not as a component")


def _settings(settings: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {n: settings[n] for n in names if n in settings}


_MIXER = ("interpolate", "local_padding", "reparameterized")
KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("model", "2.1", "model", lambda impl, p, x, s: _whole_model()),
        Kind("downsampling", "3", "downsampling",
             lambda impl, p, x, s: impl.downsampling(p, x, **_settings(s, "stride", "padding", "stem", "eps"))),
        Kind("conv2d", "3", "conv2d",
             lambda impl, p, x, s: impl.conv2d(x, p["weight"], p["bias"], s["stride"], s["padding"])),
        Kind("layer_norm_general", "4.1", "layer_norm_general",
             lambda impl, p, x, s: impl.layer_norm_general(x, p["weight"], s["eps"])),
        Kind("layer_norm", "4.2", "layer_norm",
             lambda impl, p, x, s: impl.layer_norm(x, p["weight"], p["bias"], s["eps"])),
        Kind("oversized_conv", "5", "oversized_conv",
             lambda impl, p, x, s: impl.oversized_conv(x, p["conv_h.weight"], p["conv_w.weight"], s["interpolate"])),
        Kind("depthwise_conv2d", "6", "depthwise_conv2d",
             lambda impl, p, x, s: impl.depthwise_conv2d(x, p["weight"], p.get("bias"), s["padding"])),
        Kind("pointwise_conv2d", "8.1", "pointwise_conv2d",
             lambda impl, p, x, s: impl.pointwise_conv2d(x, p["weight"], p.get("bias"))),
        Kind("gelu", "8.1", "gelu", lambda impl, p, x, s: impl.gelu(x)),
        Kind("token_mixer", "8.1", "token_mixer",
             lambda impl, p, x, s: impl.token_mixer(p, x, **_settings(s, *_MIXER))),
        Kind("bgu", "8.2", "bgu", lambda impl, p, x, s: impl.bgu(p, x)),
        Kind("linear", "8.2", "linear", lambda impl, p, x, s: impl.linear(x, p["weight"], p.get("bias"))),
        Kind("scale", "8.3", None, lambda impl, p, x, s: impl.scale(p, x)),
        Kind("block", "8.4", "block",
             lambda impl, p, x, s: impl.block(p, x, **_settings(s, "res_scale", "eps", *_MIXER))),
        Kind("stage", "8.4", None,
             lambda impl, p, x, s: impl.stage(p, x, **_settings(s, "depth", "res_scale", "eps", *_MIXER))),
    )
}  # fmt: skip


def evaluate(implementation: Any, kind: str, params: Params, x: Any, settings: Mapping[str, Any]) -> Any:
    """The module of ``kind`` with ``params`` and ``settings`` on ``x``, computed by
    ``implementation`` (the reference, the bounded reference or a backend of clause 14.2)."""
    if kind not in KINDS:
        raise InputError(f"no component kind {kind!r}; known: {', '.join(KINDS)}")
    return KINDS[kind].run(implementation, params, x, settings)


# ---- parameter shapes per kind (clause 2.2), local names in the official order ---------------------


def downsampling_shapes(cin: int, cout: int, stem: bool) -> Shapes:
    """Stem (``stem``) or downsampling layer i >= 1 (clause 3)."""
    d = architecture_defaults()
    k = d["stem" if stem else "downsample"]["kernel_size"]
    if stem:
        return {"conv.weight": (cout, cin, k, k), "conv.bias": (cout,), "post_norm.weight": (cout,)}
    return {"pre_norm.weight": (cin,), "conv.weight": (cout, cin, k, k), "conv.bias": (cout,)}


def token_mixer_shapes(channels: int, kernel: int) -> Shapes:
    """Token mixer (clause 8.1) of C channels and oversized kernel length K; any C >= 1."""
    d = architecture_defaults()
    med, local = d["expansion_ratio"] * channels, d["local_kernel_size"]
    half = med // 2
    return {
        "pwconv1.weight": (med, channels, 1, 1),
        "pwconv1.bias": (med,),
        "dwconv1.conv_h.weight": (half, 1, kernel, 1),
        "dwconv1.conv_w.weight": (half, 1, 1, kernel),
        "dwconv2.weight": (half, 1, local, local),
        "pwconv2.weight": (channels, half, 1, 1),
    }


def bgu_shapes(channels: int) -> Shapes:
    """Channel BGU (clause 8.2); C even (clause 2.4)."""
    hidden = architecture_defaults()["mlp_ratio"] * channels
    return {"fc1.weight": (hidden, channels), "fc1.bias": (hidden,), "fc2.weight": (channels, hidden // 2)}


def block_shapes(channels: int, kernel: int, res_scale: bool) -> Shapes:
    """Block (clause 8.4): norm1, token_mixer, res_scale1, norm2, mlp, res_scale2 (official order)."""
    shapes: Shapes = {"norm1.weight": (channels,)}
    shapes.update({f"token_mixer.{k}": v for k, v in token_mixer_shapes(channels, kernel).items()})
    if res_scale:
        shapes["res_scale1.scale"] = (channels,)
    shapes["norm2.weight"] = (channels,)
    shapes.update({f"mlp.{k}": v for k, v in bgu_shapes(channels).items()})
    if res_scale:
        shapes["res_scale2.scale"] = (channels,)
    return shapes


def head_shapes(channels: int, num_classes: int) -> Shapes:
    """The head's LayerNorm ``norm`` and Linear ``head`` (clause 8.5), with their prefixes."""
    return {
        "norm.weight": (channels,),
        "norm.bias": (channels,),
        "head.weight": (num_classes, channels),
        "head.bias": (num_classes,),
    }
