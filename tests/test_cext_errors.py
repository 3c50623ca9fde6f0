"""Bad arguments to the C binding (spec clauses 12.4, 16.5; issue 10): every one raises InputError
(MemoryError only for PCN_ERR_NOMEM) with one line naming what is wrong, never OverflowError,
ValueError of another kind, TypeError or ZeroDivisionError; sizes are refused by C before anything
is allocated; 0-d inputs keep their shape. Shape legend: N, C, H, W, K.
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from parcnetv2 import cext
from parcnetv2.errors import InputError

X = np.zeros((1, 2, 8, 8), np.float32)
W = np.zeros((2, 1, 3, 3), np.float32)
K7 = np.zeros((1, 1, 7, 7), np.float32)
BAD_THREADS = [2**31, 2**64, -(2**31) - 1, float("nan"), 1.5, 2.0, True, np.bool_(True), "2", 0, -1]


def _one_line_input_error(call, match: str) -> InputError:
    with pytest.raises(InputError, match=match) as info:
        call()
    assert type(info.value) is InputError and "\n" not in str(info.value)
    return info.value


@pytest.mark.parametrize("threads", BAD_THREADS + [cext.MAX_THREADS + 1])
def test_threads_out_of_range_or_not_an_int(threads):
    """threads: None or an int in 1..MAX_THREADS (PCN_MAX_THREADS, C's limit and the command line's)."""
    _one_line_input_error(lambda: cext.dwconv2d(X, W, threads=threads), "threads")
    _one_line_input_error(lambda: cext.erf(X, threads=threads), "threads")
    _one_line_input_error(lambda: cext.im2col(X, 3, threads=threads), "threads")


def test_threads_limit_is_the_c_headers_and_is_accepted():
    from parcnetv2.cli.arguments import MAX_THREADS as CLI_MAX_THREADS

    assert cext.MAX_THREADS == CLI_MAX_THREADS == 1024
    assert cext.check_threads(np.int64(cext.MAX_THREADS)) == cext.MAX_THREADS
    np.testing.assert_array_equal(cext.erf(X, threads=cext.MAX_THREADS), cext.erf(X, threads=1))


@pytest.mark.parametrize(
    "padding, match",
    [
        (2**62, "padding PH=4611686018427387904"),  # C: too large (it would overflow the output size)
        (2**64, "padding = 18446744073709551616 is not a size"),
        (-1, "padding = -1 is not a size"),
        ("a", "padding must be a non-negative int"),
        (1.5, "padding must be a non-negative int"),
        ((1, 2, 3), "padding must be an int or a pair"),
        (None, None),
    ],
)
def test_padding(padding, match):
    if match is None:
        assert cext.dwconv2d(X, W, padding=padding).shape == X.shape
        return
    _one_line_input_error(lambda: cext.dwconv2d(X, W, padding=padding), match)


def test_im2col_stride_zero_and_huge_padding():
    _one_line_input_error(lambda: cext.im2col(X, 3, stride=0), "stride must be >= 1")
    _one_line_input_error(lambda: cext.im2col(X, 3, padding=2**62), "padding .* must be <= 255")
    _one_line_input_error(lambda: cext.im2col(X, 3, padding="a"), "padding must be a non-negative int")
    _one_line_input_error(lambda: cext.im2col(X, 3, bias_column=2), "bias_column must be a bool")


@pytest.mark.parametrize("isa, match", [(["avx2"], "isa must be one of"), ("sse9", "isa must be one of"), (3, "isa")])
def test_isa_names(isa, match):
    _one_line_input_error(lambda: cext.dwconv2d(X, W, isa=isa), match)
    _one_line_input_error(lambda: cext.erf(X, isa=isa), match)


def test_an_isa_this_cpu_lacks_is_refused_by_c():
    missing = [i for i in ("scalar", "avx2", "avx512", "neon") if i not in cext.available_isas()]
    if not missing:
        pytest.skip("every ISA is available on this machine")
    _one_line_input_error(lambda: cext.dwconv2d(X, W, isa=missing[0]), "not available")


def _peak_allocation(call) -> int:
    """Bytes NumPy allocated at the peak of ``call`` (which must raise InputError)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with pytest.raises(InputError):
            call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x: cext.im2col(x, 256), "kernel 256x256"),
        (lambda x: cext.im2col(x, (3, 256), padding=100), "kernel 3x256"),
        (lambda x: cext.dwconv2d(x, np.zeros((1, 1, 256, 300), np.float32)), "KH = 256"),
        (lambda x: cext.oversized_conv(x, np.zeros((1, 1, 256, 1)), np.zeros((1, 1, 1, 3))), "KV .* = 256"),
        (lambda x: cext.reparameterize(np.zeros((1, 1, 100001, 1)), np.zeros((1, 1, 1, 9)), K7), "100001"),
    ],
)
def test_kernel_lengths_over_255_are_refused_before_allocating(call, match):
    """Kernel 256 (or 100001): C's shape query refuses it before the output is allocated; the old
    im2col allocated the patch matrix first (58.7 GiB for a 300 x 300 map and kernel 256)."""
    x = np.zeros((1, 1, 300, 300), np.float32)
    _one_line_input_error(lambda: call(x), match)
    assert _peak_allocation(lambda: call(x)) < 8 << 20


