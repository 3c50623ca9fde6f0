"""Conformance of whole models (spec clauses 2, 8.5, 9; bounds of clauses 11.3 and 11.9).

``test_model`` draws small custom configurations (clause 2.4) with their images. With
``--variant`` (or ``--model``), ``test_variant_model`` runs each official variant at 224 x 224
and ``test_variant_component`` every named module of it, on the reference's input to that
module, at the feature-map sizes the variant sees there (K = 2H - 1). Activations a backend
exposes (hooks, extra ONNX outputs) are compared too, and a failing model names its first
divergence. Layouts: NCHW images (N, 3, H, W) in, logits (N, classes) out.
"""

from __future__ import annotations

import pytest

from parcnetv2.conformance import cases
from parcnetv2.conformance.harness import Target
from parcnetv2.conformance.model_checks import check_component, check_model, component_runner
from parcnetv2.conformance.protocol import Unsupported

NO_VARIANT = "no --variant given: official variants are checked as whole models with --variant NAME (or --model)"


@pytest.mark.spec("2", "2.4", "8.5")
def test_model(conformance_check):
    """Clauses 2, 8.5 and 2.4: whole small models with every kernel mode, H != W, batch 1-3,
    and every named module the backend's model runs on its own."""
    check = conformance_check
    check.require("model")

    def one(case):
        x, weights = case.arrays(check.dtype)
        run = check.harness.reference_run(Target("drawn", case.config(), x.shape), weights, x)
        check_model(check, run, case=case, modules=True)

    check.run(cases.model_cases(), one, kind="model")


@pytest.mark.spec("9")
def test_variant_model(conformance_check, model_target):
    """Clause 9: an official variant (or the exported file) at its input size, with activations."""
    check = conformance_check
    if model_target is None:
        pytest.skip(NO_VARIANT)
    check.require("model")
    run = check.harness.run_for(check.harness.target(model_target))
    check.single(lambda: check_model(check, run))


@pytest.mark.spec("14.6")
def test_variant_component(conformance_check, model_target, component_name):
    """Clauses 3-8 at 224 x 224: one named module of an official variant (downsample layers,
    blocks, token mixers, their oversized and 7x7 convs, BGUs, norms, head), on its own."""
    check = conformance_check
    if model_target is None:
        pytest.skip(NO_VARIANT)
    run = check.harness.run_for(check.harness.target(model_target))
    if run.model_error is not None and not isinstance(run.model_error, Unsupported):
        pytest.skip(f"the backend's model of {model_target} failed to build (test_variant_model reports it)")
    runner = component_runner(check, run, component_name)
    if runner is None:
        kind = run.parts[component_name].kind
        pytest.skip(f"backend {check.harness.backend.name} does not provide {kind} ({component_name}) on its own")
    check.single(lambda: check_component(check, run, component_name, runner))
