"""Each reference operation against an independent computation (spec clauses 3-8).

Independent means: scipy.signal.correlate2d, or explicit Python loops over tiny sizes, never the
reference's own helpers. Float64 comparisons use the clause-11 bound with u of float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import correlate2d

from parcnetv2 import reference as R
from parcnetv2.errors import InputError
from parcnetv2.spec.tolerance import assert_close, elementwise_bound

F64 = np.float64


def close64(actual, expected, magnitude, n, op, **params):
    assert_close(actual, expected, elementwise_bound(magnitude, F64, n), op=op, params=params, dtype=F64)


def depthwise_scipy(x, weight, padding):
    """Per-channel scipy correlation of the zero-padded map (independent of the reference)."""
    ph, pw = padding
    n, c = x.shape[:2]
    out = []
    for b in range(n):
        planes = []
        for ch in range(c):
            padded = np.pad(x[b, ch], ((ph, ph), (pw, pw)))
            planes.append(correlate2d(padded, weight[ch, 0], mode="valid"))
        out.append(planes)
    return np.array(out)


maps = st.tuples(st.integers(1, 2), st.integers(1, 5), st.integers(1, 9), st.integers(1, 9))


@settings(max_examples=40, deadline=None)
@given(shape=maps, kh=st.integers(1, 9), kw=st.integers(1, 9), seed=st.integers(0, 2**32 - 1), bias=st.booleans())
def test_depthwise_conv2d_matches_scipy(shape, kh, kw, seed, bias):
    rng = np.random.default_rng(seed)
    _n, c, _h, _w = shape
    x = rng.standard_normal(shape)
    weight = rng.standard_normal((c, 1, kh, kw))
    b = rng.standard_normal(c) if bias else None
    pad = (kh // 2, kw // 2)
    expected = depthwise_scipy(x, weight, pad) + (b[:, None, None] if bias else 0)
    magnitude = depthwise_scipy(np.abs(x), np.abs(weight), pad) + (np.abs(b)[:, None, None] if bias else 0)
    got = R.depthwise_conv2d(x, weight, b)
    close64(got, expected, magnitude, kh * kw + 1, "depthwise_conv2d", shape=shape, kernel=(kh, kw))


def test_depthwise_conv2d_explicit_padding_changes_output_size():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 2, 5, 6)), rng.standard_normal((2, 1, 3, 3))
    got = R.depthwise_conv2d(x, w, padding=(0, 2))
    expected = depthwise_scipy(x, w, (0, 2))
    assert got.shape == (1, 2, 3, 8)
    close64(got, expected, depthwise_scipy(abs(x), abs(w), (0, 2)), 9, "depthwise_conv2d", padding=(0, 2))


def oversized_loops(x, kh, kw):
    """Eq. (1)-(2) of supplement Sec. B written as loops, padding K//2."""
    n, c, h, w = x.shape
    ph, pw = len(kh[0]) // 2, len(kw[0]) // 2
    y = np.zeros_like(x)
    for b in range(n):
        for ch in range(c):
            for i in range(h):
                for j in range(w):
                    y[b, ch, i, j] = sum(
                        kh[ch][s] * x[b, ch, i + s - ph, j] for s in range(len(kh[ch])) if 0 <= i + s - ph < h
                    )
    z = np.zeros_like(x)
    for b in range(n):
        for ch in range(c):
            for i in range(h):
                for j in range(w):
                    z[b, ch, i, j] = sum(
                        kw[ch][t] * y[b, ch, i, j + t - pw] for t in range(len(kw[ch])) if 0 <= j + t - pw < w
                    )
    return z


@settings(max_examples=30, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 7), st.integers(1, 7)),
    half=st.integers(0, 8),
    seed=st.integers(0, 2**32 - 1),
)
def test_oversized_conv_matches_loops(shape, half, seed):
    """Fixed-kernel OC (clause 5.1) for K < H, K = 2H-1 and K > 2H-1 alike."""
    rng = np.random.default_rng(seed)
    k = 2 * half + 1
    x = rng.standard_normal(shape)
    kh, kw = rng.standard_normal((shape[1], k)), rng.standard_normal((shape[1], k))
    got = R.oversized_conv(x, kh[:, None, :, None], kw[:, None, None, :])
    expected = oversized_loops(x, kh, kw)
    magnitude = oversized_loops(np.abs(x), np.abs(kh), np.abs(kw))
    close64(got, expected, magnitude, 2 * k, "oversized_conv", shape=shape, K=k)


