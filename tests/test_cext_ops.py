"""parcnetv2.cext against the NumPy reference (spec clauses 5, 6, 7 and 12).

Every entry point, both layouts, every ISA this CPU runs, explicit edge shapes and hypothesis
shapes. Tolerances come only from parcnetv2.spec.tolerance: the bound is
elementwise_bound(reference on |x|, |w|; float32; taps feeding one output).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parcnetv2 import cext
from parcnetv2 import reference as ref
from parcnetv2.spec.tolerance import assert_close, elementwise_bound, reduction_length

ISAS = cext.available_isas()
LAYOUTS = ["NCHW", "NHWC"]
# NCHW runs through two kernel routes (vectors along W, or gathered channel slabs): test both.
ROUTES = [("NCHW", "plane"), ("NCHW", "slab"), ("NHWC", "auto")]
ROUTE_IDS = ["NCHW-plane", "NCHW-slab", "NHWC"]


def f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def to_layout(a, layout, contiguous=True):
    if layout == "NCHW":
        return a
    t = a.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(t) if contiguous else t


def from_layout(a, layout):
    return a if layout == "NCHW" else a.transpose(0, 3, 1, 2)


def check(actual, expected, magnitude, n, op, params):
    bound = elementwise_bound(magnitude, np.float32, n)
    assert_close(actual, expected, bound, op=op, params=params, dtype=np.float32)


# ------------------------------------------------------------------------- references (float64)


def ref_dwconv(x, w, b, padding):
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    b64 = None if b is None else b.astype(np.float64)
    y = ref.depthwise_conv2d(x64, w64, b64, padding=padding)
    m = ref.depthwise_conv2d(np.abs(x64), np.abs(w64), None if b64 is None else np.abs(b64), padding=padding)
    return y, m


def ref_oc(x, kh, kw):
    x64, kh64, kw64 = (a.astype(np.float64) for a in (x, kh, kw))
    return ref.oversized_conv(x64, kh64, kw64), ref.oversized_conv(np.abs(x64), np.abs(kh64), np.abs(kw64))


def ref_parc(x, kh, kw, k7):
    y, m = ref_oc(x, kh, kw)
    x64, k764 = x.astype(np.float64), k7.astype(np.float64)
    return y + ref.depthwise_conv2d(x64, k764), m + ref.depthwise_conv2d(np.abs(x64), np.abs(k764))


# ------------------------------------------------------------------------- dense depthwise conv

DENSE = [  # N, C, H, W, KH, KW, padding, bias
    (2, 3, 5, 7, 3, 3, None, True),
    (1, 5, 9, 4, 7, 7, (3, 3), False),
    (1, 17, 6, 11, 5, 3, (0, 4), True),  # prime C, KH != KW, asymmetric padding
    (1, 2, 1, 13, 1, 5, None, True),  # H = 1
    (1, 3, 4, 4, 9, 9, 4, False),  # kernel larger than the input
    (1, 4, 7, 19, 11, 2, (7, 0), True),  # even KW
    (1, 3, 3, 3, 1, 1, (5, 6), True),  # padding far beyond the kernel: bias-only borders
    (2, 19, 9, 53, 13, 13, None, False),  # several column tiles plus a ragged one
    (1, 33, 5, 5, 3, 7, (1, 3), True),  # C = 33: a partial channel vector in NHWC
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("case", DENSE, ids=lambda c: "n{}c{}h{}w{}k{}x{}p{}b{}".format(*c))
def test_dwconv2d_matches_reference(case, route, isa):
    layout, nk = route
    N, C, H, W, KH, KW, padding, bias = case
    rng = np.random.default_rng(1)
    x, w = f32(rng, N, C, H, W), f32(rng, C, 1, KH, KW)
    b = f32(rng, C) if bias else None
    y_ref, mag = ref_dwconv(x, w, b, padding)
    y = cext.dwconv2d(to_layout(x, layout), w, b, padding=padding, layout=layout, isa=isa, nchw_kernel=nk)
    check(
        from_layout(y, layout),
        y_ref,
        mag,
        reduction_length("depthwise_conv2d", kernel=(KH, KW), size=(H, W), bias=bias),
        "dwconv2d",
        dict(shape=x.shape, kernel=(KH, KW), padding=padding, bias=bias, layout=layout, route=nk, isa=isa),
    )


# ------------------------------------------------------------------------- oversized conv

SEPARABLE = [  # N, C, H, W, KV, KW
    (1, 3, 8, 8, 15, 15),  # K = 2H - 1
    (2, 5, 7, 12, 13, 5),  # H != W, KV != KW, K < W
    (1, 9, 1, 6, 3, 11),  # H = 1
    (1, 3, 5, 5, 21, 21),  # K > 2H - 1
    (1, 17, 13, 37, 25, 73),  # K > 2W - 1, ragged tiles
    (1, 7, 12, 10, 3, 5),  # K < H
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("case", SEPARABLE + [(1, 4, 10, 9, 4, 6)], ids=lambda c: "n{}c{}h{}w{}k{}x{}".format(*c))
def test_oversized_conv_matches_reference(case, route, isa):
    layout, nk = route
    N, C, H, W, KV, KW = case
    rng = np.random.default_rng(2)
    x, kh, kw = f32(rng, N, C, H, W), f32(rng, C, 1, KV, 1), f32(rng, C, 1, 1, KW)
    y_ref, mag = ref_oc(x, kh, kw)
    y = cext.oversized_conv(to_layout(x, layout), kh, kw, layout=layout, isa=isa, nchw_kernel=nk)
    check(
        from_layout(y, layout),
        y_ref,
        mag,
        reduction_length("oversized_conv", kernel=(KV, KW), size=(H, W)),
        "oversized_conv",
        dict(shape=x.shape, k_h=kh.shape, k_w=kw.shape, layout=layout, route=nk, isa=isa),
    )


# ------------------------------------------------------------------------- fused ParC op

PARC = list(SEPARABLE) + [
    (1, 6, 6, 6, 3, 3),  # K < 7: the reparameterized kernel is 7x7
    (2, 24, 14, 14, 27, 27),  # stage-2-like
    (1, 20, 7, 7, 13, 13),  # stage-3-like
]


@pytest.mark.parametrize("path", ["separable", "dense", "auto"])
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("case", PARC, ids=lambda c: "n{}c{}h{}w{}k{}x{}".format(*c))
def test_parc_spatial_matches_reference(case, route, isa, path):
    layout, nk = route
    N, C, H, W, KV, KW = case
    rng = np.random.default_rng(3)
    x, kh, kw, k7 = f32(rng, N, C, H, W), f32(rng, C, 1, KV, 1), f32(rng, C, 1, 1, KW), f32(rng, C, 1, 7, 7)
    y_ref, mag = ref_parc(x, kh, kw, k7)
    y = cext.parc_spatial(to_layout(x, layout), kh, kw, k7, layout=layout, path=path, isa=isa, nchw_kernel=nk)
    check(
        from_layout(y, layout),
        y_ref,
        mag,
        reduction_length("parc_spatial", kernel=(KV, KW), size=(H, W)),
        "parc_spatial",
        dict(shape=x.shape, K=(KV, KW), layout=layout, route=nk, isa=isa, path=path),
    )


def test_parc_stage0_shape_both_paths():
    """Stage 0 of parcnetv2_tiny (C cut to 8 to keep it quick): K = 111 on 56 x 56."""
    rng = np.random.default_rng(4)
    x, kh, kw, k7 = f32(rng, 1, 8, 56, 56), f32(rng, 8, 1, 111, 1), f32(rng, 8, 1, 1, 111), f32(rng, 8, 1, 7, 7)
    y_ref, mag = ref_parc(x, kh, kw, k7)
    for layout, nk in ROUTES:
        for path in ("separable", "dense"):
            y = cext.parc_spatial(to_layout(x, layout), kh, kw, k7, layout=layout, path=path, nchw_kernel=nk)
            check(
                from_layout(y, layout),
                y_ref,
                mag,
                reduction_length("parc_spatial", kernel=(111, 111), size=(56, 56)),
                "parc_spatial",
                dict(shape=x.shape, K=111, layout=layout, route=nk, path=path),
            )


# ------------------------------------------------------------------------- reparameterization


@pytest.mark.parametrize("kv,kw", [(13, 9), (3, 5), (7, 7), (1, 1), (111, 111)])
def test_reparameterize_matches_reference(kv, kw):
    rng = np.random.default_rng(5)
    C = 5
    kh, kwt, k7 = f32(rng, C, 1, kv, 1), f32(rng, C, 1, 1, kw), f32(rng, C, 1, 7, 7)
    a = [t.astype(np.float64) for t in (kh, kwt, k7)]
    expected = ref.reparameterize(*a)
    mag = ref.reparameterize(*[np.abs(t) for t in a])
    got = cext.reparameterize(kh, kwt, k7)
    check(got, expected, mag, 2, "reparameterize", dict(C=C, KV=kv, KW=kw))


def test_dense_path_equals_dwconv_of_reparameterized_kernel():
    """parc_spatial(path="dense") is exactly dwconv2d with reparameterize's kernel (same bits)."""
    rng = np.random.default_rng(6)
    x, kh, kw, k7 = f32(rng, 2, 7, 9, 11), f32(rng, 7, 1, 13, 1), f32(rng, 7, 1, 1, 17), f32(rng, 7, 1, 7, 7)
    dense = cext.reparameterize(kh, kw, k7)
    for layout in LAYOUTS:
        xi = to_layout(x, layout)
        a = cext.parc_spatial(xi, kh, kw, k7, layout=layout, path="dense")
        b = cext.dwconv2d(xi, dense, layout=layout)
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), f"layout {layout}"


