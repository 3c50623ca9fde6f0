"""The conformance harness's error model (spec clauses 11.4-11.10) and its tolerance API.

The bounded reference must compute exactly the reference's values, trace every named module
with the input that reproduces its output, and give bounds that a legitimate float32 evaluation
meets while a float16 one does not; with the harness's whole-model weights the bound must have
power (clause 11.9: far below the values it bounds).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from parcnetv2 import reference as R
from parcnetv2.conformance import cases
from parcnetv2.conformance.error_bounds import BoundedReference, exact
from parcnetv2.conformance.observation import map_layout
from parcnetv2.reference.initialization import conditioned_state_dict
from parcnetv2.spec import architecture_defaults
from parcnetv2.spec.tolerance import probabilistic_constant, probabilistic_factor, propagation_length, unit_roundoff

F32 = np.float32
EPS, LOCAL = architecture_defaults()["norm_eps"], architecture_defaults()["local_kernel_size"]


def _model(case):
    x, weights = case.arrays(np.float64)
    return case.config(), weights, x


def _within(actual, bounded, dtype=np.float64):
    return np.all(np.abs(np.asarray(actual) - bounded.value) <= BoundedReference(dtype).bound(bounded))


@settings(max_examples=15, deadline=None)
@given(case=cases.model_cases(max_image=40))
def test_bounded_model_computes_the_reference_values(case):
    """Clause 11.9: the bounded forward pass computes the reference's values (up to float64
    rounding, inside its own float64 bound); its float32 bounds are finite and non-negative."""
    config, weights, x = _model(case)
    assert _within(R.Model(config, weights)(x), BoundedReference(np.float64).model(config, weights, exact(x)))
    logits = BoundedReference(F32).model(config, weights, exact(x))
    assert np.all(np.isfinite(logits.sigma)) and np.all(logits.sigma >= 0)


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
        assert np.all(np.abs(got - output.value) <= BoundedReference(F32).bound(output)), name
    first, inputs, output = trace[0]
    half = model.component(first)(inputs.value.astype(np.float16).astype(F32)).astype(np.float16)
    assert np.any(np.abs(half - output.value) > BoundedReference(F32).bound(output))


@pytest.mark.parametrize("variant", ["parcnetv2_xt"])
def test_whole_model_bound_has_power_with_the_harness_weights(variant):
    """Clause 11.9 (issue 8, point 3): with the harness's whole-model weights at 224 x 224, every stage
    output's bound is at most 1e-3 of that output's RMS, and the reference's own float32 pass reaches
    at least 1/30 of the bound at the logits (the bound is not far above real rounding errors)."""
    config = R.Config.from_variant(variant)
    rng = np.random.default_rng([0, 7])
    image = rng.standard_normal((1, 3, 224, 224)).astype(F32)
    weights = {k: v.astype(F32) for k, v in conditioned_state_dict(config, rng, image).items()}
    bounded = BoundedReference(F32)
    stages = {}

    def keep(name, inputs, output):
        if name.startswith("stages.") and name.count(".") == 1:
            stages[name] = output
        return output

    logits = bounded.model(config, {k: v.astype(np.float64) for k, v in weights.items()}, exact(image), trace=keep)
    for name, output in stages.items():
        rms = np.sqrt(np.mean(output.value**2))
        assert np.max(bounded.bound(output)) <= 1e-3 * rms, (name, np.max(bounded.bound(output)) / rms)
    ratio = np.max(np.abs(R.Model(config, weights)(image) - logits.value) / bounded.bound(logits))
    assert 1 / 30 <= ratio <= 1, ratio


def test_reparameterized_kernel_bound_covers_the_float32_merge():
    """Clause 11.6: lambda u' sqrt 2 (|k_h||k_w|^T + |k7|) bounds a float32 merge of float32 kernels."""
    rng = np.random.default_rng(0)
    kh, kw, k7 = (rng.standard_normal(s).astype(F32) for s in [(5, 1, 13, 1), (5, 1, 1, 13), (5, 1, 7, 7)])
    reference = BoundedReference(F32)
    bounded = reference.reparameterize(kh, kw, k7)
    assert np.all(np.abs(R.reparameterize(kh, kw, k7) - bounded.value) <= reference.bound(bounded))


def test_layout_mapping_between_nhwc_and_nchw():
    """Clause 14.7: exported tensors are mapped to the official layout by shape."""
    nhwc = np.zeros((1, 4, 5, 3))
    assert map_layout(nhwc, (1, 3, 4, 5)).shape == (1, 3, 4, 5)
    assert map_layout(nhwc, (1, 4, 5, 3)) is nhwc
    assert map_layout(nhwc, (2, 3, 4, 5)) is None


def test_tolerance_api_extensions():
    """Clause 11.4: lambda(N, eta) = sqrt(2 ln(2N / eta)), so N * 2 exp(-lambda^2 / 2) = eta; the
    constants come from tolerance.toml; the reference's own u64 is part of every sigma."""
    eta = probabilistic_constant("eta")
    for n in (1, 1000, 10**6):
        assert n * 2 * np.exp(-(probabilistic_factor(n) ** 2) / 2) == pytest.approx(eta)
    assert probabilistic_factor(10**6) > probabilistic_factor(10)
    assert propagation_length("norm_length") >= 1
    with pytest.raises(ValueError, match="no propagation length"):
        propagation_length("nonsense")
    with pytest.raises(ValueError, match="no probabilistic constant"):
        probabilistic_constant("nonsense")
    assert BoundedReference(F32).bound(exact(np.zeros(2)))[0] == np.finfo(F32).tiny
    assert BoundedReference(np.float64).u < BoundedReference(F32).u


@pytest.mark.parametrize("length", [19, 55, 166])
def test_dft_factor_covers_onnx_runtime_dft_and_log2_does_not(length):
    """Clause 11.6: ONNX Runtime's DFT on a length that is not a power of two rounds with an RMS
    error that grows like L, inside sqrt(dft_factor) * L * u * ||row|| and beyond the sqrt(log2 L)
    of an accurate FFT (the measurement behind tolerance.toml's dft_factor)."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    rows = 256
    node = helper.make_node("DFT", ["x"], ["y"], axis=1, onesided=1)
    graph = helper.make_graph(
        [node], "dft", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, length, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(length).standard_normal((rows, length, 1)).astype(F32)
    y = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    exact_ = np.fft.rfft(x[..., 0].astype(np.float64), axis=1)
    assert y.shape == (rows, exact_.shape[1], 2)
    assert y.dtype == F32
    row_norms = unit_roundoff(F32) * np.linalg.norm(x[..., 0].astype(np.float64), axis=1)
    rms = float(np.sqrt(np.mean((np.abs(y[..., 0] + 1j * y[..., 1] - exact_) / row_norms[:, None]) ** 2)))
    low, high = np.sqrt(np.log2(length)), np.sqrt(probabilistic_constant("dft_factor")) * length
    assert low < rms <= high, f"DFT length {length}: RMS error {rms:.3g} u||row||, expected in ({low:.3g}, {high:.3g}]"
