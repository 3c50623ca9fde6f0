"""The reference with first-order error bounds (spec clauses 11.4-11.9).

``BoundedReference(dtype)`` computes every ParCNetV2 operation and component in float64, exactly
as ``parcnetv2.reference`` does (it calls the reference's operations for the values), and carries
beside each value an elementwise bound on how far an implementation that computes in ``dtype``
may legitimately be from it. The bound of an output is its own rounding term plus the errors of
its inputs pushed through the operation (through the absolute weights of a linear operation, the
derivative of GELU, the Jacobian of a normalisation). The rules, per operation, are clauses
11.5-11.8; their constants live in ``spec/tolerance.toml`` and are read through
``parcnetv2.spec.tolerance``.

Shape legend: N batch, C channels, H height, W width, K kernel length. Layouts are the official
ones (clause 1.2): the stem reads NCHW, blocks and norms NHWC, convolutions NCHW inside.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import erf

from parcnetv2 import reference as R
from parcnetv2.errors import InputError
from parcnetv2.reference.components import Composition, NumpyArithmetic
from parcnetv2.reference.oversized import instance_kernels
from parcnetv2.reference.registry import evaluate
from parcnetv2.spec.tolerance import gamma, propagation_length

__all__ = ["Bounded", "BoundedArithmetic", "BoundedReference", "exact"]

Params = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Bounded:
    """A float64 reference value and an elementwise error bound of the same shape."""

    value: np.ndarray
    error: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    def transpose(self, *axes: int) -> Bounded:
        return Bounded(self.value.transpose(*axes), self.error.transpose(*axes))

    def __getitem__(self, index: Any) -> Bounded:
        return Bounded(self.value[index], self.error[index])


def exact(x: Any) -> Bounded:
    """An input the implementation receives exactly: float64 values, zero error."""
    value = np.asarray(x, dtype=np.float64)
    return Bounded(value, np.zeros_like(value))


def _abs(w: Any) -> np.ndarray | None:
    return None if w is None else np.abs(np.asarray(w, dtype=np.float64))


def _sq(w: Any) -> np.ndarray:
    return np.square(np.asarray(w, dtype=np.float64))


def _quadrature(apply: Callable[[np.ndarray], np.ndarray], error: np.ndarray) -> np.ndarray | float:
    """sqrt(apply(error^2)): input errors through squared weights (0 for exact inputs)."""
    return np.sqrt(apply(error * error)) if error.any() else 0.0


def _contiguous(x: Bounded) -> Bounded:
    # Transposed views would send every later matmul to NumPy's slow strided loop.
    return Bounded(np.ascontiguousarray(x.value), np.ascontiguousarray(x.error))


def _oc_fixed(x: np.ndarray, kh: np.ndarray, kw: np.ndarray) -> np.ndarray:
    """OC with explicit 1-D kernels kh (C, Kh), kw (C, Kw) and paddings Kh//2, Kw//2 (clause 5.1);
    the instance kernels of every mode (5.2, 5.3) use exactly these paddings."""
    return R.oversized_conv(x, kh[:, None, :, None], kw[:, None, None, :], False)


class BoundedArithmetic:
    """The model's operations on ``Bounded`` values, with the bounds of an implementation computing
    in ``dtype`` (clauses 11.4-11.8).

    Every method mirrors ``parcnetv2.reference.components.NumpyArithmetic``'s operation of the same
    name (same arguments, layouts and shapes) but takes and returns ``Bounded`` activations; weights
    are plain arrays holding the exact values the implementation received (already rounded to its
    format). Values are computed by the reference's own operations in float64.
    """

    def __init__(self, dtype: Any):
        self.dtype = np.dtype(dtype)

    def gamma(self, n: float) -> float:
        """Rounding factor c * sqrt(n) * (u + u64) of an operation of length n (clause 11.5)."""
        return gamma(max(n, 1), self.dtype)

    # ---- linear operations (clause 11.5) -------------------------------------------------------
    # e_out = sqrt(W^2 e_in^2) + g(n) (|W| |x| + |b|): the errors of different inputs combine in
    # quadrature (the independence assumption behind the sqrt(n) of clause 11.1), the operation's
    # own rounding is bounded by magnitudes as in clause 11.1.

    def conv2d(self, x: Bounded, weight, bias=None, stride=1, padding=0) -> Bounded:
        """Dense conv (clause 3); x (N, Cin, H, W) -> (N, Cout, Ho, Wo)."""
        cin, kh, kw = np.shape(weight)[1:]
        g = self.gamma(cin * min(kh, x.shape[2]) * min(kw, x.shape[3]) + (bias is not None))
        value = R.conv2d(x.value, weight, bias, stride, padding)
        bound_bias = None if bias is None else g * _abs(bias)
        error = _quadrature(lambda e2: R.conv2d(e2, _sq(weight), None, stride, padding), x.error) + R.conv2d(
            g * np.abs(x.value), _abs(weight), bound_bias, stride, padding
        )
        return Bounded(value, error)

    def depthwise_conv2d(self, x: Bounded, weight, bias=None, padding=None) -> Bounded:
        """Depthwise conv (clauses 6, 7); x (N, C, H, W), weight (C, 1, KH, KW)."""
        kh, kw = np.shape(weight)[2:]
        g = self.gamma(min(kh, x.shape[2]) * min(kw, x.shape[3]) + (bias is not None))
        value = R.depthwise_conv2d(x.value, weight, bias, padding)
        bound_bias = None if bias is None else g * _abs(bias)
        error = _quadrature(
            lambda e2: R.depthwise_conv2d(e2, _sq(weight), None, padding), x.error
        ) + R.depthwise_conv2d(g * np.abs(x.value), _abs(weight), bound_bias, padding)
        return Bounded(value, error)

    def pointwise_conv2d(self, x: Bounded, weight, bias=None) -> Bounded:
        """1x1 conv (clause 8.1); x (N, Cin, H, W), weight (Cout, Cin, 1, 1)."""
        g = self.gamma(np.shape(weight)[1] + (bias is not None))
        value = R.pointwise_conv2d(x.value, weight, bias)
        bound_bias = None if bias is None else g * _abs(bias)
        error = _quadrature(lambda e2: R.pointwise_conv2d(e2, _sq(weight)), x.error) + R.pointwise_conv2d(
            g * np.abs(x.value), _abs(weight), bound_bias
        )
        return Bounded(value, error)

    def linear(self, x: Bounded, weight, bias=None) -> Bounded:
        """Linear over the last axis (clauses 8.2, 8.5); x (..., Cin), weight (Cout, Cin)."""
        g = self.gamma(np.shape(weight)[1] + (bias is not None))
        value = R.linear(x.value, weight, bias)
        bound_bias = None if bias is None else g * _abs(bias)
        error = _quadrature(lambda e2: R.linear(e2, _sq(weight)), x.error) + R.linear(
            g * np.abs(x.value), _abs(weight), bound_bias
        )
        return Bounded(value, error)

    def resize_kernel(self, kernel, size: int) -> Bounded:
        """Linearly interpolated 1-D kernels (clause 5.2); kernel (C, K) -> (C, size).

        Rounding (clause 11.6): g(resize_length) * (1 + p) * m at source position p, where m sums
        |k| over the taps lo - 1 .. lo + 2 around p: p itself is rounded in the working format, so
        an implementation may blend the neighbours on either side of an integer position.
        """
        kernel = np.asarray(kernel, dtype=np.float64)
        k = kernel.shape[-1]
        position = np.arange(size) * ((k - 1) / (size - 1) if size > 1 else 0.0)
        lo = np.floor(position).astype(np.int64)
        neighbours = np.clip(lo[:, None] + np.arange(-1, 3)[None, :], 0, k - 1)  # (size, 4)
        window = np.abs(kernel)[..., neighbours]  # (C, size, 4); a clipped tap may repeat, which only widens
        magnitude = window.sum(axis=-1) * (1.0 + position)
        error = self.gamma(propagation_length("resize_length")) * magnitude
        return Bounded(R.resize_kernel(kernel, size), error)

    def _instance_kernels(self, k_h, k_w, height: int, width: int, interpolate) -> tuple[Bounded, Bounded]:
        """The (possibly resized) 1-D kernels an H x W input uses, with their errors (clause 5)."""
        kh, kw, _, _ = instance_kernels(
            np.asarray(k_h, np.float64), np.asarray(k_w, np.float64), height, width, interpolate
        )
        if interpolate is False or interpolate is None:
            return exact(kh), exact(kw)
        return self.resize_kernel(k_h[:, 0, :, 0], kh.shape[-1]), self.resize_kernel(k_w[:, 0, 0, :], kw.shape[-1])

    def _separable_error(self, x: Bounded, kh: Bounded, kw: Bounded, g: float) -> np.ndarray:
        """Input errors in quadrature through the rank-1 kernel kh kw^T, the rounding g |kh kw^T| * |x|,
        and the kernels' own (resize) errors through |x|."""
        akh, akw, ax = np.abs(kh.value), np.abs(kw.value), np.abs(x.value)
        return (
            _quadrature(lambda e2: _oc_fixed(e2, akh**2, akw**2), x.error)
            + _oc_fixed(g * ax, akh, akw)
            + _oc_fixed(ax, kh.error, akw)
            + _oc_fixed(ax, akh, kw.error)
        )

    def oversized_conv(self, x: Bounded, k_h, k_w, interpolate=False) -> Bounded:
        """OC (clause 5); x (N, C, H, W), k_h (C, 1, K, 1), k_w (C, 1, 1, K).

        Length (clause 11.6): n = (n_h + 1)(n_w + 1) with n_h = min(K_h, H), n_w = min(K_w, W),
        which covers both pass orders (conv_h first or conv_w first) and the dense rank-1 kernel.
        """
        h, w = x.shape[2:]
        kh, kw = self._instance_kernels(k_h, k_w, h, w, interpolate)
        n = (min(kh.shape[-1], h) + 1) * (min(kw.shape[-1], w) + 1)
        value = R.oversized_conv(x.value, k_h, k_w, interpolate)
        return Bounded(value, self._separable_error(x, kh, kw, self.gamma(n)))

    def parc_spatial(self, params: Params, x: Bounded, *, interpolate, local_padding: int) -> Bounded:
        """OC(x) + DW7(x) (clauses 5, 6, 7.2); x (N, C, H, W).

        Length (clause 11.6): n = (n_h + 2)(n_w + 2) with n_h = min(max(K_h, L), H), likewise n_w
        (L = 7): it covers the separable form with a separate sum and the merged dense kernel
        (whose taps carry one rounding each) of clause 7.
        """
        h, w = x.shape[2:]
        k7 = params["dwconv2.weight"]
        local = np.shape(k7)[2]
        kh, kw = self._instance_kernels(
            params["dwconv1.conv_h.weight"], params["dwconv1.conv_w.weight"], h, w, interpolate
        )
        n = (min(max(kh.shape[-1], local), h) + 2) * (min(max(kw.shape[-1], local), w) + 2)
        g = self.gamma(n)
        value = R.parc_spatial(params, x.value, interpolate=interpolate, local_padding=local_padding)
        pad = (local_padding, local_padding)
        local_error = _quadrature(
            lambda e2: R.depthwise_conv2d(e2, _sq(k7), padding=pad), x.error
        ) + R.depthwise_conv2d(g * np.abs(x.value), _abs(k7), padding=pad)
        return Bounded(value, self._separable_error(x, kh, kw, g) + local_error)

    def parc_spatial_reparameterized(self, params: Params, x: Bounded, *, interpolate, local_padding: int) -> Bounded:
        """Clause 7.2: the same values and bound as ``parc_spatial`` (exact arithmetic agrees)."""
        return self.parc_spatial(params, x, interpolate=interpolate, local_padding=local_padding)

    def reparameterize(self, k_h, k_w, k7) -> Bounded:
        """Merged dense kernel (clause 7.1): one product and one sum per tap, g(2) |k_h k_w^T + k7|."""
        value = R.reparameterize(np.asarray(k_h, np.float64), k_w, k7)
        return Bounded(value, self.gamma(2) * R.reparameterize(_abs(k_h), _abs(k_w), _abs(k7)))

    # ---- elementwise operations (clause 11.7) --------------------------------------------------

    def gelu(self, x: Bounded) -> Bounded:
        """GELU (clause 8.1): |GELU'(x)| e + g(gelu_length) * 0.5 |x| (1 + |erf(x / sqrt 2)|)."""
        v = x.value
        erf_v = erf(v / math.sqrt(2.0))
        slope = 0.5 * (1.0 + erf_v) + v * np.exp(-0.5 * v * v) / math.sqrt(2.0 * math.pi)
        magnitude = 0.5 * np.abs(v) * (1.0 + np.abs(erf_v))
        error = np.abs(slope) * x.error + self.gamma(propagation_length("gelu_length")) * magnitude
        return Bounded(R.gelu(v), error)

    def mul(self, a: Bounded, b: Bounded) -> Bounded:
        """Elementwise product (the gates): |a| e_b + |b| e_a + g(1) |ab|."""
        value = a.value * b.value
        error = np.abs(a.value) * b.error + np.abs(b.value) * a.error + self.gamma(1) * np.abs(value)
        return Bounded(value, error)

    def add(self, a: Bounded, b: Bounded) -> Bounded:
        """Elementwise sum (the residuals): e_a + e_b + g(1) |a + b|."""
        value = a.value + b.value
        return Bounded(value, a.error + b.error + self.gamma(1) * np.abs(value))

    def channel_scale(self, x: Bounded, scale) -> Bounded:
        """Scale (clause 8.3), x (..., C): |s| e + g(1) |x s|."""
        s = np.asarray(scale, dtype=np.float64)
        value = x.value * s
        return Bounded(value, np.abs(s) * x.error + self.gamma(1) * np.abs(value))

    # ---- normalisations (clause 11.8) ---------------------------------------------------------

    def _normalise(self, x: Bounded, weight, bias, eps: float, standard: bool) -> Bounded:
        """y = alpha * c / s * w (+ b), c = x - mean(x), over the last axis (length C).

        LayerNormGeneral: alpha = 1, s = max(||c||, eps). LayerNorm: alpha = sqrt(C),
        s = sqrt(||c||^2 + C eps). First order, with D the perturbation of c (input errors e plus
        their mean ||e||_2 / C in quadrature, the rounded mean g(C) mean|x|, the rounded
        subtraction g(1)|c|) and the unit direction d = c / s:
        |dy| <= alpha |w| / s (D + |d| sqrt(sum d^2 D^2)), plus a relative rounding of the norm,
        g(C) sum(x^2) / s^2 (which admits the one-pass variance E[x^2] - E[x]^2) and
        g(norm_length) for the square root, division, weight product and bias sum.
        """
        v = x.value
        size = v.shape[-1]
        centred = v - v.mean(axis=-1, keepdims=True)
        squares = np.sum(centred * centred, axis=-1, keepdims=True)
        if standard:
            value = R.layer_norm(v, weight, bias, eps)
            s, alpha = np.sqrt(squares + size * eps), math.sqrt(size)
        else:
            value = R.layer_norm_general(v, weight, eps)
            s, alpha = np.maximum(np.sqrt(squares), eps), 1.0
        e = x.error
        perturbation = (
            e
            + np.sqrt(np.sum(e * e, axis=-1, keepdims=True)) / size
            + self.gamma(size) * np.abs(v).mean(axis=-1, keepdims=True)
            + self.gamma(1) * np.abs(centred)
        )
        direction = centred / s
        projection = np.sqrt(np.sum((direction * perturbation) ** 2, axis=-1, keepdims=True))
        gain = alpha * np.abs(np.asarray(weight, dtype=np.float64)) / s
        relative = self.gamma(size) * np.sum(v * v, axis=-1, keepdims=True) / (s * s) + self.gamma(
            propagation_length("norm_length")
        )
        error = gain * (perturbation + np.abs(direction) * projection) + relative * gain * np.abs(centred)
        if bias is not None:
            error = error + self.gamma(1) * np.abs(value)
        return Bounded(value, error)

    def layer_norm_general(self, x: Bounded, weight, eps: float = 1e-6) -> Bounded:
        """LayerNormGeneral (clause 4.1), x (..., C)."""
        return self._normalise(x, weight, None, eps, standard=False)

    def layer_norm(self, x: Bounded, weight, bias, eps: float = 1e-6) -> Bounded:
        """Standard LayerNorm (clause 4.2), x (..., C)."""
        return self._normalise(x, weight, bias, eps, standard=True)

    def mean_hw(self, x: Bounded) -> Bounded:
        """Global average pool (clause 8.5), (N, H, W, C) -> (N, C): mean(e) + g(HW) mean|x|."""
        g = self.gamma(x.shape[1] * x.shape[2])
        value = x.value.mean(axis=(1, 2))
        return Bounded(value, x.error.mean(axis=(1, 2)) + g * np.abs(x.value).mean(axis=(1, 2)))

    # ---- structure: layouts and splits carry their errors along ----------------------------------

    @staticmethod
    def input(x: Bounded, layout: str, op: str) -> Bounded:
        if len(x.shape) != len(layout):
            raise InputError(f"{op}: input must be {layout} (rank {len(layout)}), got shape {x.shape}")
        return x

    @staticmethod
    def to_nchw(x: Bounded) -> Bounded:
        return _contiguous(x.transpose(0, 3, 1, 2))

    @staticmethod
    def to_nhwc(x: Bounded) -> Bounded:
        return _contiguous(x.transpose(0, 2, 3, 1))

    @staticmethod
    def halves(x: Bounded, axis: int) -> tuple[Bounded, Bounded]:
        first, second = NumpyArithmetic.halves(x.value, axis)
        first_error, second_error = NumpyArithmetic.halves(x.error, axis)
        return Bounded(first, first_error), Bounded(second, second_error)


class BoundedReference(BoundedArithmetic, Composition):
    """The official composition (``parcnetv2.reference.components``) over bounded arithmetic: every
    component and the whole model with the bounds of clause 11.9, the same code as the reference."""

    def component(self, kind: str, params: Params, x: Bounded, settings: Mapping[str, Any]) -> Bounded:
        """One named component of ``Model.component_info(name)`` (its kind and settings), with the
        component's own parameters (prefix removed) and input in its official layout."""
        settings = {k: v for k, v in settings.items() if k != "reparameterized"}  # clause 7.2: same bound
        return evaluate(self, kind, params, x, settings)
