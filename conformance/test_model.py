"""Conformance of whole models (spec clauses 2, 8.5, 9; bounds of clauses 11.9 and 14.6).

``test_model`` draws small custom configurations (clause 2.4) with their images. With
``--variant`` (or ``--model``), ``test_variant_model`` runs each whole-model target (an official
variant at 224 x 224; for a factory also at a small odd non-square size with batch 2, in the
kernel modes it accepts, with its own and with ``--weights`` weights): call coverage and order,
every module on its own input and the wiring between modules, the error's growth per stage and the
logits; a failure names the first divergence. Layouts: NCHW images (N, 3, H, W) in, logits
(N, classes) out.
"""

from __future__ import annotations

import pytest

from parcnetv2.conformance import cases
from parcnetv2.conformance.harness import Target
from parcnetv2.conformance.model_checks import check_model

NO_VARIANT = "no --variant given: official variants are checked as whole models with --variant NAME (or --model)"


@pytest.mark.spec("2", "2.4", "8.5")
def test_model(conformance_check):
    """Clauses 2, 8.5 and 2.4: whole small models with every kernel mode, H != W, batch 1-3,
    with every module the backend's model exposes checked on its own input."""
    check = conformance_check
    check.require("model")

    def one(case):
        x, weights = case.arrays(check.dtype)
        run = check.harness.reference_run(Target("drawn", case.config(), x.shape), weights, x)
        check_model(check, run, case=case, require_power=False)

    check.run(cases.model_cases(), one, kind="model")


@pytest.mark.spec("2.1", "9", "14.6")
def test_variant_model(conformance_check, model_target):
    """Clauses 2.1, 9 and 14.6: one whole-model target (see the module docstring)."""
    check = conformance_check
    if model_target is None:
        pytest.skip(NO_VARIANT)
    check.require("model")
    run = check.harness.run_for(check.harness.target(model_target))
    check.notes["target"] = {"label": model_target, "image": list(run.image.shape), "weights": run.target.weights}
    # Clause 11.10: power is required where the harness chose the weights and the kernels are not
    # interpolated; with weights from elsewhere (a file, the factory's, --weights) it is reported.
    power = run.target.weights == "harness" and run.target.config.interpolate is False
    check.single(lambda: check_model(check, run, require_power=power))
