"""Behaviour of the Python binding parcnetv2.cext (spec clause 12): argument errors, dtype
conversion, non-contiguous input, empty batches, concurrency from Python threads."""

from __future__ import annotations

import concurrent.futures as cf
import re

import numpy as np
import pytest

from parcnetv2 import cext
from parcnetv2 import reference as ref
from parcnetv2.spec.tolerance import assert_close, elementwise_bound, reduction_length


def f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.fixture
def data():
    rng = np.random.default_rng(11)
    return dict(
        x=f32(rng, 2, 6, 9, 10),
        w=f32(rng, 6, 1, 3, 5),
        b=f32(rng, 6),
        kh=f32(rng, 6, 1, 17, 1),
        kw=f32(rng, 6, 1, 1, 19),
        k7=f32(rng, 6, 1, 7, 7),
    )


# ------------------------------------------------------------------------- errors

ERRORS = [
    # (callable, regex the ValueError message must match: it names the shapes)
    (lambda d: cext.dwconv2d(d["x"][0], d["w"]), r"rank 4.*\(6, 9, 10\)"),
    (lambda d: cext.dwconv2d(d["x"], d["w"][:5]), r"\(6, 1, KH, KW\).*\(5, 1, 3, 5\)"),
    (lambda d: cext.dwconv2d(d["x"], d["w"][:, :, :, :, None]), r"weight .*must be \(6, 1, KH, KW\)"),
    (lambda d: cext.dwconv2d(d["x"], np.zeros((6, 2, 3, 3), np.float32)), r"\(6, 2, 3, 3\)"),
    (lambda d: cext.dwconv2d(d["x"], d["w"], d["b"][:4]), r"bias must be \(6,\).*\(4,\)"),
    (lambda d: cext.dwconv2d(d["x"], np.zeros((6, 1, 256, 3), np.float32)), r"KH = 256 must be in 1..255"),
    (lambda d: cext.dwconv2d(d["x"], np.zeros((6, 1, 13, 3), np.float32), padding=0), r"does not fit the padded input"),
    (lambda d: cext.dwconv2d(d["x"], d["w"], padding=-1), r"padding"),
    (lambda d: cext.dwconv2d(d["x"], d["w"], padding=(1, 2, 3)), r"padding"),
    (lambda d: cext.dwconv2d(d["x"], d["w"], layout="CHWN"), r"layout"),
    (lambda d: cext.dwconv2d(d["x"], d["w"], threads=0), r"threads"),
    (lambda d: cext.dwconv2d(d["x"], d["w"], isa="sse9"), r"isa"),
    (lambda d: cext.dwconv2d(d["x"].astype(np.int32), d["w"]), r"floating-point.*int32"),
    (lambda d: cext.dwconv2d(d["x"], d["w"], layout="NHWC"), r"NHWC \(2, 6, 9, 10\).*\(10, 1, KH, KW\)"),
    (lambda d: cext.oversized_conv(d["x"], d["kh"][:3], d["kw"]), r"k_h must be \(6, 1, KV, 1\).*\(3, 1, 17, 1\)"),
    (lambda d: cext.oversized_conv(d["x"], d["kh"], d["kw"].reshape(6, 1, 19, 1)), r"k_w must be \(6, 1, 1, KW\)"),
    (lambda d: cext.parc_spatial(d["x"], np.zeros((6, 1, 16, 1), np.float32), d["kw"], d["k7"]), r"odd"),
    (
        lambda d: cext.parc_spatial(d["x"], d["kh"], d["kw"], d["k7"][:, :, :5, :5]),
        r"k7 must be \(6, 1, 7, 7\).*\(6, 1, 5, 5\)",
    ),
    (lambda d: cext.parc_spatial(d["x"], d["kh"], d["kw"], d["k7"], path="fast"), r"path"),
    (lambda d: cext.parc_spatial(d["x"], d["kh"], d["kw"], d["k7"], nchw_kernel="rows"), r"nchw_kernel"),
    (lambda d: cext.parc_spatial(d["x"][:, :, :0], d["kh"], d["kw"], d["k7"]), r"every size must be >= 1.*H=0"),
    (lambda d: cext.reparameterize(d["kh"], d["kw"][:2], d["k7"]), r"k_w must be \(6, 1, 1, KW\)"),
    (lambda d: cext.reparameterize(d["kh"][:, :, :4], d["kw"], d["k7"]), r"odd"),
    (lambda d: cext.reparameterize(d["kh"][..., 0], d["kw"], d["k7"]), r"\(C, 1, KV, 1\)"),
]


@pytest.mark.parametrize("index", range(len(ERRORS)))
def test_invalid_arguments_raise_value_error(data, index):
    fn, pattern = ERRORS[index]
    with pytest.raises(ValueError) as info:
        fn(data)
    assert re.search(pattern, str(info.value)), f"message {str(info.value)!r} does not match {pattern!r}"


def test_unavailable_isa_raises():
    missing = [i for i in ("scalar", "avx2", "avx512", "neon") if i not in cext.available_isas()]
    if not missing:
        pytest.skip("every ISA is available here")
    with pytest.raises(ValueError, match="not available"):
        cext.dwconv2d(np.zeros((1, 1, 3, 3), np.float32), np.zeros((1, 1, 3, 3), np.float32), isa=missing[0])


# ------------------------------------------------------------------------- dtypes, layouts