@settings(max_examples=30, deadline=None)
@given(shape=maps, half=st.integers(0, 6), seed=st.integers(0, 2**32 - 1))
def test_oversized_conv_commutes(shape, half, seed):
    """Supplement Sec. B / clause 5.6: horizontal-then-vertical gives the same result."""
    rng = np.random.default_rng(seed)
    k = 2 * half + 1
    x = rng.standard_normal(shape)
    kh = rng.standard_normal((shape[1], 1, k, 1))
    kw = rng.standard_normal((shape[1], 1, 1, k))
    vertical_first = R.oversized_conv(x, kh, kw)
    horizontal_first = R.depthwise_conv2d(R.depthwise_conv2d(x, kw), kh)
    magnitude = R.oversized_conv(np.abs(x), np.abs(kh), np.abs(kw))
    close64(horizontal_first, vertical_first, magnitude, 2 * k, "oversized_conv W-then-H", shape=shape, K=k)


def linear_resize(kernel, size):
    """align_corners=True linear resize written from its definition (clause 5.2), the sample
    position evaluated as PyTorch does: ((K - 1) / (size - 1)) * t."""
    k = len(kernel)
    out = []
    for t in range(size):
        pos = (k - 1) / (size - 1) * t if size > 1 else 0.0
        lo = min(math.floor(pos), k - 1)
        hi = min(lo + 1, k - 1)
        frac = pos - lo
        out.append(kernel[lo] * (1 - frac) + kernel[hi] * frac)
    return np.array(out)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 13, 27, 111, 221])
@pytest.mark.parametrize("k", [1, 3, 13, 111])
def test_resize_kernel_matches_definition(k, size):
    rng = np.random.default_rng(k * 1000 + size)
    kernel = rng.standard_normal((2, k))
    got = R.resize_kernel(kernel, size)
    expected = np.array([linear_resize(row, size) for row in kernel])
    magnitude = np.array([linear_resize(np.abs(r), size) for r in kernel])
    close64(got, expected, magnitude, 2, "resize_kernel", K=k, size=size)
    if size == k:
        close64(got, kernel, np.abs(kernel), 2, "resize_kernel identity", K=k)


@pytest.mark.parametrize("hw", [(1, 1), (3, 5), (6, 4), (7, 7)])
def test_interpolate_true_uses_2h_minus_1_kernels(hw):
    """Clause 5.2: resizing to 2H-1, 2W-1 with padding H-1, W-1 equals the fixed-kernel OC of
    the resized kernels."""
    h, w = hw
    rng = np.random.default_rng(h * 10 + w)
    x = rng.standard_normal((2, 3, h, w))
    kh, kw = rng.standard_normal((3, 9)), rng.standard_normal((3, 9))
    rh = np.array([linear_resize(r, 2 * h - 1) for r in kh])
    rw = np.array([linear_resize(r, 2 * w - 1) for r in kw])
    got = R.oversized_conv(x, kh[:, None, :, None], kw[:, None, None, :], interpolate=True)
    expected = oversized_loops(x, rh, rw)
    close64(
        got, expected, oversized_loops(abs(x), abs(rh), abs(rw)), 2 * (h + w), "oversized_conv interpolate=True", hw=hw
    )


@pytest.mark.parametrize("size", [1, 3, 9])
def test_interpolate_fixed_size(size):
    rng = np.random.default_rng(size)
    x = rng.standard_normal((1, 2, 5, 4))
    kh, kw = rng.standard_normal((2, 7)), rng.standard_normal((2, 7))
    rh = np.array([linear_resize(r, size) for r in kh])
    rw = np.array([linear_resize(r, size) for r in kw])
    got = R.oversized_conv(x, kh[:, None, :, None], kw[:, None, None, :], interpolate=size)
    close64(
        got,
        oversized_loops(x, rh, rw),
        oversized_loops(abs(x), abs(rh), abs(rw)),
        2 * size,
        "oversized_conv interpolate=S",
        S=size,
    )


