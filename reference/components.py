"""Every ParCNetV2 component and the whole forward pass, written once (spec clauses 2, 3, 8).

``Composition`` holds the official structure: which operation follows which, on which layout,
with which parameters. It is a mixin over an *arithmetic*, the class providing the operations
(convolutions, norms, GELU, products, sums, transposes). ``Reference`` = NumPy arithmetic +
composition is the golden model; the conformance harness combines the same composition with an
arithmetic that carries error bounds (``parcnetv2.conformance.error_bounds``), so the model is
written exactly once.

``params`` maps the component's own parameter names (the official names with the module prefix
removed, e.g. ``"pwconv1.weight"`` for a token mixer) to arrays. Layouts follow the official
code: the stem takes NCHW, everything after it is NHWC, convolutions run in NCHW inside.

``trace``, when given, is called as ``trace(name, input, output)`` for every named module (official
names, children before their parents) and returns the value the forward pass continues with: a
recorder returns ``output``; the harness may return the output another implementation produced, to
check the wiring between modules (clause 14.6). Shape legend: N, C, H, W, K.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from parcnetv2.errors import InputError
from parcnetv2.reference.activations import gelu
from parcnetv2.reference.architecture import components
from parcnetv2.reference.convolution import conv2d, depthwise_conv2d, linear, pointwise_conv2d
from parcnetv2.reference.dtypes import as_input, cast
from parcnetv2.reference.norms import layer_norm, layer_norm_general
from parcnetv2.reference.oversized import instance_kernels, oversized_conv, resize_kernel
from parcnetv2.reference.reparameterization import reparameterize

__all__ = [
    "Composition",
    "NumpyArithmetic",
    "Params",
    "Reference",
    "Trace",
    "bgu",
    "block",
    "downsampling",
    "parc_spatial",
    "parc_spatial_reparameterized",
    "subtree",
    "token_mixer",
]

Params = Mapping[str, Any]
# trace(official name, input, output) -> the value the forward pass continues with.
Trace = Callable[[str, Any, Any], Any] | None


def subtree(params: Params, prefix: str) -> dict[str, Any]:
    """The parameters under ``prefix.`` with that prefix removed."""
    if not prefix:
        return dict(params)
    head = prefix + "."
    return {k[len(head) :]: v for k, v in params.items() if k.startswith(head)}


def join(prefix: str, name: str) -> str:
    """The official name of child ``name`` of module ``prefix``."""
    return f"{prefix}.{name}" if prefix else name


def _recorder(trace: Trace, prefix: str) -> Callable[[str, Any, Any], Any]:
    """``record(name, input, output)``: reports ``prefix.name`` to ``trace``; returns what to go on with."""

    def record(name: str, inputs: Any, output: Any) -> Any:
        return output if trace is None else trace(join(prefix, name), inputs, output)

    return record


class NumpyArithmetic:
    """The operations of the model on NumPy arrays, in the input's dtype (clauses 3-8)."""

    conv2d = staticmethod(conv2d)
    depthwise_conv2d = staticmethod(depthwise_conv2d)
    pointwise_conv2d = staticmethod(pointwise_conv2d)
    linear = staticmethod(linear)
    oversized_conv = staticmethod(oversized_conv)
    resize_kernel = staticmethod(resize_kernel)
    reparameterize = staticmethod(reparameterize)
    layer_norm_general = staticmethod(layer_norm_general)
    layer_norm = staticmethod(layer_norm)
    gelu = staticmethod(gelu)

    @staticmethod
    def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Elementwise product (the gates)."""
        return a * b

    @staticmethod
    def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Elementwise sum (the residuals, OC + DW7)."""
        return a + b

    @staticmethod
    def channel_scale(x: Any, scale: Any) -> np.ndarray:
        """x * scale over the last axis (clause 8.3), in x's dtype."""
        x = as_input(x)
        return x * cast(scale, x.dtype)

    @staticmethod
    def mean_hw(x: np.ndarray) -> np.ndarray:
        """Global average pool (clause 8.5): (N, H, W, C) -> (N, C)."""
        return x.mean(axis=(1, 2))

    @staticmethod
    def to_nchw(x: np.ndarray) -> np.ndarray:
        return x.transpose(0, 3, 1, 2)

    @staticmethod
    def to_nhwc(x: np.ndarray) -> np.ndarray:
        return x.transpose(0, 2, 3, 1)

    @staticmethod
    def halves(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
        """The first and second half of ``axis`` (the gates' channel split)."""
        half = x.shape[axis] // 2
        index = [slice(None)] * x.ndim
        first, second = list(index), list(index)
        first[axis], second[axis] = slice(0, half), slice(half, 2 * half)
        return x[tuple(first)], x[tuple(second)]

    @staticmethod
    def input(x: Any, layout: str, op: str) -> np.ndarray:
        """``x`` as an array of the compute dtype and the rank of ``layout`` (InputError otherwise)."""
        x = as_input(x)
        if x.ndim != len(layout):
            raise InputError(f"{op}: input must be {layout} (rank {len(layout)}), got shape {x.shape}")
        return x

    @staticmethod
    def merged_spatial(params: Params, x: np.ndarray, *, interpolate: bool | int, local_padding: int) -> np.ndarray:
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
        return depthwise_conv2d(x, reparameterize(kh[:, None, :, None], kw[:, None, None, :], k7))


class Composition:
    """The official structure of every component, over the arithmetic it is mixed with.

    The arithmetic provides ``conv2d``, ``depthwise_conv2d``, ``pointwise_conv2d``, ``linear``,
    ``oversized_conv``, ``layer_norm_general``, ``layer_norm``, ``gelu``, ``mul``, ``add``,
    ``channel_scale``, ``mean_hw``, ``to_nchw``, ``to_nhwc``, ``halves``, ``input`` and
    ``merged_spatial``, each with the signature of ``NumpyArithmetic``.
    """

    # The arithmetic's operations (declared for type checkers; the class mixed in provides them).
    conv2d: Callable[..., Any]
    depthwise_conv2d: Callable[..., Any]
    pointwise_conv2d: Callable[..., Any]
    linear: Callable[..., Any]
    oversized_conv: Callable[..., Any]
    layer_norm_general: Callable[..., Any]
    layer_norm: Callable[..., Any]
    gelu: Callable[..., Any]
    mul: Callable[[Any, Any], Any]
    add: Callable[[Any, Any], Any]
    channel_scale: Callable[[Any, Any], Any]
    mean_hw: Callable[[Any], Any]
    to_nchw: Callable[[Any], Any]
    to_nhwc: Callable[[Any], Any]
    halves: Callable[[Any, int], tuple[Any, Any]]
    input: Callable[[Any, str, str], Any]
    merged_spatial: Callable[..., Any]

    # ---- components (clause 14.2 signatures, plus trace and prefix) -----------------------------

    def downsampling(
        self, params: Params, x: Any, *, stride: int, padding: int, stem: bool, eps: float, trace: Trace = None,
        prefix: str = "",
    ) -> Any:  # fmt: skip
        """Stem (``stem=True``: NCHW in, conv, NHWC, post_norm) or downsampling layer (NHWC in,
        pre_norm, NCHW, conv, NHWC), clause 3. Returns NHWC (N, Ho, Wo, Cout)."""
        record = _recorder(trace, prefix)
        x = self.input(x, "NCHW" if stem else "NHWC", "downsampling")
        if not stem:
            x = self.to_nchw(record("pre_norm", x, self.layer_norm_general(x, params["pre_norm.weight"], eps)))
        x = self.to_nhwc(record("conv", x, self.conv2d(x, params["conv.weight"], params["conv.bias"], stride, padding)))
        return record("post_norm", x, self.layer_norm_general(x, params["post_norm.weight"], eps)) if stem else x

    def parc_spatial(self, params: Params, x: Any, *, interpolate: bool | int, local_padding: int) -> Any:
        """OC(x) + DW7(x), the spatial part of the token mixer (clauses 5, 6). x: (N, C, H, W)."""
        oc = self.oversized_conv(x, params["dwconv1.conv_h.weight"], params["dwconv1.conv_w.weight"], interpolate)
        return self.add(oc, self.depthwise_conv2d(x, params["dwconv2.weight"], padding=(local_padding,) * 2))

    def parc_spatial_reparameterized(
        self, params: Params, x: Any, *, interpolate: bool | int, local_padding: int
    ) -> Any:
        """OC(x) + DW7(x) as one dense depthwise conv with the merged kernel (clause 7.2). NCHW."""
        return self.merged_spatial(params, x, interpolate=interpolate, local_padding=local_padding)

    def token_mixer(
        self, params: Params, x: Any, *, interpolate: bool | int, local_padding: int, reparameterized: bool = False,
        trace: Trace = None, prefix: str = "",
    ) -> Any:  # fmt: skip
        """ParC V2 token mixer (clause 8.1): NHWC (N, H, W, C) in and out.

        pwconv1 (C -> 2C, bias); split channels x1 | x2; x2 = GELU(x2); x2 = OC(x2) + DW7(x2);
        x = x1 * x2; pwconv2 (C -> C, no bias). With ``reparameterized`` the spatial part uses the
        merged dense kernel (clause 7.2). With ``trace``, the modules ``dwconv1`` (and, in the
        fixed-kernel mode where they run on their own, ``dwconv1.conv_h`` and ``dwconv1.conv_w``)
        and ``dwconv2`` are reported too.
        """
        record = _recorder(trace, prefix)
        x = self.to_nchw(self.input(x, "NHWC", "token_mixer"))
        y = record("pwconv1", x, self.pointwise_conv2d(x, params["pwconv1.weight"], params["pwconv1.bias"]))
        gate, branch = self.halves(y, 1)
        act = record("act", branch, self.gelu(branch))
        if trace is not None:
            self._trace_spatial_modules(params, act, interpolate, local_padding, record)
        settings = {"interpolate": interpolate, "local_padding": local_padding}
        spatial = (self.parc_spatial_reparameterized if reparameterized else self.parc_spatial)(params, act, **settings)
        gated = self.mul(gate, spatial)
        return self.to_nhwc(record("pwconv2", gated, self.pointwise_conv2d(gated, params["pwconv2.weight"])))

    def _trace_spatial_modules(
        self, params: Params, act: Any, interpolate: bool | int, local_padding: int, record: Callable[..., Any]
    ) -> None:
        """The outputs of dwconv1 (conv_h, conv_w) and dwconv2 on their own (clauses 5.5, 6)."""
        k_h, k_w, k7 = params["dwconv1.conv_h.weight"], params["dwconv1.conv_w.weight"], params["dwconv2.weight"]
        if interpolate is False:  # the modules conv_h, conv_w run only in the fixed mode (clause 5.5)
            vertical = self.depthwise_conv2d(act, k_h, padding=(np.shape(k_h)[2] // 2, 0))
            vertical = record("dwconv1.conv_h", act, vertical)
            record("dwconv1.conv_w", vertical, self.depthwise_conv2d(vertical, k_w, padding=(0, np.shape(k_w)[3] // 2)))
        record("dwconv1", act, self.oversized_conv(act, k_h, k_w, interpolate))
        record("dwconv2", act, self.depthwise_conv2d(act, k7, padding=(local_padding, local_padding)))

    def bgu(self, params: Params, x: Any, *, trace: Trace = None, prefix: str = "") -> Any:
        """Channel bifurcate gate unit, the block's MLP (clause 8.2): (..., C) -> (..., C).

        fc1 (C -> 5C, bias); split the last axis x1 | x2 (2.5C each); x1 * GELU(x2); fc2 (no bias).
        """
        record = _recorder(trace, prefix)
        y = record("fc1", x, self.linear(x, params["fc1.weight"], params["fc1.bias"]))
        first, second = self.halves(y, -1)
        gated = self.mul(first, record("act", second, self.gelu(second)))
        return record("fc2", gated, self.linear(gated, params["fc2.weight"]))

    def scale(self, params: Params, x: Any) -> Any:
        """Scale (res_scale, clause 8.3): x * scale over the last axis, x (..., C)."""
        return self.channel_scale(x, params["scale"])

    def block(
        self, params: Params, x: Any, *, res_scale: bool, eps: float, interpolate: bool | int, local_padding: int,
        reparameterized: bool = False, trace: Trace = None, prefix: str = "",
    ) -> Any:  # fmt: skip
        """ParCNetV2 block (clause 8.4), NHWC (N, H, W, C) in and out:
        x = res_scale1(x) + token_mixer(norm1(x)); x = res_scale2(x) + mlp(norm2(x)).
        ``res_scale`` False means both scales are identities (stages 0 and 1 of the official model)."""
        record = _recorder(trace, prefix)
        x = self.input(x, "NHWC", "block")
        normed = record("norm1", x, self.layer_norm_general(x, params["norm1.weight"], eps))
        mixer = subtree(params, "token_mixer")
        mixed = self.token_mixer(
            mixer, normed, interpolate=interpolate, local_padding=local_padding, reparameterized=reparameterized,
            trace=trace, prefix=join(prefix, "token_mixer"),
        )  # fmt: skip
        mixed = record("token_mixer", normed, mixed)
        residual = record("res_scale1", x, self.scale(subtree(params, "res_scale1"), x)) if res_scale else x
        x = self.add(residual, mixed)
        normed = record("norm2", x, self.layer_norm_general(x, params["norm2.weight"], eps))
        gated = record("mlp", normed, self.bgu(subtree(params, "mlp"), normed, trace=trace, prefix=join(prefix, "mlp")))
        residual = record("res_scale2", x, self.scale(subtree(params, "res_scale2"), x)) if res_scale else x
        return self.add(residual, gated)

    def stage(self, params: Params, x: Any, *, depth: int, trace: Trace = None, prefix: str = "", **settings) -> Any:
        """One stage: ``depth`` blocks in sequence (clause 8.4), NHWC in and out."""
        record = _recorder(trace, prefix)
        for j in range(depth):
            name = str(j)
            x = record(
                name, x, self.block(subtree(params, name), x, trace=trace, prefix=join(prefix, name), **settings)
            )
        return x

    def model(self, config: Any, params: Params, x: Any, *, reparameterized: bool = False, trace: Trace = None) -> Any:
        """Whole model (clause 2): NCHW images (N, 3, H, W) -> logits (N, num_classes).

        ``config`` is a ``parcnetv2.reference.Config``; ``params`` the whole state_dict; ``trace``
        receives every named module (official names and layouts), the model itself as ``""``.
        """
        record = _recorder(trace, "")
        parts = {c.name: c for c in components(config)}
        image = x
        for i in range(len(config.depths)):
            for name in (f"downsample_layers.{i}", f"stages.{i}"):
                part = parts[name]
                settings = dict(part.settings)
                if part.kind == "stage":
                    settings["reparameterized"] = reparameterized
                run = getattr(self, part.kind)
                x = record(name, x, run(subtree(params, name), x, trace=trace, prefix=name, **settings))
        pooled = self.mean_hw(self.input(x, "NHWC", "head"))
        features = record(
            "norm", pooled, self.layer_norm(pooled, params["norm.weight"], params["norm.bias"], config.eps)
        )
        logits = record("head", features, self.linear(features, params["head.weight"], params["head.bias"]))
        return record("", image, logits)


class Reference(NumpyArithmetic, Composition):
    """The golden model: the official composition over NumPy arithmetic (float32 or float64)."""


REFERENCE = Reference()

# The components as plain functions (the signatures of the backend protocol, clause 14.2).
downsampling = REFERENCE.downsampling
parc_spatial = REFERENCE.parc_spatial
parc_spatial_reparameterized = REFERENCE.parc_spatial_reparameterized
token_mixer = REFERENCE.token_mixer
bgu = REFERENCE.bgu
block = REFERENCE.block
