"""Parameter names, shapes and counts (spec clauses 2.2, 9 and 10.1).

By default the four official variants (``--variant`` narrows them); with an exported file, the
weights it was exported from. A backend's names and shapes must be exactly the official ones
(``state_dict`` order is reported, not required); the report lists every difference.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from parcnetv2.conformance import cases
from parcnetv2.reference import count_params, parameter_shapes
from parcnetv2.spec import get_variant


def _differences(expected: dict, got: dict) -> dict:
    """Missing and unexpected names and wrong shapes: the contract of a port (clause 2.2)."""
    diff: dict = {}
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    wrong = {
        k: {"official": list(expected[k]), "backend": list(got[k])}
        for k in expected
        if k in got and tuple(got[k]) != tuple(expected[k])
    }
    if missing:
        diff["missing"] = missing
    if unexpected:
        diff["unexpected"] = unexpected
    if wrong:
        diff["wrong_shape"] = wrong
    return diff


def _order(expected: dict, got: dict) -> str | None:
    """Where the backend's state_dict order departs from the official one (reported, never a
    failure: registration order is not part of the contract, clause 2.2)."""
    at = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), None)
    return None if at is None else f"position {at}: official {list(expected)[at]}, backend {list(got)[at]}"


def _summary(diff: dict) -> str:
    parts = []
    for key in ("missing", "unexpected"):
        if key in diff:
            names = diff[key]
            parts.append(f"{len(names)} {key}: {', '.join(names[:6])}{' ...' if len(names) > 6 else ''}")
    if "wrong_shape" in diff:
        first = next(iter(diff["wrong_shape"].items()))
        parts.append(
            f"{len(diff['wrong_shape'])} wrong shapes, e.g. {first[0]} {first[1]['backend']} (official "
            f"{first[1]['official']})"
        )
    return "; ".join(parts)


def _backend_shapes(check, config) -> dict:
    op = check.require("parameter_shapes")
    return {k: tuple(v) for k, v in check.call(op, config).items()}


@pytest.mark.spec("2.2")
def test_parameter_names_and_shapes(conformance_check, param_target):
    """Clause 2.2: exactly the official parameter names and shapes (their order is reported only)."""
    check = conformance_check
    target = check.harness.target(param_target)

    def one():
        got = _backend_shapes(check, target.config)
        official = parameter_shapes(target.config)
        order = _order(official, got)
        if order is not None:
            check.notes["state_dict_order"] = order
        diff = _differences(official, got)
        if diff:
            check.notes["parameter_differences"] = diff
            raise AssertionError(
                check.describe(f"parameter names/shapes of {target.label} (clause 2.2): {_summary(diff)}")
            )

    check.single(one)


@pytest.mark.spec("9", "10.1")
def test_parameter_count(conformance_check, param_target):
    """Clauses 9 and 10.1: the exact total of the variant (variants.toml), 1000 classes."""
    check = conformance_check
    target = check.harness.target(param_target)

    def one():
        total = sum(math.prod(s) for s in _backend_shapes(check, target.config).values())
        official = (
            get_variant(target.config.variant).params
            if target.config.variant and target.config.num_classes == 1000
            else count_params(target.config)
        )
        check.notes["parameters"] = total
        if total != official:
            raise AssertionError(
                check.describe(
                    f"{target.label} has {total:,} parameters, the official count is {official:,} (clause 9)"
                )
            )

    check.single(one)


@pytest.mark.spec("10.1")
def test_parameter_formulas(conformance_check, param_target):
    """Clause 10.1: per component, block = 10.5 C^2 + 2CK + 58C (+ 2C in stages 2, 3), stem
    147 d0 + 2 d0, downsampling d_(i-1) + 9 d_(i-1) d_i + d_i, head 2d + (d + 1) classes."""
    check = conformance_check
    config = check.harness.target(param_target).config

    def one():
        got = _backend_shapes(check, config)

        def count(prefix: str) -> int:
            return sum(math.prod(s) for name, s in got.items() if name.startswith(prefix))

        formulas = {"downsample_layers.0.": 147 * config.dims[0] + 2 * config.dims[0]}
        for i in range(1, len(config.dims)):
            d_in, d = config.dims[i - 1], config.dims[i]
            formulas[f"downsample_layers.{i}."] = d_in + 9 * d_in * d + d
        for i, (depth, c, k) in enumerate(zip(config.depths, config.dims, config.global_kernel_sizes)):
            for j in range(depth):
                formulas[f"stages.{i}.{j}."] = (
                    21 * c * c // 2 + 2 * c * k + 58 * c + (2 * c if config.has_res_scale(i) else 0)
                )
        d = config.dims[-1]
        formulas["norm."] = 2 * d
        formulas["head."] = (d + 1) * config.num_classes
        wrong = {p: (count(p), f) for p, f in formulas.items() if count(p) != f}
        if wrong:
            check.notes["formula_differences"] = {p: {"backend": g, "formula": f} for p, (g, f) in wrong.items()}
            first = next(iter(wrong.items()))
            raise AssertionError(
                check.describe(
                    f"{len(wrong)} components of {config.name} differ from clause 10.1, "
                    f"e.g. {first[0]}* has {first[1][0]:,}, formula {first[1][1]:,}"
                )
            )

    check.single(one)


@pytest.mark.spec("2.2", "2.4")
def test_parameter_shapes_custom(conformance_check):
    """Clauses 2.2 and 2.4: names and shapes of custom configurations (depths, dims, kernels,
    classes)."""
    check = conformance_check
    op = check.require("parameter_shapes")

    def one(config):
        got = {k: tuple(v) for k, v in check.call(op, config).items()}
        diff = _differences(parameter_shapes(config), got)
        if diff:
            raise AssertionError(
                check.describe(f"parameter names/shapes of {config.name} (clause 2.2): {_summary(diff)}", config)
            )

    check.run(cases.config_cases(), one, kind="operations")


@pytest.mark.spec("14.7")
def test_exported_initializers_match_weights(conformance_check):
    """Clause 14.7: the exported file's initializers that carry official names hold the given
    weights, so the file was exported from them."""
    check = conformance_check
    initializers = getattr(check.harness.backend, "initializers", None)
    if not callable(initializers):
        pytest.skip("only for an exported file (--backend onnx --model FILE.onnx --weights FILE)")

    def one():
        weights = check.harness.backend.fixed_state_dict
        stored = initializers()
        check.notes["initializers_checked"] = len(stored)
        differing = [
            k
            for k, v in stored.items()
            if np.shape(v) != np.shape(weights[k]) or not np.array_equal(v, np.asarray(weights[k], v.dtype))
        ]
        if differing:
            raise AssertionError(
                check.describe(f"{len(differing)} initializers differ from --weights, e.g. {differing[0]}")
            )

    check.single(one)
