"""Conformance of the components of a block and of the downsampling layers (spec clauses 3, 5-8;
bounds of clause 11.9).

Components take the official local parameter names and the official input layout: the spatial
part OC + DW7 NCHW (N, C, H, W); the token mixer and the block NHWC (N, H, W, C); the BGU
(..., C); the stem NCHW and the downsampling layers NHWC. The last test runs them at the feature
maps of a variant at 224 x 224, where K = 2H - 1. Shape legend: N, C, H, W, K.
"""

from __future__ import annotations

import numpy as np
import pytest

from parcnetv2.conformance import cases
from parcnetv2.conformance.checking import as_float64
from parcnetv2.conformance.error_bounds import exact
from parcnetv2.conformance.harness import IMAGE_SIZE
from parcnetv2.reference import Config
from parcnetv2.reference.architecture import stage_sizes
from parcnetv2.spec import architecture_defaults

LOCAL_PADDING = architecture_defaults()["local_kernel_size"] // 2
EPS = architecture_defaults()["norm_eps"]


def _spatial(check, operation: str, clause: str) -> None:
    op = check.require(operation)

    def one(case):
        x, p = case.arrays(check.dtype)
        settings = dict(interpolate=case.interpolate, local_padding=LOCAL_PADDING)
        expected = check.bounded.parc_spatial(as_float64(p), exact(x), **settings)
        check.compare(check.call(op, p, x, **settings), expected, what=operation, clause=clause, case=case)

    check.run(cases.spatial_cases(), one, kind="components")


@pytest.mark.spec("5", "6")
def test_parc_spatial(conformance_check):
    """Clauses 5 and 6: OC(x) + DW7(x) in every kernel mode."""
    _spatial(conformance_check, "parc_spatial", "8.1")


@pytest.mark.spec("7.2")
def test_parc_spatial_reparameterized(conformance_check):
    """Clause 7.2: the spatial part as one dense depthwise conv with the merged kernel (of the
    input's size in the interpolated modes) equals the unmerged OC + DW7."""
    _spatial(conformance_check, "parc_spatial_reparameterized", "7.2")


def _mixer(check, reparameterized: bool) -> None:
    op = check.require("token_mixer")

    def one(case):
        x, p = case.arrays(check.dtype)
        settings = dict(interpolate=case.interpolate, local_padding=LOCAL_PADDING)
        expected = check.bounded.token_mixer(as_float64(p), exact(x), **settings)
        extra = {"reparameterized": True} if reparameterized else {}
        actual = check.call(op, p, x, **settings, **extra)
        check.compare(actual, expected, what="token_mixer", clause="7.2" if reparameterized else "8.1", case=case)

    check.run(cases.mixer_cases(), one, kind="components")


@pytest.mark.spec("8.1")
def test_token_mixer(conformance_check):
    """Clause 8.1: pwconv1, split, GELU on the second half, OC + DW7, gate by the first half,
    pwconv2 without bias; NHWC in and out; any C, including odd and prime counts."""
    _mixer(conformance_check, reparameterized=False)


@pytest.mark.spec("7.2")
def test_token_mixer_reparameterized(conformance_check):
    """Clause 7.2: the token mixer with the merged dense kernel equals the unmerged one."""
    _mixer(conformance_check, reparameterized=True)


@pytest.mark.spec("8.2")
def test_bgu(conformance_check):
    """Clause 8.2: fc1 (C -> 5C, bias), x1 * GELU(x2) over halves of 2.5C, fc2 without bias."""
    check = conformance_check
    op = check.require("bgu")

    def one(case):
        x, p = case.arrays(check.dtype)
        expected = check.bounded.bgu(as_float64(p), exact(x))
        check.compare(check.call(op, p, x), expected, what="bgu", clause="8.2", case=case)

    check.run(cases.bgu_cases(), one, kind="components")


def _block(check, reparameterized: bool) -> None:
    op = check.require("block")

    def one(case):
        x, p = case.arrays(check.dtype)
        settings = dict(res_scale=case.res_scale, eps=EPS, interpolate=case.interpolate, local_padding=LOCAL_PADDING)
        expected = check.bounded.block(as_float64(p), exact(x), **settings)
        extra = {"reparameterized": True} if reparameterized else {}
        actual = check.call(op, p, x, **settings, **extra)
        check.compare(actual, expected, what="block", clause="7.2" if reparameterized else "8.4", case=case)

    check.run(cases.block_cases(), one, kind="components")


