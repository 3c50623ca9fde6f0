"""Every probed named module of a model on drawn inputs (spec clause 14.6).

A module checked only on the activations of one image never meets the inputs where eps, float16
or GELU's tails matter. For a user's model (``--model``, a factory or an exported file) and for
``--variant`` runs, each probed module (every module of the first block of each stage and of the
last block, the downsampling layers and the head; ``Harness.probed_modules``) is run on its own,
with the target's weights, on drawn inputs: scales from 1e-6 to 1e4, nearly constant vectors,
non-square maps and batches up to 3 (an exported module takes the fixed shape it was exported
with). A module without a forward of its own (a holder of parameters) is probed through its
nearest callable ancestor, and the report says so.
"""

from __future__ import annotations

import numpy as np
import pytest

from parcnetv2.conformance import cases
from parcnetv2.conformance.error_bounds import exact
from parcnetv2.conformance.observation import layout_axes, map_layout
from parcnetv2.conformance.protocol import Unsupported
from parcnetv2.reference.components import subtree
from parcnetv2.reference.registry import KINDS

NO_MODEL = "no --variant or --model given: modules of a whole model are probed with --variant NAME (or --model)"


def _runner(model, name: str):
    """(module name actually run, callable) for ``name`` or its nearest callable ancestor."""
    component = getattr(model, "component", None)
    if not callable(component):
        raise Unsupported("the backend's model runs no module on its own (no component(name))")
    candidate, reasons = name, []
    while candidate:
        try:
            return candidate, component(candidate)
        except Unsupported as exc:
            reasons.append(str(exc))
            candidate = candidate.rpartition(".")[0]
    raise Unsupported("; ".join(reasons))


@pytest.mark.spec("14.6")
def test_module_probe(conformance_check, module_target):
    """Clause 14.6: one named module on drawn inputs, against its own bound."""
    check = conformance_check
    if module_target is None:
        pytest.skip(NO_MODEL)
    label, name = module_target
    run = check.harness.run_for(check.harness.target(label))
    if run.model_error is not None:
        pytest.skip(f"the backend's model of {label} failed to build (test_variant_model reports it)")
    try:
        probed, runner = _runner(run.model, name)
    except Unsupported as exc:
        pytest.skip(f"backend {check.harness.backend.name} does not run {name} on its own: {exc}")
    if probed != name:
        check.notes["probed_through_ancestor"] = probed
    part = run.parts[probed]
    template = run.entry(probed)[0].shape
    fixed = bool(getattr(run.model, "fixed_shapes", False))
    params = subtree(run.weights, probed)
    clause = KINDS[part.kind].clause
    axes = _observed_layout(run, probed, template)
    if axes != tuple(range(len(template))):
        check.notes["probed_in_layout"] = list(axes)

    def one(case):
        x = case.array(template, part.layout, fixed, check.dtype)
        expected = run.bounded.component(part.kind, params, exact(x), part.settings)
        actual = check.call(runner, np.ascontiguousarray(x.transpose(axes)))
        mapped = map_layout(actual, expected.shape)
        actual = actual if mapped is None else mapped
        check.compare(actual, expected, what=f"{probed} ({part.kind}) of {label}", clause=clause, case=case)

    smallest = _smallest_map(params, part.settings)
    explicit = cases.critical_probes(part.kind, smallest)
    check.run(cases.probe_cases(min_size=smallest), one, kind="probes", explicit=explicit)


def _observed_layout(run, name: str, template: tuple[int, ...]) -> tuple[int, ...]:
    """How the backend's model lays out the input of module ``name`` (clause 14.6: a port may keep a
    module's input NCHW where the official one is NHWC): the transpose from the official layout to
    the one observed in the model's run on the target's image, else the official layout."""
    try:
        seen = run.observation().last(name)
    except Exception:
        seen = None
    if seen is None or seen.input is None:
        return tuple(range(len(template)))
    return layout_axes(template, np.shape(seen.input)) or tuple(range(len(template)))


def _smallest_map(params, settings) -> int:
    """The smallest H and W a module accepts: a strided convolution needs H + 2 padding >= its kernel."""
    weight = params.get("conv.weight", params.get("weight"))
    if "stride" not in settings or weight is None:
        return 1
    return max(1, weight.shape[-1] - 2 * settings["padding"])