def test_float64_and_float16_inputs_are_converted(data):
    x64, w64, b64 = (data[k].astype(np.float64) for k in ("x", "w", "b"))
    y32 = cext.dwconv2d(data["x"], data["w"], data["b"])
    y64 = cext.dwconv2d(x64, w64, b64)
    assert y64.dtype == np.float32 and y64.shape == y32.shape
    assert np.array_equal(y32, y64)  # float32 values round-trip exactly through float64
    x16 = data["x"].astype(np.float16)
    y16 = cext.oversized_conv(x16, data["kh"].astype(np.float16), data["kw"])
    assert y16.dtype == np.float32
    assert np.array_equal(
        y16, cext.oversized_conv(x16.astype(np.float32), data["kh"].astype(np.float16).astype(np.float32), data["kw"])
    )


def test_non_contiguous_inputs(data):
    rng = np.random.default_rng(12)
    big = f32(rng, 2, 12, 18, 21)
    x = big[:, ::2, ::2, 1::2]  # strided view (2, 6, 9, 10)
    assert not x.flags.c_contiguous
    w = np.asfortranarray(data["w"])
    kh = data["kh"][:, :, ::-1]  # negative strides
    expected = cext.dwconv2d(np.ascontiguousarray(x), np.ascontiguousarray(w))
    assert np.array_equal(cext.dwconv2d(x, w), expected)
    y = cext.parc_spatial(x, kh, data["kw"], data["k7"])
    assert np.array_equal(
        y, cext.parc_spatial(np.ascontiguousarray(x), np.ascontiguousarray(kh), data["kw"], data["k7"])
    )
    # an NHWC view of an NCHW array (a transpose) is also accepted
    xt = x.transpose(0, 2, 3, 1)
    y_nhwc = cext.parc_spatial(xt, kh, data["kw"], data["k7"], layout="NHWC")
    x64 = x.astype(np.float64)
    k = [a.astype(np.float64) for a in (kh, data["kw"], data["k7"])]
    ref_y = ref.oversized_conv(x64, k[0], k[1]) + ref.depthwise_conv2d(x64, k[2])
    mag = ref.oversized_conv(np.abs(x64), np.abs(k[0]), np.abs(k[1])) + ref.depthwise_conv2d(np.abs(x64), np.abs(k[2]))
    assert_close(
        y_nhwc.transpose(0, 3, 1, 2),
        ref_y,
        elementwise_bound(mag, np.float32, reduction_length("parc_spatial", kernel=(17, 19), size=x.shape[2:])),
        op="parc_spatial",
        params=dict(layout="NHWC", view="transpose"),
        dtype=np.float32,
    )


def test_empty_batch(data):
    x0 = data["x"][:0]
    assert cext.dwconv2d(x0, data["w"]).shape == (0, 6, 9, 10)
    assert cext.parc_spatial(x0.transpose(0, 2, 3, 1), data["kh"], data["kw"], data["k7"], layout="NHWC").shape == (
        0,
        9,
        10,
        6,
    )


def test_output_shapes(data):
    x = data["x"]
    assert cext.dwconv2d(x, data["w"], padding=(0, 0)).shape == (2, 6, 7, 6)
    assert cext.oversized_conv(x, np.ones((6, 1, 4, 1), np.float32), np.ones((6, 1, 1, 6), np.float32)).shape == (
        2,
        6,
        10,
        11,
    )
    assert cext.reparameterize(data["kh"], data["kw"], data["k7"]).shape == (6, 1, 17, 19)
    assert cext.reparameterize(data["kh"][:, :, :3], data["kw"][:, :, :, :5], data["k7"]).shape == (6, 1, 7, 7)


def test_choose_path():
    s0 = cext.choose_path(1, 64, 56, 56, 111)
    assert s0["path"] == "separable" and s0["cost_dense"] > 10 * s0["cost_separable"]
    for n, c, h, k in [(8, 128, 28, 55), (8, 320, 14, 27), (8, 512, 7, 13)]:
        assert cext.choose_path(n, c, h, h, k)["path"] == "separable"
    small_k = cext.choose_path(1, 64, 32, 32, 3)
    assert small_k["path"] == "dense" and small_k["cost_dense"] < small_k["cost_separable"]
    with pytest.raises(ValueError):
        cext.choose_path(1, 8, 7, 7, 12)


def test_info():
    assert re.fullmatch(r"\d+\.\d+\.\d+", cext.version())
    assert "scalar" in cext.build_info()
    assert isinstance(cext.has_openmp(), bool)


# ------------------------------------------------------------------------- concurrency


def test_concurrent_calls_from_python_threads():
    rng = np.random.default_rng(13)
    jobs = []
    for i in range(16):
        c, h, w = 3 + i % 5, 6 + i % 7, 5 + i % 4
        x = f32(rng, 2, c, h, w)
        kh, kw, k7 = f32(rng, c, 1, 2 * h - 1, 1), f32(rng, c, 1, 1, 2 * w - 1), f32(rng, c, 1, 7, 7)
        layout = "NCHW" if i % 2 else "NHWC"
        xi = x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        path = ("separable", "dense", "auto")[i % 3]
        jobs.append((xi, kh, kw, k7, layout, path, 1 + i % 2))
    serial = [cext.parc_spatial(x, kh, kw, k7, layout=lay, path=p, threads=t) for x, kh, kw, k7, lay, p, t in jobs]
    with cf.ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            futures = [
                pool.submit(cext.parc_spatial, x, kh, kw, k7, layout=lay, path=p, threads=t)
                for x, kh, kw, k7, lay, p, t in jobs
            ]
            for i, (fut, want) in enumerate(zip(futures, serial)):
                got = fut.result()
                assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), f"job {i} differs under concurrency"