# ------------------------------------------------------------------------- threads and ISAs


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_threads_bit_identical(route, isa):
    layout, nk = route
    rng = np.random.default_rng(7)
    x = to_layout(f32(rng, 3, 13, 11, 9), layout)
    kh, kw, k7, w = f32(rng, 13, 1, 21, 1), f32(rng, 13, 1, 1, 17), f32(rng, 13, 1, 7, 7), f32(rng, 13, 1, 5, 9)
    b = f32(rng, 13)
    runs = {
        "dwconv2d": lambda t: cext.dwconv2d(x, w, b, layout=layout, threads=t, isa=isa, nchw_kernel=nk),
        "oversized_conv": lambda t: cext.oversized_conv(x, kh, kw, layout=layout, threads=t, isa=isa, nchw_kernel=nk),
        "parc_separable": lambda t: cext.parc_spatial(
            x, kh, kw, k7, layout=layout, threads=t, isa=isa, path="separable", nchw_kernel=nk
        ),
        "parc_dense": lambda t: cext.parc_spatial(
            x, kh, kw, k7, layout=layout, threads=t, isa=isa, path="dense", nchw_kernel=nk
        ),
    }
    for name, fn in runs.items():
        one = fn(1)
        for t in (2, 3, 5):
            other = fn(t)
            assert np.array_equal(one.view(np.uint32), other.view(np.uint32)), (
                f"{name} {layout}/{nk} {isa}: threads=1 and threads={t} differ at "
                f"{np.unravel_index(np.argmax(one != other), one.shape)}"
            )