def test_interpolate_rejects_even_size():
    x = np.zeros((1, 1, 3, 3))
    with pytest.raises(InputError, match="odd"):
        R.oversized_conv(x, np.zeros((1, 1, 3, 1)), np.zeros((1, 1, 1, 3)), interpolate=4)


def conv2d_loops(x, w, b, stride, pad):
    n, _cin, h, wd = x.shape
    cout, _, kh, kw = w.shape
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((n, cout, ho, wo))
    for b_ in range(n):
        for o in range(cout):
            for i in range(ho):
                for j in range(wo):
                    out[b_, o, i, j] = (
                        np.sum(xp[b_, :, i * stride : i * stride + kh, j * stride : j * stride + kw] * w[o]) + b[o]
                    )
    return out


@pytest.mark.parametrize(
    "kernel,stride,pad,hw", [(7, 4, 2, (13, 9)), (3, 2, 1, (7, 6)), (3, 2, 1, (1, 2)), (7, 4, 2, (3, 3))]
)
def test_conv2d_matches_loops(kernel, stride, pad, hw):
    """Stem (clause 3.1) and downsampling (3.2) geometry."""
    rng = np.random.default_rng(kernel + stride)
    x = rng.standard_normal((2, 3, *hw))
    w, b = rng.standard_normal((4, 3, kernel, kernel)), rng.standard_normal(4)
    got = R.conv2d(x, w, b, stride, pad)
    expected = conv2d_loops(x, w, b, stride, pad)
    magnitude = conv2d_loops(abs(x), abs(w), abs(b), stride, pad)
    close64(got, expected, magnitude, 3 * kernel * kernel + 1, "conv2d", kernel=kernel, stride=stride, hw=hw)


