"""The conformance harness's error model (spec clauses 11.4-11.9) and its tolerance API.

The bounded reference must compute exactly the reference's values, trace every named module
with the input that reproduces its output, and give bounds that a legitimate float32 evaluation
meets while a float16 one does not.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from parcnetv2 import reference as R
from parcnetv2.conformance import cases
from parcnetv2.conformance.error_bounds import BoundedReference, exact
from parcnetv2.conformance.observation import map_layout
from parcnetv2.spec import architecture_defaults
from parcnetv2.spec.tolerance import gamma, propagated_bound, propagation_length, safety_factor, unit_roundoff

F32 = np.float32
EPS, LOCAL = architecture_defaults()["norm_eps"], architecture_defaults()["local_kernel_size"]


def _model(case):
    x, weights = case.arrays(np.float64)
    return case.config(), weights, x


def _within(actual, bounded, dtype=np.float64):
    return np.all(np.abs(np.asarray(actual) - bounded.value) <= propagated_bound(bounded.error, dtype))


@settings(max_examples=15, deadline=None)
@given(case=cases.model_cases(max_image=40))
def test_bounded_model_computes_the_reference_values(case):
    """Clause 11.9: the bounded forward pass computes the reference's values (up to float64
    rounding, inside its own float64 bound); its float32 bounds are finite and non-negative."""
    config, weights, x = _model(case)
    assert _within(R.Model(config, weights)(x), BoundedReference(np.float64).model(config, weights, exact(x)))
    logits = BoundedReference(F32).model(config, weights, exact(x))
    assert np.all(np.isfinite(logits.error)) and np.all(logits.error >= 0)


@settings(max_examples=10, deadline=None)
@given(case=cases.model_cases(max_image=40))
def test_trace_inputs_reproduce_every_named_module(case):
    """Clause 14.6: each traced module's input, fed to the reference module of that name, gives
    the traced output (the first divergence and the per-module checks rely on it)."""
    config, weights, x = _model(case)
    trace = []
    BoundedReference(np.float64).model(config, weights, exact(x), trace=lambda *entry: trace.append(entry) or entry[2])
    model = R.Model(config, weights)
    names = {name for name, _, _ in trace}
    assert names <= set(model.component_names()) | {""}
    if config.interpolate is False:  # otherwise conv_h and conv_w never run (clause 5.5)
        assert set(model.component_names()) <= names
    for name, inputs, output in trace:
        assert _within(model.component(name)(inputs.value), output), name


@settings(max_examples=20, deadline=None)
@given(case=cases.block_cases())
def test_bounded_block_matches_reference_block(case):
    """Clause 8.4: the bounded block computes reference.block."""
    x, p = case.arrays(np.float64)
    settings_ = dict(res_scale=case.res_scale, eps=EPS, interpolate=case.interpolate, local_padding=LOCAL // 2)
    assert _within(R.block(p, x, **settings_), BoundedReference(np.float64).block(p, exact(x), **settings_))


@pytest.mark.parametrize("seed", range(6))
def test_float32_reference_is_inside_the_model_bound_and_float16_is_not(seed):
    """Clauses 11.4 and 11.9: the reference's own float32 pass meets the float32 bound of every
    traced module; the same pass with float16 storage breaks the float32 bound of the first
    module."""
    case = cases.ModelCase(
        seed=seed,
        scale=1.0,
        depths=(1, 2, 1, 1),
        dims=(8, 16, 24, 32),
        kernels=(21, 11, 5, 3),
        num_classes=10,
        interpolate=False,
        batch=2,
        height=45,
        width=29,
    )
    config, weights, x = _model(case)
    x32, w32 = x.astype(F32), {k: v.astype(F32) for k, v in weights.items()}
    trace = []
    weights64 = {k: v.astype(np.float64) for k, v in w32.items()}
    BoundedReference(F32).model(config, weights64, exact(x32), trace=lambda *entry: trace.append(entry) or entry[2])
    model = R.Model(config, w32)
    for name, inputs, output in trace:
        got = model.component(name)(inputs.value.astype(F32))
        assert np.all(np.abs(got - output.value) <= propagated_bound(output.error, F32)), name
    first, inputs, output = trace[0]
    half = model.component(first)(inputs.value.astype(np.float16).astype(F32)).astype(np.float16)
    assert np.any(np.abs(half - output.value) > propagated_bound(output.error, F32))


def test_reparameterized_kernel_bound_covers_the_float32_merge():
    """Clause 11.6: g(2)(|k_h||k_w|^T + |k7|) bounds a float32 merge of float32 kernels."""
    rng = np.random.default_rng(0)
    kh, kw, k7 = (rng.standard_normal(s).astype(F32) for s in [(5, 1, 13, 1), (5, 1, 1, 13), (5, 1, 7, 7)])
    bounded = BoundedReference(F32).reparameterize(kh, kw, k7)
    assert np.all(np.abs(R.reparameterize(kh, kw, k7) - bounded.value) <= bounded.error + 1e-45)


def test_layout_mapping_between_nhwc_and_nchw():
    """Clause 14.7: exported tensors are mapped to the official layout by shape."""
    nhwc = np.zeros((1, 4, 5, 3))
    assert map_layout(nhwc, (1, 3, 4, 5)).shape == (1, 3, 4, 5)
    assert map_layout(nhwc, (1, 4, 5, 3)) is nhwc
    assert map_layout(nhwc, (2, 3, 4, 5)) is None


def test_tolerance_api_extensions():
    """Clause 11.4: gamma includes the reference's own u64; lengths come from tolerance.toml."""
    assert gamma(4, F32) == pytest.approx(2 * gamma(1, F32))
    assert gamma(1, F32) == pytest.approx(safety_factor() * (unit_roundoff(F32) + unit_roundoff(np.float64)))
    assert gamma(1, np.float64) < gamma(1, F32)
    assert propagation_length("gelu_length") >= 1
    with pytest.raises(ValueError, match="no propagation length"):
        propagation_length("nonsense")
    assert propagated_bound(np.zeros(2), F32)[0] == np.finfo(F32).tiny