def test_zero_dimensional_inputs_keep_their_shape():
    for value in (np.float32(0.5), np.array(-1.25), 0.75):
        y = cext.erf(value)
        assert y.shape == () and y.dtype == np.float32
        assert y == pytest.approx(math.erf(float(value)), rel=1e-6)
        g = cext.bias_gelu(value)
        assert g.shape == () and g.dtype == np.float32
        assert g == cext.bias_gelu(np.array([value]))[0]
    assert cext.bias_gelu(np.float32(0.5), np.array([0.25], np.float32)) == cext.bias_gelu(np.float32(0.75))
    _one_line_input_error(lambda: cext.bias_gelu(np.float32(0.5), np.zeros(2, np.float32)), r"bias must be \(1,\)")


def test_shapes_the_arrays_must_have_and_c_messages():
    _one_line_input_error(lambda: cext.dwconv2d(X[0], W), "rank 4")
    _one_line_input_error(lambda: cext.dwconv2d(X, W[:1]), r"must be \(2, 1, KH, KW\)")
    _one_line_input_error(lambda: cext.parc_spatial(X, W[:, :, :2, :1], W[:, :, :1, :3], np.zeros((2, 1, 7, 7))), "odd")
    _one_line_input_error(lambda: cext.layer_norm(np.zeros((3, 0)), np.zeros(0), np.zeros(0)), "C must be >= 1")
    _one_line_input_error(lambda: cext.choose_path(1, 8, 7, 7, 12), "pcn_parc refuses")
    _one_line_input_error(lambda: cext.choose_path(1, 8, 7, "a", 13), "w must be a non-negative int")
    _one_line_input_error(lambda: cext.PackedMatrix(np.zeros((0, 4))), "K and N must be >= 1")
    _one_line_input_error(lambda: cext.PackedMatrix(np.ones((3, 4))).matmul(np.ones((2, 5))), r"\(\.\.\., 4\)")


def test_empty_batches_give_empty_results():
    assert cext.dwconv2d(X[:0], W).shape == (0, 2, 8, 8)
    assert cext.oversized_conv(X[:0], np.zeros((2, 1, 4, 1)), np.zeros((2, 1, 1, 5))).shape == (0, 2, 9, 8)
    assert cext.im2col(X[:0], 3, bias_column=True).shape == (0, 2 * 9 + 1)
    assert cext.layer_norm_general(np.zeros((0, 5)), np.ones(5)).shape == (0, 5)
    assert cext.PackedMatrix(np.ones((3, 4))).matmul(np.ones((0, 4))).shape == (0, 3)
    # an empty batch still gets C's checks of the other sizes
    _one_line_input_error(lambda: cext.dwconv2d(X[:0], np.zeros((2, 1, 256, 3))), "KH = 256")
