"""The Model API (spec clause 2): names, components, creation, dtypes, reparameterization."""

from __future__ import annotations

import numpy as np
import pytest

from parcnetv2 import reference as R
from parcnetv2.errors import InputError, WeightsError
from parcnetv2.reference.initialization import random_state_dict
from parcnetv2.spec.tolerance import assert_relative

SMALL = dict(depths=(1, 1, 2, 1), dims=(8, 12, 16, 20), global_kernel_sizes=(13, 7, 5, 3))


def small_model(seed=0, **changes):
    config = R.Config(**{**SMALL, **changes}, num_classes=10)
    return R.Model(config, random_state_dict(config, seed))


def images(shape=(2, 3, 29, 23), seed=1, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def test_state_dict_names_and_order_are_official():
    names = list(R.create("parcnetv2_tiny", seed=0).state_dict())
    assert names[:4] == [
        "downsample_layers.0.conv.weight",
        "downsample_layers.0.conv.bias",
        "downsample_layers.0.post_norm.weight",
        "downsample_layers.1.pre_norm.weight",
    ]
    block = [n[len("stages.2.0.") :] for n in names if n.startswith("stages.2.0.")]
    assert block == [
        "norm1.weight",
        "token_mixer.pwconv1.weight",
        "token_mixer.pwconv1.bias",
        "token_mixer.dwconv1.conv_h.weight",
        "token_mixer.dwconv1.conv_w.weight",
        "token_mixer.dwconv2.weight",
        "token_mixer.pwconv2.weight",
        "res_scale1.scale",
        "norm2.weight",
        "mlp.fc1.weight",
        "mlp.fc1.bias",
        "mlp.fc2.weight",
        "res_scale2.scale",
    ]
    assert not any(n.startswith(("stages.0.0.res_scale", "stages.1.0.res_scale")) for n in names)
    assert names[-4:] == ["norm.weight", "norm.bias", "head.weight", "head.bias"]


def test_create_initialises_like_the_official_code():
    sd = R.create("parcnetv2_xt", seed=3).state_dict()
    conv = sd["stages.2.0.mlp.fc1.weight"]
    assert conv.dtype == np.float32
    assert abs(conv.std() - 0.02) < 0.001 and abs(conv.mean()) < 0.001
    assert np.all(sd["stages.2.0.mlp.fc1.bias"] == 0)
    assert np.all(sd["stages.2.0.norm1.weight"] == 1) and np.all(sd["stages.2.0.res_scale1.scale"] == 1)
    assert np.all(sd["norm.bias"] == 0)
    again = R.create("parcnetv2_xt", seed=3).state_dict()
    other = R.create("parcnetv2_xt", seed=4).state_dict()
    assert all(np.array_equal(sd[k], again[k]) for k in sd)
    assert not np.array_equal(sd["head.weight"], other["head.weight"])


def test_weights_are_read_only():
    sd = small_model().state_dict()
    with pytest.raises(ValueError):
        sd["head.bias"][0] = 1.0


def test_output_shapes_and_dtypes():
    model = small_model()
    for dtype in (np.float32, np.float64):
        logits = model(images(dtype=dtype))
        assert logits.shape == (2, 10) and logits.dtype == dtype
        features = model.forward_features(images(dtype=dtype))
        assert features.shape == (2, 20) and features.dtype == dtype


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (2, 3, 29, 23), (1, 3, 3, 5)])
def test_float32_agrees_with_float64(shape):
    model = small_model(seed=5)
    x = images(shape)
    assert_relative(
        model(x.astype(np.float32)),
        model(x).astype(np.float32),
        dtype=np.float32,
        op="model float32",
        params={"shape": shape},
    )


def test_components_compose_to_the_model():
    """Running the named components in the official order reproduces the model's forward."""
    model = small_model(seed=2)
    x = images()
    h = x
    for i in range(4):
        h = model.component(f"downsample_layers.{i}")(h)
        for j in range(SMALL["depths"][i]):
            h = model.component(f"stages.{i}.{j}")(h)
    logits = model.component("head")(model.component("norm")(h.mean(axis=(1, 2))))
    assert_relative(logits, model(x), dtype=np.float64, op="composed components")


