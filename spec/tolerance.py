"""Tolerance policy (spec clause 11) and the one comparison every test uses.

The bound for each output element is ``c * sqrt(n) * u * m + tiny`` where ``u`` is the unit
roundoff of the dtype the implementation computed in, ``n`` the reduction length behind that
output, ``m`` its magnitude (the computation run on absolute values, supplied by the caller)
and ``c`` comes from ``tolerance.toml``. No other tolerance literal exists in the project.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from parcnetv2.spec.data import load_toml

__all__ = [
    "Comparison",
    "assert_close",
    "assert_relative",
    "compare",
    "elementwise_bound",
    "probabilistic_constant",
    "probabilistic_factor",
    "propagation_length",
    "reduction_length",
    "relative_tolerance",
    "unit_roundoff",
]


def unit_roundoff(dtype: Any) -> float:
    """Unit roundoff u = eps / 2 of a floating dtype (float16, float32, float64, ...)."""
    return float(np.finfo(np.dtype(dtype)).eps) / 2.0


def safety_factor() -> float:
    """The constant c of clause 11, read from tolerance.toml."""
    return float(load_toml("tolerance.toml")["factor"]["c"])


def reduction_length(
    op: str,
    *,
    kernel: tuple[int, int] = (1, 1),
    size: tuple[int, int] = (1 << 30, 1 << 30),
    in_channels: int = 1,
    bias: bool = False,
    local: int = 7,
) -> int:
    """``n`` of one output element of ``op`` (clauses 11.5, 11.6): the one rule every bound uses.

    ``kernel`` (K_h, K_w) are the lengths the input uses, ``size`` (H, W) the input map (a kernel
    longer than the map overlaps it only on H or W taps), ``in_channels`` Cin of a dense
    convolution or the length of a Linear / 1x1 reduction, ``bias`` one more term, ``local`` the
    local kernel of the spatial part. Ops: ``conv2d``, ``depthwise_conv2d``, ``linear``,
    ``oversized_conv`` ((n_h + 1)(n_w + 1)) and ``parc_spatial`` (OC + DW7, (n_h + 2)(n_w + 2)).
    """
    (kh, kw), (h, w) = kernel, size
    if op == "linear":
        return int(in_channels) + bool(bias)
    if op in ("conv2d", "depthwise_conv2d"):
        return int(in_channels) * min(kh, h) * min(kw, w) + bool(bias)
    if op == "oversized_conv":
        return (min(kh, h) + 1) * (min(kw, w) + 1)
    if op == "parc_spatial":
        return (min(max(kh, local), h) + 2) * (min(max(kw, local), w) + 2)
    raise ValueError(f"no reduction length rule for {op!r}")


def propagation_length(name: str) -> int:
    """The effective length ``n`` of a non-reduction operation (``resize_length``, ``norm_length``)
    from the [propagation] table of tolerance.toml (clauses 11.6, 11.8)."""
    table = load_toml("tolerance.toml")["propagation"]
    if name not in table:
        raise ValueError(f"the tolerance policy has no propagation length {name!r}; known: {', '.join(table)}")
    return int(table[name])


def probabilistic_constant(name: str) -> float:
    """A constant of the probabilistic bounds (``eta``, ``gelu_factor``) from the [probabilistic]
    table of tolerance.toml (clauses 11.4, 11.7)."""
    table = load_toml("tolerance.toml")["probabilistic"]
    if name not in table:
        raise ValueError(f"the tolerance policy has no probabilistic constant {name!r}; known: {', '.join(table)}")
    return float(table[name])


def probabilistic_factor(elements: int) -> float:
    """lambda(N, eta) = sqrt(2 ln(2 N / eta)) of clause 11.4: a tensor of N elements whose errors are
    sub-Gaussian with proxies sigma exceeds lambda * sigma somewhere with probability at most eta."""
    return math.sqrt(2.0 * math.log(2.0 * max(int(elements), 1) / probabilistic_constant("eta")))


def elementwise_bound(magnitude: np.ndarray, dtype: Any, reduction_length: int) -> np.ndarray:
    """Per-output error bound ``c * sqrt(n) * u(dtype) * magnitude + tiny(dtype)`` (clause 11.1).

    ``magnitude`` has the output's shape and holds the output recomputed on absolute values.
    """
    if reduction_length < 1:
        raise ValueError(f"reduction_length must be >= 1, got {reduction_length}")
    mag = np.abs(np.asarray(magnitude, dtype=np.float64))
    scale = safety_factor() * np.sqrt(float(reduction_length)) * unit_roundoff(dtype)
    return scale * mag + float(np.finfo(np.dtype(dtype)).tiny)


@dataclass(frozen=True)
class Comparison:
    """Outcome of comparing an implementation's output with the reference (clause 11.2)."""

    ok: bool
    message: str
    worst_index: tuple[int, ...] | None = None
    worst_ratio: float = 0.0  # max |error| / bound; <= 1 passes


