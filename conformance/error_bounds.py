"""The reference with probabilistic first-order error bounds (spec clauses 11.4-11.10).

``BoundedReference(dtype, regime)`` computes every ParCNetV2 operation, component and the whole
model in float64 with the reference's own operations and composition, and carries beside each value
``sigma``: a per-element standard-deviation proxy of the first-order rounding error of an
implementation computing in ``dtype``. The comparison bound of a tensor of N elements is
``lambda(N, eta) * sigma + tiny`` (``parcnetv2.spec.tolerance.probabilistic_bound``).

The model (Higham and Mary, SIAM J. Sci. Comput. 41(5), 2019): every elementary operation returns
its exact result times 1 + delta, the deltas independent with mean zero and |delta| <= u. To first
order an output's error is a sum of independent bounded terms, each an operation's rounding pushed
through the network's derivative: a sub-Gaussian variable whose variance proxy sigma^2 is obtained by
giving every operation its own sigma (clauses 11.5-11.8) and propagating in quadrature. u' = u +
u64 includes the reference's own rounding, so a float64 implementation passes too.

``regime``: "drawn" for weights the harness draws (clause 14.4: every weight's sign drawn
independently and symmetrically), where the partial sums of any summation order fixed independently
of the weights satisfy E[s_k^2] <= sum (w_j x_j)^2 + b^2, so a length-n operation has
sigma^2 = u'^2 (n + 1) ((W^2)(x^2) + b^2); "any" for other weights (trained, a user's file), where
only |s_k| <= sum |w_j x_j| + |b| is known: sigma^2 = u'^2 (n + 1) (|W||x| + |b|)^2.

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
from parcnetv2.spec.tolerance import (
    probabilistic_constant,
    probabilistic_factor,
    propagation_length,
    reduction_length,
    unit_roundoff,
)

__all__ = ["REGIMES", "Bounded", "BoundedArithmetic", "BoundedReference", "exact"]

Params = Mapping[str, np.ndarray]
REGIMES = ("drawn", "any")
_DFT_FACTOR = probabilistic_constant("dft_factor")


@dataclass(frozen=True)
class Bounded:
    """A float64 reference value and the standard-deviation proxy ``sigma`` of an implementation's
    first-order rounding error there (same shape)."""

    value: np.ndarray
    sigma: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    def transpose(self, *axes: int) -> Bounded:
        return Bounded(self.value.transpose(*axes), self.sigma.transpose(*axes))

    def __getitem__(self, index: Any) -> Bounded:
        return Bounded(self.value[index], self.sigma[index])


def exact(x: Any) -> Bounded:
    """An input the implementation receives exactly: float64 values, no error."""
    value = np.asarray(x, dtype=np.float64)
    return Bounded(value, np.zeros_like(value))


def _f64(a: Any) -> np.ndarray | None:
    return None if a is None else np.asarray(a, dtype=np.float64)


def _contiguous(x: Bounded) -> Bounded:
    # Transposed views would send every later matmul to NumPy's slow strided loop.
    return Bounded(np.ascontiguousarray(x.value), np.ascontiguousarray(x.sigma))


def _oc_fixed(x: np.ndarray, kh: np.ndarray, kw: np.ndarray) -> np.ndarray:
    """OC with explicit 1-D kernels kh (C, Kh), kw (C, Kw) and paddings Kh//2, Kw//2 (clause 5.1);
    the instance kernels of every mode (5.2, 5.3) use exactly these paddings."""
    return R.oversized_conv(x, kh[:, None, :, None], kw[:, None, None, :], False)


class BoundedArithmetic:
    """The model's operations on ``Bounded`` values (clauses 11.5-11.8).

    Every method mirrors ``parcnetv2.reference.components.NumpyArithmetic``'s operation of the same
    name (same arguments, layouts and shapes) but takes and returns ``Bounded`` activations; weights
    are plain arrays holding the exact values the implementation received (already rounded to its
    format). Values are computed by the reference's own operations in float64.
    """

    def __init__(self, dtype: Any, regime: str = "drawn", *, dft: bool = False):
        if regime not in REGIMES:
            raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")
        self.dtype = np.dtype(dtype)
        self.regime = regime
        self.dft = dft  # the implementation's FFT passes are direct DFTs (clause 11.6)
        self.u = unit_roundoff(self.dtype) + unit_roundoff(np.float64)

    def bound(self, x: Bounded) -> np.ndarray:
        """The comparison bound lambda(N, eta) * sigma + tiny of the whole tensor ``x`` (clause 11.4)."""
        factor = probabilistic_factor(x.value.size)
        return factor * x.sigma + float(np.finfo(self.dtype).tiny)

    # ---- linear operations (clause 11.5) -------------------------------------------------------
    # sigma^2 = (W^2)(sigma_x^2) + u'^2 (n + 1) M^2, n the products of one output that can overlap
    # the input plus one for a bias; M^2 = (W^2)(x^2) + b^2 ("drawn") or (|W||x| + |b|)^2 ("any").

    def _magnitude2(self, op: Callable[..., np.ndarray], x: np.ndarray, w: np.ndarray, b, value) -> np.ndarray:
        """M^2 of clause 11.5 for every output ``value`` of ``op``.

        "drawn": max((W^2)(x^2) + b^2, y^2). The partial sums of a sum of random-sign terms that ends
        at y behave like a bridge, E[s_k^2 | y] = (k/n)^2 y^2 + (k/n)(1 - k/n) M^2, so the end point
        bounds them too; conditioning on it removes the heavy tail of unusually large outputs.
        "any": (|W||x| + |b|)^2, which is at least y^2 already."""
        if self.regime == "drawn":
            return np.maximum(op(x * x, w * w, None if b is None else b * b), value * value)
        return op(np.abs(x), np.abs(w), None if b is None else np.abs(b)) ** 2

    def _linear(self, op: Callable[..., np.ndarray], x: Bounded, weight, bias, n: int, **kw) -> Bounded:
        w, b = _f64(weight), _f64(bias)

        def apply(a: np.ndarray, weights: np.ndarray, offset: np.ndarray | None) -> np.ndarray:
            return op(a, weights, offset, **kw)

        value = apply(x.value, w, b)
        variance = self.u**2 * (n + 1) * self._magnitude2(apply, x.value, w, b, value)
        if x.sigma.any():
            variance = variance + apply(x.sigma * x.sigma, w * w, None)
        return Bounded(value, np.sqrt(variance))

    def conv2d(self, x: Bounded, weight, bias=None, stride=1, padding=0) -> Bounded:
        """Dense conv (clause 3); x (N, Cin, H, W) -> (N, Cout, Ho, Wo)."""
        cin, kh, kw = np.shape(weight)[1:]
        n = reduction_length("conv2d", kernel=(kh, kw), size=x.shape[2:], in_channels=cin, bias=bias is not None)
        return self._linear(R.conv2d, x, weight, bias, n, stride=stride, padding=padding)

    def depthwise_conv2d(self, x: Bounded, weight, bias=None, padding=None) -> Bounded:
        """Depthwise conv (clauses 6, 7); x (N, C, H, W), weight (C, 1, KH, KW)."""
        kh, kw = np.shape(weight)[2:]
        n = reduction_length("depthwise_conv2d", kernel=(kh, kw), size=x.shape[2:], bias=bias is not None)
        return self._linear(R.depthwise_conv2d, x, weight, bias, n, padding=padding)

    def pointwise_conv2d(self, x: Bounded, weight, bias=None) -> Bounded:
        """1x1 conv (clause 8.1); x (N, Cin, H, W), weight (Cout, Cin, 1, 1)."""
        n = reduction_length("linear", in_channels=np.shape(weight)[1], bias=bias is not None)
        return self._linear(R.pointwise_conv2d, x, weight, bias, n)

    def linear(self, x: Bounded, weight, bias=None) -> Bounded:
        """Linear over the last axis (clauses 8.2, 8.5); x (..., Cin), weight (Cout, Cin)."""
        n = reduction_length("linear", in_channels=np.shape(weight)[1], bias=bias is not None)
        return self._linear(R.linear, x, weight, bias, n)

    # ---- kernels (clauses 5.2, 7.1, 11.6) -------------------------------------------------------

    def resize_kernel(self, kernel, size: int) -> Bounded:
        """Linearly interpolated 1-D kernels (clause 5.2); kernel (C, K) -> (C, size).

        A worst case, carried as sigma (clause 11.6): u' sqrt(resize_length) (1 + p) m at source
        position p, m the sum of |k| over the taps lo - 1 .. lo + 2 around p (p itself is rounded in
        the working format, so an implementation may blend the neighbours on either side of an
        integer position).
        """
        kernel = np.asarray(kernel, dtype=np.float64)
        k = kernel.shape[-1]
        position = np.arange(size) * ((k - 1) / (size - 1) if size > 1 else 0.0)
        lo = np.floor(position).astype(np.int64)
        neighbours = np.clip(lo[:, None] + np.arange(-1, 3)[None, :], 0, k - 1)  # (size, 4)
        window = np.abs(kernel)[..., neighbours]  # (C, size, 4); a clipped tap may repeat, which only widens
        magnitude = window.sum(axis=-1) * (1.0 + position)
        sigma = self.u * math.sqrt(propagation_length("resize_length")) * magnitude
        return Bounded(R.resize_kernel(kernel, size), sigma)

    def _instance_kernels(self, k_h, k_w, height: int, width: int, interpolate) -> tuple[Bounded, Bounded]:
        """The (possibly resized) 1-D kernels an H x W input uses, with their errors (clause 5)."""
        kh, kw, _, _ = instance_kernels(_f64(k_h), _f64(k_w), height, width, interpolate)
        if interpolate is False or interpolate is None:
            return exact(kh), exact(kw)
        return self.resize_kernel(k_h[:, 0, :, 0], kh.shape[-1]), self.resize_kernel(k_w[:, 0, 0, :], kw.shape[-1])

    def reparameterize(self, k_h, k_w, k7) -> Bounded:
        """Merged dense kernel (clause 7.1): one product and one sum per tap, u' sqrt 2 |k_h k_w^T + k7|."""
        value = R.reparameterize(_f64(k_h), k_w, k7)
        magnitude = R.reparameterize(np.abs(_f64(k_h)), np.abs(_f64(k_w)), np.abs(_f64(k7)))
        return Bounded(value, self.u * math.sqrt(2.0) * magnitude)

    # ---- oversized convolution and the spatial part (clause 11.6) -------------------------------

    def _spatial(
        self, x: Bounded, kh: Bounded, kw: Bounded, k7, local_padding: int, n: int, value: np.ndarray
    ) -> np.ndarray:
        """sigma of OC (+ DW7 when ``k7`` is given) with the instance kernels kh (C, Kh), kw (C, Kw)
        and output ``value`` (the end point of clause 11.5's "drawn" magnitude)."""
        akh, akw, ax = np.abs(kh.value), np.abs(kw.value), np.abs(x.value)
        pad = (local_padding, local_padding)
        k7 = _f64(k7)

        def squared(a: np.ndarray) -> np.ndarray:  # the operation with squared kernels
            out = _oc_fixed(a, akh**2, akw**2)
            return out if k7 is None else out + R.depthwise_conv2d(a, k7**2, padding=pad)

        if self.regime == "drawn":
            magnitude2 = np.maximum(squared(ax * ax), value * value)
        else:
            m = _oc_fixed(ax, akh, akw)
            magnitude2 = (m if k7 is None else m + R.depthwise_conv2d(ax, np.abs(k7), padding=pad)) ** 2
        variance = self.u**2 * (n + 1) * magnitude2 + self._fft_variance(x.value, kh.value, kw.value)
        if x.sigma.any():
            variance = variance + squared(x.sigma * x.sigma)
        # Resized kernels (clauses 5.2, 5.3): their errors are shared by every position; worst case.
        kernels = _oc_fixed(ax, kh.sigma, akw) + _oc_fixed(ax, akh, kw.sigma)
        return np.sqrt(variance) + kernels

    def _fft_variance(self, x: np.ndarray, kh: np.ndarray, kw: np.ndarray) -> np.ndarray:
        """Clause 11.6, FFT passes: a zero-padded FFT correlation of length L rounds each output with
        the energy of its whole line, u'^2 log2(L) |k|^2 |line|^2, not with the taps that reach it;
        either pass order, the first pass's error carried through the second kernel. x (N, C, H, W),
        kh (C, Kh), kw (C, Kw)."""
        h, w = x.shape[2:]
        log_h, log_w = (self._fft_growth(n + k.shape[-1] - 1) for n, k in ((h, kh), (w, kw)))
        sh, sw = (np.sum(k * k, axis=-1)[None, :, None, None] for k in (kh, kw))
        one = np.ones((x.shape[1], 1))
        x2 = x * x
        columns = np.broadcast_to(np.sum(x2, axis=2, keepdims=True), x.shape)
        rows = np.broadcast_to(np.sum(x2, axis=3, keepdims=True), x.shape)
        after_h, after_w = _oc_fixed(x, kh, one), _oc_fixed(x, one, kw)
        h_first = log_h * sh * _oc_fixed(columns, one, kw * kw) + log_w * sw * np.sum(after_h**2, 3, keepdims=True)
        w_first = log_w * sw * _oc_fixed(rows, kh * kh, one) + log_h * sh * np.sum(after_w**2, 2, keepdims=True)
        return self.u**2 * np.maximum(h_first, w_first)

    def _fft_growth(self, length: int) -> float:
        """How an FFT pass of ``length`` grows the variance: log2(L), or for a direct DFT
        dft_factor * L^2 (clause 11.6)."""
        return _DFT_FACTOR * length**2 if self.dft else float(np.log2(length))

    def oversized_conv(self, x: Bounded, k_h, k_w, interpolate=False) -> Bounded:
        """OC (clause 5); x (N, C, H, W), k_h (C, 1, K, 1), k_w (C, 1, 1, K).

        Length (clause 11.6): n = (n_h + 1)(n_w + 1) with n_h = min(K_h, H), n_w = min(K_w, W),
        which covers both pass orders (conv_h first or conv_w first) and the dense rank-1 kernel.
        """
        h, w = x.shape[2:]
        kh, kw = self._instance_kernels(k_h, k_w, h, w, interpolate)
        n = reduction_length("oversized_conv", kernel=(kh.shape[-1], kw.shape[-1]), size=(h, w))
        value = R.oversized_conv(x.value, k_h, k_w, interpolate)
        return Bounded(value, self._spatial(x, kh, kw, None, 0, n, value))

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
        n = reduction_length("parc_spatial", kernel=(kh.shape[-1], kw.shape[-1]), size=(h, w), local=local)
        value = R.parc_spatial(params, x.value, interpolate=interpolate, local_padding=local_padding)
        return Bounded(value, self._spatial(x, kh, kw, k7, local_padding, n, value))

    def parc_spatial_reparameterized(self, params: Params, x: Bounded, *, interpolate, local_padding: int) -> Bounded:
        """Clause 7.2: the same values and bound as ``parc_spatial`` (exact arithmetic agrees)."""
        return self.parc_spatial(params, x, interpolate=interpolate, local_padding=local_padding)

    # ---- elementwise operations (clause 11.7) --------------------------------------------------

    def gelu(self, x: Bounded) -> Bounded:
        """GELU (clause 8.1): sigma^2 = (GELU'(x) sigma_x)^2 + (g u' 0.5 |x| (1 + |erf(x/sqrt 2)|))^2."""
        v = x.value
        erf_v = erf(v / math.sqrt(2.0))
        slope = 0.5 * (1.0 + erf_v) + v * np.exp(-0.5 * v * v) / math.sqrt(2.0 * math.pi)
        magnitude = 0.5 * np.abs(v) * (1.0 + np.abs(erf_v))
        sigma = np.hypot(slope * x.sigma, probabilistic_constant("gelu_factor") * self.u * magnitude)
        return Bounded(R.gelu(v), sigma)

    def mul(self, a: Bounded, b: Bounded) -> Bounded:
        """Elementwise product (the gates): sigma^2 = (a sigma_b)^2 + (b sigma_a)^2 + (u' ab)^2."""
        value = a.value * b.value
        sigma = np.sqrt((a.value * b.sigma) ** 2 + (b.value * a.sigma) ** 2 + (self.u * value) ** 2)
        return Bounded(value, sigma)

    def add(self, a: Bounded, b: Bounded) -> Bounded:
        """Elementwise sum (the residuals): sigma^2 = sigma_a^2 + sigma_b^2 + (u' (a + b))^2."""
        value = a.value + b.value
        return Bounded(value, np.sqrt(a.sigma**2 + b.sigma**2 + (self.u * value) ** 2))

    def channel_scale(self, x: Bounded, scale) -> Bounded:
        """Scale (clause 8.3), x (..., C): sigma^2 = (s sigma_x)^2 + (u' x s)^2."""
        s = _f64(scale)
        value = x.value * s
        return Bounded(value, np.hypot(s * x.sigma, self.u * value))

    def mean_hw(self, x: Bounded) -> Bounded:
        """Global average pool (clause 8.5), (N, H, W, C) -> (N, C):
        sigma^2 = mean(sigma_x^2) / HW + (u' sqrt(HW + 1) mean|x|)^2 (the magnitude in its l1 form:
        the last stage's features often keep one sign per channel)."""
        hw = x.shape[1] * x.shape[2]
        value = x.value.mean(axis=(1, 2))
        rounding = self.u * math.sqrt(hw + 1) * np.abs(x.value).mean(axis=(1, 2))
        return Bounded(value, np.sqrt((x.sigma**2).mean(axis=(1, 2)) / hw + rounding**2))

    # ---- normalisations (clause 11.8) ---------------------------------------------------------

    def _normalise(self, x: Bounded, weight, bias, eps: float, standard: bool) -> Bounded:
        """y = alpha * w * c / s (+ b), c = x - mean(x), over the last axis (length C).

        LayerNormGeneral: alpha = 1, s = max(||c||, eps). LayerNorm: alpha = sqrt(C),
        s = sqrt(||c||^2 + C eps). With D^2 = sigma_x^2 + sum(sigma_x^2) / C^2 + (u' sqrt(C + 1)
        mean|x|)^2 (inputs, their mean, the rounded mean) and d = c / s, the Jacobian of c -> c / s
        in quadrature, (alpha w / s)^2 (D^2 + d^2 sum(d^2 D^2)); the relative rounding of s shared
        by the position, 0.5 u' sqrt(C + 1) sum(x^2) / s^2 (admits the one-pass variance
        E[x^2] - E[x]^2 while u' sqrt(C) sum(x^2) / sum(c^2) << 1); the subtraction, square root,
        division and weight product u' sqrt(norm_length + 1) |alpha w d|; the bias u' |y|.
        """
        v = x.value
        size = v.shape[-1]
        centred = v - v.mean(axis=-1, keepdims=True)
        squares = np.sum(centred * centred, axis=-1, keepdims=True)
        w = _f64(weight)
        if standard:
            value = R.layer_norm(v, weight, bias, eps)
            s, alpha = np.sqrt(squares + size * eps), math.sqrt(size)
        else:
            value = R.layer_norm_general(v, weight, eps)
            s, alpha = np.maximum(np.sqrt(squares), eps), 1.0
        u, e = self.u, x.sigma
        mean_rounding = u * math.sqrt(size + 1) * np.abs(v).mean(axis=-1, keepdims=True)
        d2 = e * e + np.sum(e * e, axis=-1, keepdims=True) / size**2 + mean_rounding**2
        direction = centred / s
        core = alpha * w * direction
        jacobian2 = (alpha * w / s) ** 2 * (d2 + direction**2 * np.sum(direction**2 * d2, axis=-1, keepdims=True))
        norm_rounding = 0.5 * u * math.sqrt(size + 1) * np.sum(v * v, axis=-1, keepdims=True) / (s * s)
        final = u * math.sqrt(propagation_length("norm_length") + 1) * np.abs(core)
        variance = jacobian2 + (norm_rounding * core) ** 2 + final**2
        if bias is not None:
            variance = variance + (u * value) ** 2
        return Bounded(value, np.sqrt(variance))

    def layer_norm_general(self, x: Bounded, weight, eps: float = 1e-6) -> Bounded:
        """LayerNormGeneral (clause 4.1), x (..., C)."""
        return self._normalise(x, weight, None, eps, standard=False)

    def layer_norm(self, x: Bounded, weight, bias, eps: float = 1e-6) -> Bounded:
        """Standard LayerNorm (clause 4.2), x (..., C)."""
        return self._normalise(x, weight, bias, eps, standard=True)

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
        first_sigma, second_sigma = NumpyArithmetic.halves(x.sigma, axis)
        return Bounded(first, first_sigma), Bounded(second, second_sigma)


class BoundedReference(BoundedArithmetic, Composition):
    """The official composition (``parcnetv2.reference.components``) over bounded arithmetic: every
    component and the whole model with the sigma of clause 11.9, the same code as the reference."""

    def component(self, kind: str, params: Params, x: Bounded, settings: Mapping[str, Any]) -> Bounded:
        """One named component of ``Model.component_info(name)`` (its kind and settings), with the
        component's own parameters (prefix removed) and input in its official layout."""
        settings = {k: v for k, v in settings.items() if k != "reparameterized"}  # clause 7.2: same bound
        return evaluate(self, kind, params, x, settings)
