"""Conformance of single operations (spec clauses 3-8; bounds of clauses 11.5-11.8).

Each test draws cases (``parcnetv2.conformance.cases``), runs the backend's operation on arrays
of its dtype and compares with the float64 reference and the propagated bound. An operation the
backend does not provide is skipped with "backend X does not provide Y". Layouts: NCHW for
convolutions, (..., C) for norms and linear layers. Shape legend: N, C, H, W, K.
"""

from __future__ import annotations

import numpy as np
import pytest

from parcnetv2.conformance import cases
from parcnetv2.conformance.error_bounds import exact
from parcnetv2.spec import architecture_defaults

EPS = architecture_defaults()["norm_eps"]


@pytest.mark.spec("3")
def test_conv2d(conformance_check):
    """Clause 3: the stem's 7x7/4 pad 2 and the downsampling 3x3/2 pad 1 convolutions, with bias."""
    check = conformance_check
    op = check.require("conv2d")

    def one(case):
        x, p = case.arrays(check.dtype)
        expected = check.bounded.conv2d(exact(x), p["weight"], p.get("bias"), case.stride, case.padding)
        actual = check.call(op, x, p["weight"], p.get("bias"), case.stride, case.padding)
        check.compare(actual, expected, what="conv2d", clause="3", case=case)

    check.run(cases.conv_cases(), one, kind="operations")