@pytest.mark.spec("8.4")
def test_block(conformance_check):
    """Clause 8.4: x = res_scale1(x) + token_mixer(norm1(x)); x = res_scale2(x) + mlp(norm2(x)),
    the scales on the residual (stages 2, 3) or absent (stages 0, 1)."""
    _block(conformance_check, reparameterized=False)


@pytest.mark.spec("7.2")
def test_block_reparameterized(conformance_check):
    """Clause 7.2: a block whose token mixer uses the merged dense kernel."""
    _block(conformance_check, reparameterized=True)


@pytest.mark.spec("3.1", "3.2")
def test_downsampling(conformance_check):
    """Clauses 3.1 and 3.2: the stem (NCHW in, 7x7/4 conv, NHWC, post_norm) and a downsampling
    layer (NHWC in, pre_norm, 3x3/2 conv, NHWC out)."""
    check = conformance_check
    op = check.require("downsampling")

    def one(case):
        x, p = case.arrays(check.dtype)
        g = case.geometry()
        settings = dict(stride=g["stride"], padding=g["padding"], stem=case.stem, eps=EPS)
        expected = check.bounded.downsampling(as_float64(p), exact(x), **settings)
        clause = "3.1" if case.stem else "3.2"
        check.compare(check.call(op, p, x, **settings), expected, what="downsampling", clause=clause, case=case)

    check.run(cases.downsampling_cases(), one, kind="components")


GEOMETRY_OPERATIONS = ["oversized_conv", "parc_spatial", "parc_spatial_reparameterized", "token_mixer", "block"]


@pytest.mark.spec("5.1")
@pytest.mark.parametrize("operation", GEOMETRY_OPERATIONS)
def test_stage_geometry_224(conformance_check, geometry, operation):
    """Clause 5.1: each stage's components at the feature map the variant sees at 224 x 224,
    where K = 2H - 1 (111, 55, 27, 13 on 56, 28, 14, 7), batch 1."""
    check = conformance_check
    if geometry is None:
        pytest.skip("the backend is one fixed model: no component operations at the variant's geometry")
    variant, stage = geometry
    config = Config.from_variant(variant)
    height, width = stage_sizes(config, IMAGE_SIZE, IMAGE_SIZE)[stage]
    if operation == "parc_spatial_reparameterized" and stage == 0:
        pytest.skip("the dense merged kernel is not checked at stage 0 (111 x 111 taps on 56 x 56; clause 7.3)")
    op = check.require(operation)
    channels, kernel = config.dims[stage], config.global_kernel_sizes[stage]
    case_type = cases.BlockCase if operation == "block" else cases.MixerCase
    case = case_type(
        seed=check.harness.seed + stage,
        scale=1.0,
        batch=1,
        channels=channels,
        height=height,
        width=width,
        kernel=kernel,
        kernel_mode="2H-1" if kernel == 2 * height - 1 else "official",
        interpolate=False,
        **({"res_scale": config.has_res_scale(stage)} if operation == "block" else {}),
    )

    def one():
        x, p = case.arrays(check.dtype)
        settings: dict = dict(interpolate=False, local_padding=LOCAL_PADDING)
        if operation == "block":
            settings.update(res_scale=case.res_scale, eps=EPS)
        elif operation in ("oversized_conv", "parc_spatial", "parc_spatial_reparameterized"):
            x, p = _spatial_part(check, x, p)
        if operation == "oversized_conv":
            k_h, k_w = p["dwconv1.conv_h.weight"], p["dwconv1.conv_w.weight"]
            expected = check.bounded.oversized_conv(exact(x), k_h, k_w, False)
            actual = check.call(op, x, k_h, k_w, False)
        else:
            bounded = getattr(check.bounded, operation)
            expected = bounded(as_float64(p), exact(x), **settings)
            actual = check.call(op, p, x, **settings)
        check.compare(actual, expected, what=f"{operation} of {variant} stage {stage}", clause="5.1", case=case)

    check.single(one)


def _spatial_part(check, x: np.ndarray, p: dict) -> tuple[np.ndarray, dict]:
    """NCHW input and the dwconv1/dwconv2 kernels of a token mixer's parameters."""
    spatial = {k: v for k, v in p.items() if k.startswith(("dwconv1.", "dwconv2."))}
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), spatial
