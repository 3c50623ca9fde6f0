"""The fused C kernels of the engine (spec clause 15) through ``parcnetv2.cext``, against the float64
reference with the propagated bounds of clauses 11.4-11.8 (``conformance.error_bounds``), on
every ISA this CPU runs and with one and two threads (bit-identical).

The whole engine (and GELU, both norms and the strided convolution once more) is checked by the
conformance suite: ``pytest conformance --backend engine``. Shape legend: N, C, H, W, K.
"""

from __future__ import annotations

import numpy as np
import pytest

from parcnetv2 import cext
from parcnetv2.cext.erf_accuracy import CLAIMED_MAX_ULP, SCALAR_MAX_ULP, measure
from parcnetv2.conformance.error_bounds import Bounded, BoundedReference, exact
from parcnetv2.errors import InputError
from parcnetv2.spec.tolerance import assert_close

F32 = np.float32
B = BoundedReference(F32)
ISAS = cext.available_isas()
ROWS_C = [(1, 1), (3, 7), (5, 64), (300, 131)]  # tails of every vector width; > 2 threads' minimum work


def _rand(shape, seed=0, scale=2.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(F32)


def _close(actual, expected: Bounded, op: str, **params):
    assert_close(actual, expected.value, B.bound(expected), op=op, params=params, dtype=F32)


def _threads_agree(function, *args, **kwargs):
    """The result with one thread, checked equal to the two-thread result."""
    one, two = function(*args, threads=1, **kwargs), function(*args, threads=2, **kwargs)
    for a, b in zip(one if isinstance(one, tuple) else (one,), two if isinstance(two, tuple) else (two,)):
        if a is not None:
            np.testing.assert_array_equal(a, b)
    return one


@pytest.mark.parametrize("isa", ISAS)
def test_erf_accuracy(isa):
    """Clause 15.3: erf within the claimed ulps on a strided sweep of all float32 in [0, 4] (the
    exhaustive run is ``python -m parcnetv2.cext.erf_accuracy measure``); the scalar path has no
    fused multiply-add and its own claim."""
    worst, where = measure(stride=1009, isa=isa)
    limit = SCALAR_MAX_ULP if isa == "scalar" else CLAIMED_MAX_ULP
    assert worst <= limit, f"erf on {isa}: {worst:.3f} ulp at x = {where!r} (claim {limit})"
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 4.0, -7.0], F32)
    y = cext.erf(special, isa=isa)
    assert y[0] == 0 and np.signbit(y[1]) and y[2] == 1 and y[3] == -1 and np.isnan(y[4]) and y[5] == 1 and y[6] == -1


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("rows,c", ROWS_C)
def test_gelu_and_gates(isa, rows, c):
    """Clauses 8.1, 8.2: GELU(x + b); the token-mixer gate (a + b) * s; the BGU gate."""
    x, bias, s = _rand((rows, 2 * c), 1), _rand((2 * c,), 2, 1.0), _rand((rows, c), 3)
    first = B.add(exact(x[:, :c]), exact(bias[:c]))
    second = B.add(exact(x[:, c:]), exact(bias[c:]))
    _close(
        _threads_agree(cext.bias_gelu, x[:, c:], bias[c:], isa=isa),
        B.gelu(second),
        "bias_gelu",
        isa=isa,
        rows=rows,
        c=c,
    )
    _close(_threads_agree(cext.gate, x[:, :c], s, bias[:c], isa=isa), B.mul(first, exact(s)), "gate", isa=isa)
    _close(_threads_agree(cext.gelu_gate, x, bias, isa=isa), B.mul(first, B.gelu(second)), "gelu_gate", isa=isa)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("rows,c", ROWS_C)