@settings(max_examples=30, deadline=None)
@given(c=st.integers(1, 40), rows=st.integers(1, 4), seed=st.integers(0, 2**32 - 1), offset=st.floats(-1e3, 1e3))
def test_layer_norm_general_is_layer_norm_over_sqrt_c(c, rows, seed, offset):
    """Clause 4.1: the official L2 form equals the standard LayerNorm divided by sqrt(C)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, c)) * rng.uniform(0.1, 10) + offset
    weight = rng.standard_normal(c)
    got = R.layer_norm_general(x, weight)
    expected = []
    for row in x:
        centred = [v - sum(row) / c for v in row]
        norm = math.sqrt(sum(v * v for v in centred))
        expected.append([v / max(norm, 1e-6) * wt for v, wt in zip(centred, weight)])
    expected = np.array(expected)
    # Centring cancels terms of the size of |x|, so the rounding error scales with |x| / norm.
    centred_norm = np.maximum(np.linalg.norm(x - x.mean(axis=1, keepdims=True), axis=1, keepdims=True), 1e-6)
    magnitude = (np.abs(x) + np.abs(x).mean(axis=1, keepdims=True)) / centred_norm * np.abs(weight)
    close64(got, expected, magnitude, c, "layer_norm_general", C=c)
    if c > 1 and np.ptp(x, axis=1).min() > 1e-3:
        std = x.std(axis=1, keepdims=True)
        standard = (x - x.mean(axis=1, keepdims=True)) / std * weight
        close64(got * math.sqrt(c), standard, magnitude * math.sqrt(c), c, "layer_norm_general * sqrt(C)", C=c)


def test_layer_norm_general_eps_floor():
    """A constant row has a zero centred vector: the eps floor keeps the output 0, not NaN."""
    got = R.layer_norm_general(np.full((2, 5), 3.0), np.ones(5))
    assert np.array_equal(got, np.zeros((2, 5)))


def test_layer_norm_matches_definition():
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((3, 7)), rng.standard_normal(7), rng.standard_normal(7)
    expected = np.array(
        [
            [
                (v - row.mean()) / math.sqrt(((row - row.mean()) ** 2).mean() + 1e-6) * wt + bt
                for v, wt, bt in zip(row, w, b)
            ]
            for row in x
        ]
    )
    close64(R.layer_norm(x, w, b), expected, np.abs(expected) + np.abs(b), 7, "layer_norm")


def test_gelu_is_exact_erf_form():
    x = np.linspace(-6, 6, 241)
    expected = np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    close64(R.gelu(x), expected, np.abs(x), 1, "gelu")
    tanh_form = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    assert np.max(np.abs(tanh_form - expected)) > 1e-4  # the two forms are distinguishable


def test_bgu_matches_loops():
    """Clause 8.2: fc1, split the last axis, x1 * GELU(x2), fc2 without bias."""
    rng = np.random.default_rng(5)
    c = 4
    params = {
        "fc1.weight": rng.standard_normal((5 * c, c)),
        "fc1.bias": rng.standard_normal(5 * c),
        "fc2.weight": rng.standard_normal((c, 5 * c // 2)),
    }
    x = rng.standard_normal((2, 3, 3, c))
    got = R.bgu(params, x)
    g = lambda v: v * 0.5 * (1 + math.erf(v / math.sqrt(2)))  # noqa: E731
    expected = np.zeros_like(x)
    mag = np.zeros_like(x)
    half = 5 * c // 2
    for idx in np.ndindex(x.shape[:-1]):
        h = params["fc1.weight"] @ x[idx] + params["fc1.bias"]
        hm = np.abs(params["fc1.weight"]) @ np.abs(x[idx]) + np.abs(params["fc1.bias"])
        gated = np.array([h[i] * g(h[half + i]) for i in range(half)])
        expected[idx] = params["fc2.weight"] @ gated
        mag[idx] = np.abs(params["fc2.weight"]) @ (hm[:half] * hm[half:])
    close64(got, expected, mag, 5 * c, "bgu", C=c)


def test_token_mixer_matches_composition_of_torch_free_pieces():
    """Clause 8.1 written out with scipy correlations and explicit splitting."""
    rng = np.random.default_rng(11)
    c, h, w, k = 3, 5, 4, 9
    params = {
        "pwconv1.weight": rng.standard_normal((2 * c, c, 1, 1)),
        "pwconv1.bias": rng.standard_normal(2 * c),
        "dwconv1.conv_h.weight": rng.standard_normal((c, 1, k, 1)),
        "dwconv1.conv_w.weight": rng.standard_normal((c, 1, 1, k)),
        "dwconv2.weight": rng.standard_normal((c, 1, 7, 7)),
        "pwconv2.weight": rng.standard_normal((c, c, 1, 1)),
    }
    x = rng.standard_normal((2, h, w, c))
    got = R.token_mixer(params, x, interpolate=False, local_padding=3)
    nchw = x.transpose(0, 3, 1, 2)
    y = np.einsum("oc,nchw->nohw", params["pwconv1.weight"][:, :, 0, 0], nchw) + params["pwconv1.bias"][:, None, None]
    x1, x2 = y[:, :c], y[:, c:]
    x2 = x2 * 0.5 * (1 + np.vectorize(math.erf)(x2 / math.sqrt(2)))
    oc = oversized_loops(x2, params["dwconv1.conv_h.weight"][:, 0, :, 0], params["dwconv1.conv_w.weight"][:, 0, 0, :])
    dw = depthwise_scipy(x2, params["dwconv2.weight"], (3, 3))
    z = np.einsum("oc,nchw->nohw", params["pwconv2.weight"][:, :, 0, 0], x1 * (oc + dw))
    expected = z.transpose(0, 2, 3, 1)
    scale = np.max(np.abs(expected))
    close64(got, expected, np.full(expected.shape, scale), 2 * k + 49 + 2 * c, "token_mixer", C=c, hw=(h, w), K=k)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: R.depthwise_conv2d(np.zeros((1, 2, 3)), np.zeros((2, 1, 3, 3))), "rank 4"),
        (lambda: R.depthwise_conv2d(np.zeros((1, 2, 3, 3)), np.zeros((3, 1, 3, 3))), "3"),
        (lambda: R.oversized_conv(np.zeros((1, 2, 3, 3)), np.zeros((2, 1, 3, 3)), np.zeros((2, 1, 1, 3))), "k_h"),
        (lambda: R.depthwise_conv2d(np.zeros((1, 1, 3, 3), dtype=np.int64), np.zeros((1, 1, 3, 3))), "dtype"),
        (lambda: R.reparameterize(np.zeros((2, 1, 4, 1)), np.zeros((2, 1, 1, 4)), np.zeros((2, 1, 7, 7))), "odd"),
    ],
)
def test_bad_arguments_name_the_problem(call, match):
    with pytest.raises(InputError, match=match):
        call()