def test_isa_list_and_auto():
    assert "scalar" in ISAS
    assert cext.best_isa() in ISAS


# ------------------------------------------------------------------------- hypothesis

dims = st.integers(min_value=1, max_value=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 21),
    h=dims,
    w=dims,
    kh=st.integers(1, 15),
    kw=st.integers(1, 15),
    ph=st.integers(0, 8),
    pw=st.integers(0, 8),
    bias=st.booleans(),
    route=st.sampled_from(ROUTES),
    isa=st.sampled_from(ISAS),
    seed=st.integers(0, 2**31 - 1),
)
def test_dwconv2d_hypothesis(n, c, h, w, kh, kw, ph, pw, bias, route, isa, seed):
    layout, nk = route
    if h + 2 * ph < kh or w + 2 * pw < kw:
        return  # empty output: covered by the error tests
    rng = np.random.default_rng(seed)
    x, wt = f32(rng, n, c, h, w), f32(rng, c, 1, kh, kw)
    b = f32(rng, c) if bias else None
    y_ref, mag = ref_dwconv(x, wt, b, (ph, pw))
    y = cext.dwconv2d(to_layout(x, layout), wt, b, padding=(ph, pw), layout=layout, isa=isa, nchw_kernel=nk)
    check(
        from_layout(y, layout),
        y_ref,
        mag,
        reduction_length("depthwise_conv2d", kernel=(kh, kw), size=(h, w), bias=bias),
        "dwconv2d",
        dict(shape=x.shape, kernel=(kh, kw), padding=(ph, pw), layout=layout, route=nk, isa=isa, seed=seed),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 21),
    h=dims,
    w=dims,
    kv=st.integers(0, 15),
    kw=st.integers(0, 15),
    route=st.sampled_from(ROUTES),
    isa=st.sampled_from(ISAS),
    path=st.sampled_from(["separable", "dense", "auto"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_parc_spatial_hypothesis(n, c, h, w, kv, kw, route, isa, path, seed):
    layout, nk = route
    kv, kw = 2 * kv + 1, 2 * kw + 1
    rng = np.random.default_rng(seed)
    x, kh, kwt, k7 = f32(rng, n, c, h, w), f32(rng, c, 1, kv, 1), f32(rng, c, 1, 1, kw), f32(rng, c, 1, 7, 7)
    y_ref, mag = ref_parc(x, kh, kwt, k7)
    y = cext.parc_spatial(to_layout(x, layout), kh, kwt, k7, layout=layout, isa=isa, path=path, nchw_kernel=nk)
    check(
        from_layout(y, layout),
        y_ref,
        mag,
        reduction_length("parc_spatial", kernel=(kv, kw), size=(h, w)),
        "parc_spatial",
        dict(shape=x.shape, K=(kv, kw), layout=layout, route=nk, isa=isa, path=path, seed=seed),
    )


@settings(max_examples=30, deadline=None)
@given(
    c=st.integers(1, 9),
    h=dims,
    w=dims,
    kv=st.integers(1, 27),
    kw=st.integers(1, 27),
    route=st.sampled_from(ROUTES),
    isa=st.sampled_from(ISAS),
    seed=st.integers(0, 2**31 - 1),
)
def test_oversized_conv_hypothesis(c, h, w, kv, kw, route, isa, seed):
    layout, nk = route
    rng = np.random.default_rng(seed)
    x, kh, kwt = f32(rng, 1, c, h, w), f32(rng, c, 1, kv, 1), f32(rng, c, 1, 1, kw)
    y_ref, mag = ref_oc(x, kh, kwt)
    y = cext.oversized_conv(to_layout(x, layout), kh, kwt, layout=layout, isa=isa, nchw_kernel=nk)
    check(
        from_layout(y, layout),
        y_ref,
        mag,
        reduction_length("oversized_conv", kernel=(kv, kw), size=(h, w)),
        "oversized_conv",
        dict(shape=x.shape, K=(kv, kw), layout=layout, route=nk, isa=isa, seed=seed),
    )


@pytest.mark.parametrize("isa", [i for i in ISAS if i != "scalar"])
@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_isa_agrees_with_scalar(route, isa):
    """Each SIMD path against the scalar path. Both are within the policy bound b of the float64
    reference, so by the triangle inequality they differ by at most 2b (same policy bound)."""
    layout, nk = route
    rng = np.random.default_rng(8)
    x = f32(rng, 2, 19, 13, 17)
    kh, kw, k7, w, b = (
        f32(rng, 19, 1, 25, 1),
        f32(rng, 19, 1, 1, 33),
        f32(rng, 19, 1, 7, 7),
        f32(rng, 19, 1, 9, 5),
        f32(rng, 19),
    )
    xi = to_layout(x, layout)
    _, mag_dw = ref_dwconv(x, w, b, None)
    _, mag_parc = ref_parc(x, kh, kw, k7)
    cases = [
        (
            "dwconv2d",
            lambda i: cext.dwconv2d(xi, w, b, layout=layout, isa=i, nchw_kernel=nk),
            mag_dw,
            reduction_length("depthwise_conv2d", kernel=(9, 5), size=(13, 17), bias=True),
        ),
        (
            "parc_spatial",
            lambda i: cext.parc_spatial(xi, kh, kw, k7, layout=layout, isa=i, nchw_kernel=nk, path="separable"),
            mag_parc,
            reduction_length("parc_spatial", kernel=(25, 33), size=(13, 17)),
        ),
    ]
    for op, fn, mag, n in cases:
        simd, scalar = from_layout(fn(isa), layout), from_layout(fn("scalar"), layout)
        assert_close(
            simd,
            scalar.astype(np.float64),
            2 * elementwise_bound(mag, np.float32, n),
            op=op,
            params=dict(layout=layout, route=nk, isa=isa, against="scalar"),
            dtype=np.float32,
        )
