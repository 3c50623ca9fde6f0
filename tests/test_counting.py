"""Parameter and MAC counts (spec clause 10) against the official anchors (clause 9) and the
closed-form formulas of clause 10.1 / supplement Sec. C."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parcnetv2 import reference as R
from parcnetv2.spec import get_variant, variant_names


def closed_form_params(depths, dims, kernels, num_classes=1000, res_scale_stages=(False, False, True, True)):
    """Clause 10.1 written out: 10.5C^2 + 2CK + 58C per block (+2C with res scales)."""
    total = 147 * dims[0] + 2 * dims[0]
    for i in range(1, len(dims)):
        total += dims[i - 1] + 9 * dims[i - 1] * dims[i] + dims[i]
    for depth, c, k, res in zip(depths, dims, kernels, res_scale_stages):
        per_block = 10.5 * c * c + 2 * c * k + 58 * c + (2 * c if res else 0)
        total += depth * int(per_block)
    return total + 2 * dims[-1] + (dims[-1] + 1) * num_classes


@pytest.mark.parametrize("variant", variant_names())
def test_exact_official_parameter_counts(variant):
    official = get_variant(variant).params
    assert R.count_params(variant) == official
    assert R.count_params(R.create(variant, seed=0)) == official
    spec = get_variant(variant)
    assert closed_form_params(spec.depths, spec.dims, (111, 55, 27, 13)) == official


@pytest.mark.parametrize("variant", variant_names())
def test_macs_at_224_match_official_measurement(variant):
    assert round(R.count_macs(variant) / 1e9, 3) == get_variant(variant).gmacs_224


@settings(max_examples=40, deadline=None)
@given(
    depths=st.lists(st.integers(0, 3), min_size=4, max_size=4),
    dims=st.lists(st.integers(1, 40).map(lambda v: 2 * v), min_size=4, max_size=4),
    kernels=st.lists(st.integers(0, 30).map(lambda v: 2 * v + 1), min_size=4, max_size=4),
    classes=st.integers(1, 50),
)
def test_custom_configurations_follow_the_closed_form(depths, dims, kernels, classes):
    config = R.Config(depths=tuple(depths), dims=tuple(dims), global_kernel_sizes=tuple(kernels), num_classes=classes)
    assert R.count_params(config) == closed_form_params(depths, dims, kernels, classes)


@pytest.mark.parametrize("c", [2, 48, 64, 320, 576])
def test_bgu_parameters_follow_alpha_tilde(c):
    """Supplement Sec. C: the BGU has 3 * alpha~ * C^2 weights (+5C biases) with alpha~ = 2.5,
    close to the 2 * alpha * C^2 of an FFN with alpha = 4 (alpha~ = 2 alpha / 3 = 8/3 exactly)."""
    model = R.create("parcnetv2_xt", seed=0, depths=(1,), dims=(c,), global_kernel_sizes=(3,))
    sd = model.state_dict()
    weights = sd["stages.0.0.mlp.fc1.weight"].size + sd["stages.0.0.mlp.fc2.weight"].size
    assert weights == 3 * 2.5 * c * c
    assert sd["stages.0.0.mlp.fc1.bias"].size == 5 * c
    ffn = 2 * 4 * c * c
    assert abs(weights - ffn) / ffn == pytest.approx(1 - 2.5 / (8 / 3))


def test_macs_depend_on_resolution_and_mode():
    base = R.count_macs("parcnetv2_tiny", 224)
    assert R.count_macs("parcnetv2_tiny", (224, 224)) == base
    assert R.count_macs("parcnetv2_tiny", 256) > base
    # interpolate=True uses 2H-1 kernels, which at 224 are exactly the fixed ones.
    interp = R.Config.from_variant("parcnetv2_tiny", interpolate=True)
    assert R.count_macs(interp, 224) == base
    assert R.count_macs(interp, 160) < R.count_macs("parcnetv2_tiny", 160)


def test_breakdown_sums_to_totals():
    rows = R.breakdown("parcnetv2_small")
    assert sum(r.params for r in rows) == get_variant("parcnetv2_small").params
    assert {r.group for r in rows} >= {"downsample_layers.0", "stages.3", "head"}
    assert all(r.params >= 0 and r.macs >= 0 for r in rows)
    assert np.sum([r.macs for r in rows]) == R.count_macs("parcnetv2_small")