def test_block_components_compose():
    """norm1 -> token_mixer -> res_scale1 ... reproduce stages.2.0 (clause 8.4)."""
    model = small_model(seed=6)
    x = np.random.default_rng(0).standard_normal((2, 5, 4, 16))
    c = lambda name: model.component(f"stages.2.0.{name}")  # noqa: E731
    h = c("res_scale1")(x) + c("token_mixer")(c("norm1")(x))
    h = c("res_scale2")(h) + c("mlp")(c("norm2")(h))
    assert_relative(h, model.component("stages.2.0")(x), dtype=np.float64, op="block composition")
    # inside the token mixer: OC from conv_h then conv_w (clause 5.5)
    nchw = np.random.default_rng(1).standard_normal((1, 16 * 2 // 2, 5, 4))
    oc = c("token_mixer.dwconv1")(nchw)
    assert_relative(
        c("token_mixer.dwconv1.conv_w")(c("token_mixer.dwconv1.conv_h")(nchw)),
        oc,
        dtype=np.float64,
        op="conv_h then conv_w",
    )


def test_component_layouts_and_names():
    model = small_model()
    names = model.component_names()
    assert "stages.1.0.token_mixer.dwconv1.conv_h" in names and "head" in names
    assert model.component_info("downsample_layers.0").layout == "NCHW"
    assert model.component_info("downsample_layers.1").layout == "NHWC"
    assert model.component_info("stages.0.0.token_mixer.dwconv2").layout == "NCHW"
    assert model.component_info("norm").layout == "NC"
    assert model.component("") is model
    with pytest.raises(InputError, match="no component named"):
        model.component("stages.9.0")
    with pytest.raises(InputError, match="container"):
        model.component("stages")


@pytest.mark.parametrize("interpolate", [False, True, 5])
def test_reparameterized_model_equals_unmerged(interpolate):
    """Clause 7.2: the merged dense kernel gives the same model output."""
    model = small_model(seed=8, interpolate=interpolate)
    x = images((1, 3, 45, 37))
    merged = model.with_reparameterized_mixers()
    assert_relative(
        merged(x), model(x), dtype=np.float64, op="reparameterized model", params={"interpolate": interpolate}
    )
    mixer = "stages.0.0.token_mixer"
    h = np.random.default_rng(3).standard_normal((2, 11, 9, 8))
    assert_relative(
        merged.component(mixer)(h), model.component(mixer)(h), dtype=np.float64, op="reparameterized token mixer"
    )


def test_reparameterize_places_both_kernels_at_the_centre():
    rng = np.random.default_rng(0)
    kh, kw, k7 = rng.standard_normal((3, 1, 5, 1)), rng.standard_normal((3, 1, 1, 9)), rng.standard_normal((3, 1, 7, 7))
    dense = R.reparameterize(kh, kw, k7)
    assert dense.shape == (3, 1, 7, 9)
    expected = np.zeros((3, 7, 9))
    for c in range(3):
        for i in range(5):
            for j in range(9):
                expected[c, i + 1, j] += kh[c, 0, i, 0] * kw[c, 0, 0, j]
        for i in range(7):
            for j in range(7):
                expected[c, i, j + 1] += k7[c, 0, i, j]
    assert np.array_equal(dense[:, 0], expected)  # the same products and sums, in the same order


def test_interpolate_true_matches_fixed_kernels_at_their_design_size():
    """At the size where K = 2H-1 the resize is the identity, so both modes agree."""
    config = R.Config(depths=(1,), dims=(6,), global_kernel_sizes=(7,), num_classes=4)
    weights = random_state_dict(config, 1)
    fixed = R.Model(config, weights)
    interp = R.Model(
        R.Config(depths=(1,), dims=(6,), global_kernel_sizes=(7,), num_classes=4, interpolate=True), weights
    )
    x = images((1, 3, 16, 16))  # stem output 4x4: K = 7 = 2*4 - 1
    assert_relative(interp(x), fixed(x), dtype=np.float64, op="interpolate=True at design size")
    y = images((1, 3, 24, 24))  # 6x6 maps: the kernels are stretched, the outputs differ
    assert np.max(np.abs(interp(y) - fixed(y))) > 1e-6


@pytest.mark.parametrize(
    "shape,match",
    [((3, 32, 32), "NCHW"), ((1, 4, 32, 32), "NCHW"), ((1, 3, 2, 32), "at least 3x3")],
)
def test_bad_images_are_rejected(shape, match):
    with pytest.raises(InputError, match=match):
        small_model()(np.zeros(shape))


def test_integer_images_are_rejected():
    with pytest.raises(InputError, match="dtype"):
        small_model()(np.zeros((1, 3, 8, 8), dtype=np.int32))


def test_state_dict_errors_name_keys_and_shapes():
    config = R.Config(**SMALL, num_classes=10)
    sd = random_state_dict(config, 0)
    bad = dict(sd)
    bad["stages.1.0.token_mixer.dwconv2.weight"] = np.zeros((24, 1, 5, 5))
    with pytest.raises(
        WeightsError,
        match=r"stages\.1\.0\.token_mixer\.dwconv2\.weight has shape \(24, 1, 5, 5\), expected \(12, 1, 7, 7\)",
    ):
        R.Model(config, bad)
    missing = {k: v for k, v in sd.items() if k != "norm.bias"}
    missing["extra.weight"] = np.zeros(3)
    with pytest.raises(WeightsError, match=r"missing keys \(1\): norm\.bias; unexpected keys \(1\): extra\.weight"):
        R.Model(config, missing)


def test_from_state_dict_infers_variant_and_custom_configs():
    sd = R.create("parcnetv2_xt", num_classes=7, seed=0).state_dict()
    model = R.from_state_dict(sd)
    assert model.variant == "parcnetv2_xt" and model.num_classes == 7
    assert R.from_state_dict(sd, "parcnetv2_xt").variant == "parcnetv2_xt"
    with pytest.raises(WeightsError, match="parcnetv2_tiny"):
        R.from_state_dict(sd, "parcnetv2_tiny")
    custom = R.from_state_dict(small_model().state_dict())
    assert custom.variant is None and custom.config.depths == SMALL["depths"]
    assert custom.config.global_kernel_sizes == SMALL["global_kernel_sizes"]


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"dims": (9, 12, 16, 20)}, "even"),
        ({"global_kernel_sizes": (4, 7, 5, 3)}, "odd"),
        ({"depths": (1, 1)}, "one entry per stage"),
        ({"interpolate": 4}, "interpolate"),
        ({"width": 3}, "unknown override"),
    ],
)
def test_bad_configurations_are_rejected(overrides, match):
    with pytest.raises(InputError, match=match):
        R.create("parcnetv2_xt", **overrides)


def test_unknown_variant():
    with pytest.raises(InputError, match="known variants: parcnetv2_xt"):
        R.create("parcnetv2_huge")