@pytest.mark.spec("6", "7")
def test_depthwise_conv2d(conformance_check):
    """Clauses 6 and 7: depthwise convolution with any KH x KW (7x7 and dense merged kernels),
    "same" padding KH//2, KW//2, optional bias."""
    check = conformance_check
    op = check.require("depthwise_conv2d")

    def one(case):
        x, p = case.arrays(check.dtype)
        pad = (case.kernel_h // 2, case.kernel_w // 2)
        expected = check.bounded.depthwise_conv2d(exact(x), p["weight"], p.get("bias"), pad)
        actual = check.call(op, x, p["weight"], p.get("bias"), pad)
        check.compare(actual, expected, what="depthwise_conv2d", clause="6", case=case)

    check.run(cases.depthwise_cases(), one, kind="operations")


@pytest.mark.spec("8.1")
def test_pointwise_conv2d(conformance_check):
    """Clause 8.1: 1x1 convolution (pwconv1 with bias, pwconv2 without)."""
    check = conformance_check
    op = check.require("pointwise_conv2d")

    def one(case):
        x, p = case.arrays(check.dtype)
        expected = check.bounded.pointwise_conv2d(exact(x), p["weight"], p.get("bias"))
        check.compare(
            check.call(op, x, p["weight"], p.get("bias")), expected, what="pointwise_conv2d", clause="8.1", case=case
        )

    check.run(cases.pointwise_cases(), one, kind="operations")


@pytest.mark.spec("8.2", "8.5")
def test_linear(conformance_check):
    """Clauses 8.2 and 8.5: Linear over the last axis of NHWC maps (fc1 with bias, fc2 without)."""
    check = conformance_check
    op = check.require("linear")

    def one(case):
        x, p = case.arrays(check.dtype)
        expected = check.bounded.linear(exact(x), p["weight"], p.get("bias"))
        check.compare(check.call(op, x, p["weight"], p.get("bias")), expected, what="linear", clause="8.2", case=case)

    check.run(cases.linear_cases(), one, kind="operations")


@pytest.mark.spec("5.1", "5.2", "5.3", "5.4")
def test_oversized_conv(conformance_check):
    """Clauses 5.1-5.4: OC with K = 2H-1, K > 2H-1, K < H and any K, in the fixed mode and the
    interpolated modes (True: 2H-1 and 2W-1; S), zero padding, output of the input's size."""
    check = conformance_check
    op = check.require("oversized_conv")

    def one(case):
        x, p = case.arrays(check.dtype)
        k_h, k_w = p["dwconv1.conv_h.weight"], p["dwconv1.conv_w.weight"]
        expected = check.bounded.oversized_conv(exact(x), k_h, k_w, case.interpolate)
        check.compare(
            check.call(op, x, k_h, k_w, case.interpolate), expected, what="oversized_conv", clause="5", case=case
        )

    check.run(cases.spatial_cases(), one, kind="operations")


@pytest.mark.spec("5.6")
def test_oversized_conv_commutes(conformance_check):
    """Clause 5.6 (supplement Sec. B): the backend's conv_w pass followed by its conv_h pass
    (two depthwise convolutions, the reverse of the official order) equals OC."""
    check = conformance_check
    op = check.require("depthwise_conv2d")

    def one(case):
        x, p = case.arrays(check.dtype)
        k_h, k_w = p["dwconv1.conv_h.weight"], p["dwconv1.conv_w.weight"]
        horizontal = np.asarray(check.call(op, x, k_w, None, (0, case.kernel // 2)))
        actual = check.call(op, horizontal.astype(check.dtype), k_h, None, (case.kernel // 2, 0))
        expected = check.bounded.oversized_conv(exact(x), k_h, k_w, False)
        check.compare(actual, expected, what="conv_w then conv_h", clause="5.6", case=case)

    check.run(cases.spatial_cases(fixed_only=True), one, kind="operations")


@pytest.mark.spec("5.2")
def test_resize_kernel(conformance_check):
    """Clause 5.2: linear resize of 1-D kernels with align_corners=True, up and down."""
    check = conformance_check
    op = check.require("resize_kernel")

    def one(case):
        kernel = case.arrays(check.dtype)
        expected = check.bounded.resize_kernel(kernel, case.size)
        check.compare(check.call(op, kernel, case.size), expected, what="resize_kernel", clause="5.2", case=case)

    check.run(cases.resize_cases(), one, kind="operations")


@pytest.mark.spec("7.1")
def test_reparameterize(conformance_check):
    """Clause 7.1: the merged dense kernel outer(k_h, k_w) + k7, centres aligned, size max(K, 7)."""
    check = conformance_check
    op = check.require("reparameterize")

    def one(case):
        _, p = case.arrays(check.dtype)
        kernels = p["dwconv1.conv_h.weight"], p["dwconv1.conv_w.weight"], p["dwconv2.weight"]
        expected = check.bounded.reparameterize(*kernels)
        check.compare(check.call(op, *kernels), expected, what="reparameterize", clause="7.1", case=case)

    check.run(cases.spatial_cases(fixed_only=True), one, kind="operations")


@pytest.mark.spec("7.1")
def test_merged_kernel_equals_unmerged(conformance_check):
    """Clause 7.1: one depthwise conv with the backend's merged kernel equals OC + DW7 unmerged."""
    check = conformance_check
    merge, conv = check.require("reparameterize"), check.require("depthwise_conv2d")

    def one(case):
        x, p = case.arrays(check.dtype)
        dense = np.asarray(
            check.call(merge, p["dwconv1.conv_h.weight"], p["dwconv1.conv_w.weight"], p["dwconv2.weight"])
        )
        actual = check.call(conv, x, dense.astype(check.dtype))
        expected = check.bounded.parc_spatial(
            p, exact(x), interpolate=False, local_padding=p["dwconv2.weight"].shape[2] // 2
        )
        check.compare(actual, expected, what="dense merged kernel vs OC + DW7", clause="7.1", case=case)

    check.run(cases.spatial_cases(fixed_only=True), one, kind="operations")


@pytest.mark.spec("4.1")
def test_layer_norm_general(conformance_check):
    """Clause 4.1: the official LayerNormGeneral, c / max(||c||_2, eps) * weight, no bias; inputs
    from 1e-4 to 1e2 (where eps handling shows) and with common offsets (cancellation)."""
    check = conformance_check
    op = check.require("layer_norm_general")

    def one(case):
        x, p = case.arrays(check.dtype, standard=False)
        expected = check.bounded.layer_norm_general(exact(x), p["norm1.weight"], EPS)
        check.compare(
            check.call(op, x, p["norm1.weight"], EPS), expected, what="layer_norm_general", clause="4.1", case=case
        )

    check.run(cases.norm_cases(), one, kind="operations")


@pytest.mark.spec("4.2")
def test_layer_norm(conformance_check):
    """Clause 4.2: the head's standard LayerNorm, (x - mean) / sqrt(var + eps) * weight + bias."""
    check = conformance_check
    op = check.require("layer_norm")

    def one(case):
        x, p = case.arrays(check.dtype, standard=True)
        expected = check.bounded.layer_norm(exact(x), p["norm.weight"], p["norm.bias"], EPS)
        actual = check.call(op, x, p["norm.weight"], p["norm.bias"], EPS)
        check.compare(actual, expected, what="layer_norm", clause="4.2", case=case)

    check.run(cases.norm_cases(), one, kind="operations")


@pytest.mark.spec("8.1")
def test_gelu(conformance_check):
    """Clause 8.1: the exact GELU x * Phi(x) (erf form), not the tanh approximation."""
    check = conformance_check
    op = check.require("gelu")

    def one(case):
        x = case.arrays(check.dtype)
        check.compare(check.call(op, x), check.bounded.gelu(exact(x)), what="gelu", clause="8.1", case=case)

    check.run(cases.gelu_cases(), one, kind="operations")
