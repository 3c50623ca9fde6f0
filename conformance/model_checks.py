"""Whole-model checks: final output, intermediate activations, named components and the first
divergence (spec clauses 14.6-14.7).

A model is checked against a ``ModelRun``: the reference's bounded trace of every named module
(its input and output in the official layouts). Activations a backend exposes are compared in
forward order against the accumulated bounds; a failing model is then explained by running
every named module the backend can run on its own, in forward order (children before their
parents), on the reference's input to that module, and naming the first whose output leaves its
own bound: the first divergence.

Shape legend: N, C, H, W, K.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from parcnetv2.conformance.checking import Checker, as_float64
from parcnetv2.conformance.error_bounds import exact
from parcnetv2.conformance.harness import ModelRun
from parcnetv2.conformance.protocol import Unsupported
from parcnetv2.reference.architecture import Component
from parcnetv2.reference.components import subtree

__all__ = ["CLAUSES", "check_component", "check_model", "component_runner", "first_divergence", "map_layout"]

# The spec clause of each component kind (for messages and the report).
CLAUSES = {
    "model": "2.1",
    "downsampling": "3",
    "conv2d": "3",
    "layer_norm_general": "4.1",
    "layer_norm": "4.2",
    "oversized_conv": "5",
    "depthwise_conv2d": "6",
    "token_mixer": "8.1",
    "pointwise_conv2d": "8.1",
    "gelu": "8.1",
    "bgu": "8.2",
    "linear": "8.2",
    "scale": "8.3",
    "block": "8.4",
    "stage": "8.4",
}


def map_layout(array: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """``array`` in the reference's layout of ``shape``: as is, or transposed between NHWC and NCHW
    when only that matches (exported graphs may keep either); None when neither does."""
    array = np.asarray(array)
    if array.shape == tuple(shape):
        return array
    if array.ndim == 4:
        for axes in ((0, 3, 1, 2), (0, 2, 3, 1)):
            if tuple(array.shape[a] for a in axes) == tuple(shape):
                return array.transpose(axes)
    return None


def _mapped(array: Any, shape: tuple[int, ...]) -> Any:
    mapped = map_layout(array, shape)
    return array if mapped is None else mapped


def _op_runner(backend: Any, part: Component, params: Mapping[str, np.ndarray]) -> Callable[[np.ndarray], Any] | None:
    """The backend operation computing a named module of kind ``part.kind`` (clause 14.2)."""
    kind, s = part.kind, part.settings
    calls: dict[str, Callable[[Callable[..., Any]], Callable[[np.ndarray], Any]]] = {
        "downsampling": lambda op: lambda x: op(params, x, **s),
        "token_mixer": lambda op: lambda x: op(params, x, **s),
        "bgu": lambda op: lambda x: op(params, x),
        "block": lambda op: lambda x: op(params, x, **s),
        "conv2d": lambda op: lambda x: op(x, params["weight"], params["bias"], s["stride"], s["padding"]),
        "layer_norm_general": lambda op: lambda x: op(x, params["weight"], s["eps"]),
        "layer_norm": lambda op: lambda x: op(x, params["weight"], params["bias"], s["eps"]),
        "pointwise_conv2d": lambda op: lambda x: op(x, params["weight"], params.get("bias")),
        "depthwise_conv2d": lambda op: lambda x: op(x, params["weight"], params.get("bias"), s["padding"]),
        "oversized_conv": lambda op: (
            lambda x: op(x, params["conv_h.weight"], params["conv_w.weight"], s["interpolate"])
        ),
        "linear": lambda op: lambda x: op(x, params["weight"], params.get("bias")),
        "gelu": lambda op: lambda x: op(x),
    }
    op = getattr(backend, kind, None)
    return calls[kind](op) if kind in calls and callable(op) else None


def component_runner(check: Checker, run: ModelRun, name: str) -> Callable[[np.ndarray], Any] | None:
    """How the backend runs the named module on its own: the model's ``component(name)`` when the
    model offers it, else the backend's operation of that kind with the module's weights."""
    component = getattr(run.model, "component", None)
    if callable(component):
        try:
            return component(name)
        except Unsupported:
            return None
    return _op_runner(check.harness.backend, run.parts[name], subtree(run.weights, name))


def check_component(
    check: Checker, run: ModelRun, name: str, runner: Callable[[np.ndarray], Any], case: Any = None
) -> float:
    """The module ``name`` on the reference's input to it (rounded to the backend's dtype) against
    its own bound (clause 14.6). Raises AssertionError naming the module."""
    part = run.parts[name]
    inputs, _ = run.entry(name)
    x = inputs.value.astype(check.dtype)
    params = as_float64(subtree(run.weights, name))
    expected = check.bounded.component(part.kind, params, exact(x), part.settings)
    actual = check.call(runner, x)
    if getattr(run.model, "maps_layouts", False):
        actual = _mapped(actual, expected.shape)
    return check.compare(
        actual, expected, what=f"{name} ({part.kind}) of {run.target.label}", clause=CLAUSES[part.kind], case=case
    )


def first_divergence(check: Checker, run: ModelRun, case: Any = None) -> tuple[str | None, str]:
    """The first named module, in forward order and finest first, whose output leaves its own
    bound when run on its own, with the message; or None and why none could be named."""
    runnable = 0
    for name, _, _ in run.trace:
        if not name:
            continue
        runner = component_runner(check, run, name)
        if runner is None:
            continue
        runnable += 1
        try:
            check_component(check, run, name, runner, case)
        except AssertionError as exc:
            return name, f"first divergence: {name}\n    " + str(exc).replace("\n", "\n    ")
        except Exception:
            continue
    if not runnable:
        return None, "first divergence: the backend runs no named module on its own"
    return (
        None,
        f"first divergence: none of the {runnable} named modules leaves its own bound on its own; the error "
        "accumulates",
    )


def check_model(check: Checker, run: ModelRun, *, case: Any = None, modules: bool = False) -> None:
    """The model of ``run`` (clauses 2, 14.6, 14.7): every activation the backend exposes, in
    forward order, then the final output; with ``modules``, also every named module the model
    runs on its own (``component``). A failure names the first divergence."""
    if run.model_error is not None:
        if isinstance(run.model_error, Unsupported):
            check.not_provided[str(run.model_error)] += 1
            return
        raise AssertionError(
            check.describe(f"backend model for {run.target.label} failed to build: {run.model_error}", case)
        )
    model, label = run.model, run.target.label
    problems: list[str] = []
    activations = getattr(model, "activations", None)
    if callable(activations):
        got = check.call(activations, run.image)
        compared, unmapped = 0, []
        for name, _, expected in run.trace:
            if not name or name not in got:
                continue
            mapped = map_layout(got[name], expected.shape)
            if mapped is None:
                unmapped.append(f"{name} {np.shape(got[name])} vs {expected.shape}")
                continue
            compared += 1
            kind = run.parts[name].kind
            try:
                check.compare(mapped, expected, what=f"activation {name} of {label}", clause=CLAUSES[kind], case=case)
            except AssertionError as exc:
                problems.append(f"first activation out of bound: {name}\n    " + str(exc).replace("\n", "\n    "))
                break
        check.notes["activations_compared"] = compared
        if unmapped:
            check.notes["activations_unmapped"] = unmapped
    try:
        output = check.call(model, run.image)
        check.compare(output, run.logits, what=f"output of {label}", clause="2.1", case=case)
    except AssertionError as exc:
        problems.insert(0, str(exc))
    if problems or (modules and callable(getattr(model, "component", None))):
        name, divergence = first_divergence(check, run, case)
        if name is not None:
            check.notes["first_divergence"] = name
        if problems or name is not None:
            raise AssertionError("\n".join(problems + [divergence]))