def _describe(params: Mapping[str, Any] | None) -> str:
    if not params:
        return ""
    return "(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"


def compare(
    actual: Any,
    expected: np.ndarray,
    bound: np.ndarray,
    *,
    op: str,
    params: Mapping[str, Any] | None = None,
    dtype: Any = None,
) -> Comparison:
    """Compare shape, then dtype (when ``dtype`` is given), then values against ``bound``.

    The message names the op, its parameters, the worst index, both values, the error and the
    bound there. Non-finite values in ``actual`` fail unless the reference has the same value.
    """
    label = f"{op}{_describe(params)}"
    actual_arr = np.asarray(actual)
    expected = np.asarray(expected)
    if actual_arr.shape != expected.shape:
        return Comparison(False, f"{label}: shape {actual_arr.shape} != expected {expected.shape}")
    if dtype is not None and actual_arr.dtype != np.dtype(dtype):
        return Comparison(False, f"{label}: dtype {actual_arr.dtype} != expected {np.dtype(dtype)}")
    if actual_arr.size == 0:
        return Comparison(True, f"{label}: empty output")
    a = actual_arr.astype(np.float64)
    e = expected.astype(np.float64)
    err = np.abs(a - e)
    same_special = (a == e) | (np.isnan(a) & np.isnan(e))
    err = np.where(same_special, 0.0, err)
    err = np.where(np.isnan(err), np.inf, err)
    ratio = err / np.broadcast_to(np.asarray(bound, dtype=np.float64), err.shape)
    flat = int(np.argmax(ratio))
    idx = tuple(int(i) for i in np.unravel_index(flat, ratio.shape))
    worst = float(ratio[idx])
    b = float(np.broadcast_to(bound, err.shape)[idx])
    detail = (
        f"{label}: worst at index {idx}: got {float(a[idx])!r}, expected {float(e[idx])!r}, "
        f"|error| {err[idx]:.3e} vs bound {b:.3e} ({worst:.3g}x the bound)"
    )
    return Comparison(worst <= 1.0, detail, idx, worst)


def assert_close(actual, expected, bound, *, op, params=None, dtype=None) -> None:
    """`compare`, raising AssertionError with its message on failure."""
    result = compare(actual, expected, bound, op=op, params=params, dtype=dtype)
    if not result.ok:
        raise AssertionError(result.message)


def relative_tolerance(dtype: Any) -> float:
    """Clause 11.3: allowed max|a - b| / max|b| between two whole-model implementations in ``dtype``."""
    table = load_toml("tolerance.toml")["relative"]
    name = np.dtype(dtype).name
    if name not in table:
        raise ValueError(f"the tolerance policy has no whole-model tolerance for {name}")
    return float(table[name])


def assert_relative(actual, expected, *, dtype, op, params=None) -> None:
    """Clause 11.3 check: shape, dtype, then max|a - e| <= tol(dtype) * max|e| (worst index reported)."""
    expected = np.asarray(expected)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    bound = np.full(expected.shape, relative_tolerance(dtype) * scale)
    assert_close(actual, expected, bound, op=op, params=params, dtype=dtype)