def test_norms_and_residual(isa, rows, c):
    """Clauses 4.1, 4.2, 8.3, 8.4: LayerNormGeneral, LayerNorm, and x * scale + branch fused with
    the next LayerNormGeneral; rows with an offset (cancellation in the mean)."""
    x, branch = _rand((rows, c), 4) + F32(3.0), _rand((rows, c), 5)
    w, b, scale = _rand((c,), 6, 1.0), _rand((c,), 7, 1.0), _rand((c,), 8, 1.0)
    _close(
        _threads_agree(cext.layer_norm_general, x, w, 1e-6, isa=isa),
        B.layer_norm_general(exact(x), w, 1e-6),
        "layer_norm_general",
        isa=isa,
        rows=rows,
        c=c,
    )
    _close(
        _threads_agree(cext.layer_norm, x, w, b, 1e-6, isa=isa),
        B.layer_norm(exact(x), w, b, 1e-6),
        "layer_norm",
        isa=isa,
    )
    new_x, y = _threads_agree(cext.residual_norm, x, branch, scale, w, 1e-6, isa=isa)
    summed = B.add(B.scale({"scale": scale}, exact(x)), exact(branch))
    _close(new_x, summed, "residual_norm x", isa=isa)
    _close(y, B.layer_norm_general(summed, w, 1e-6), "residual_norm y", isa=isa)
    plain, none = cext.residual_norm(x, branch, isa=isa)
    assert none is None
    np.testing.assert_array_equal(plain, x + branch)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n,h,w,c,k", [(1, 1, 1, 2, 1), (2, 7, 7, 19, 37), (3, 4, 6, 64, 300)])
def test_head(isa, n, h, w, c, k):
    """Clause 8.5: mean over H, W; LayerNorm with bias; Linear with bias."""
    x = _rand((n, h, w, c), 9)
    nw, nb, fw, fb = _rand((c,), 10, 1.0), _rand((c,), 11, 1.0), _rand((k, c), 12, 0.3), _rand((k,), 13, 1.0)
    features, logits = _threads_agree(cext.head, x, nw, nb, fw, fb, 1e-6, isa=isa)
    normed = B.layer_norm(B.mean_hw(exact(x)), nw, nb, 1e-6)
    _close(features, normed, "head features", isa=isa, n=n, c=c)
    _close(logits, B.linear(normed, fw, fb), "head logits", isa=isa, k=k)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("geometry", [(7, 4, 2), (3, 2, 1), (1, 1, 0)])
def test_im2col_is_the_convolution(layout, geometry):
    """Clause 3: patches (+ the ones column) times the packed weight (+ the bias row) equal the
    reference convolution; columns are ordered (c, ky, kx) for NCHW and (ky, kx, c) for NHWC."""
    k, stride, pad = geometry
    x = _rand((2, 5, 9, 11), 14)
    weight, bias = _rand((6, 5, k, k), 15, 0.3), _rand((6,), 16, 1.0)
    xin = x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    cols = _threads_agree(cext.im2col, xin, k, stride, pad, layout, True)
    order = weight.reshape(6, -1) if layout == "NCHW" else weight.transpose(0, 2, 3, 1).reshape(6, -1)
    packed = np.ascontiguousarray(np.vstack([order.T, bias[None]]), F32)
    expected = B.conv2d(exact(x), weight, bias, stride, pad)
    oh, ow = expected.shape[2:]
    got = (cols @ packed).reshape(2, oh, ow, 6).transpose(0, 3, 1, 2)  # the engine's float32 GEMM
    assert cols.shape == (2 * oh * ow, k * k * 5 + 1) and np.all(cols[:, -1] == 1)
    _close(got, expected, "im2col @ packed weight", layout=layout, geometry=geometry)


def test_errors():
    with pytest.raises(InputError, match="weight must be"):
        cext.layer_norm_general(np.zeros((2, 3)), np.zeros(4))
    with pytest.raises(InputError, match="even"):
        cext.gelu_gate(np.zeros((2, 3)))
    with pytest.raises(InputError, match=r"s must be \(2, 3\)"):
        cext.gate(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(InputError, match="does not fit"):
        cext.im2col(np.zeros((1, 1, 2, 2)), 5)
    with pytest.raises(InputError, match="floating-point"):
        cext.erf(np.zeros(3, np.int64))
    with pytest.raises(InputError, match="threads"):
        cext.erf(np.zeros(3), threads=0)
    assert cext.erf(np.zeros(0)).shape == (0,)
