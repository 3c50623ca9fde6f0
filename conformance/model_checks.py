"""Whole-model checks: coverage and order, every module on its own input, the wiring between modules,
the error's growth and the logits (spec clauses 2, 14.6, 14.7).

A backend's model is run once on the target's image (``observation.observe``). Then:

1. *Coverage* (``coverage``): every downsampling layer, block, ``norm`` and ``head`` runs once, in
   the official order.
2. *Modules on their own input, and the wiring* (``locate``): the reference's composition runs
   again with every observed module output substituted for its own, so each module is compared
   on exactly what it was given. A leaf module (a convolution, norm, GELU, Linear) is computed by
   the bounded reference on its observed input; a composite module (block, token mixer, BGU,
   downsampling layer) on its children's observed outputs, which checks the arithmetic between
   them (residuals, gates, splits); the observed input of each module is compared with what the
   official wiring makes of the outputs before it, which locates a bug outside every module (the
   pooling, an output transform) between the two modules around it. The first finding in
   execution order is the *first divergence*.
3. *Growth*: every observed stage output against the bound accumulated from the image, and
4. *the logits* against their accumulated bound (the verdict any user cares about).

Shape legend: N, C, H, W, K.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from parcnetv2.conformance.checking import Checker
from parcnetv2.conformance.coverage import coverage
from parcnetv2.conformance.error_bounds import Bounded, exact
from parcnetv2.conformance.harness import ModelRun
from parcnetv2.conformance.observation import Observation, map_layout
from parcnetv2.conformance.protocol import Unsupported
from parcnetv2.reference.components import subtree
from parcnetv2.reference.registry import KINDS
from parcnetv2.spec.tolerance import compare, probabilistic_constant

POWER_LIMIT = probabilistic_constant("power_limit")

__all__ = ["Finding", "check_model", "locate"]

# Kinds computed by the bounded reference from the module's own input (no named children).
_LEAVES = {"conv2d", "layer_norm_general", "layer_norm", "oversized_conv", "depthwise_conv2d",
           "pointwise_conv2d", "gelu", "linear", "scale"}  # fmt: skip


@dataclasses.dataclass
class Finding:
    """A module whose output (``where`` "inside") or input (``where`` "before") is not what the
    official model computes from what the backend gave it."""

    name: str
    where: str
    message: str
    after: str = ""  # the module observed before this one

    def place(self) -> str:
        """Where: the module, "after X, before Y", "after the last module" or, when no module
        before the logits was observed, anywhere between the image and the logits."""
        if self.where == "before":
            return f"after {self.after or 'the input'}, before {self.name}"
        if self.name:
            return self.name
        if self.after == "head":
            return "after the last module (head)"
        if self.after:
            return f"after {self.after} (the last module observed), before the logits"
        return "between the image and the logits (no module of the model could be observed)"

    def headline(self) -> str:
        if self.where == "before":
            return f"first divergence: {self.place()} (the computation between these modules is not the official one)"
        if not self.name:
            return f"first divergence: {self.place()}: the logits are not the official model's"
        return f"first divergence: {self.place()} (its output on its own input)"


def _check(check: Checker, actual: Any, expected: Bounded, what: str, clause: str) -> tuple[bool, str, float]:
    bound = check.bounded.bound(expected)
    result = compare(actual, expected.value, bound, op=f"{what} (clause {clause})")
    return result.ok, result.message, result.worst_ratio


def locate(check: Checker, run: ModelRun, observation: Observation) -> tuple[list[Finding], dict[str, Any]]:
    """Findings of step 2 (module docstring), in execution order, and what was checked how."""
    parts, weights = run.parts, run.weights
    observed = {r.name: r for r in observation.runs if r.output is not None}
    via_parameters = {r.name for r in observation.runs if r.via == "parameters"}
    findings: list[Finding] = []
    checked: list[str] = []
    previous = [""]

    def substitute(name: str, inputs: Bounded, output: Bounded) -> Bounded:
        seen = observed.get(name)
        if seen is None:
            return output
        part = parts[name]
        clause = KINDS[part.kind].clause
        label = f"{name or 'model'} ({part.kind})"
        own_input = None
        if seen.input is not None and name:
            own_input = map_layout(seen.input, inputs.shape)
            if own_input is None:
                findings.append(Finding(name, "before", f"{label}: input shape {np.shape(seen.input)}, official "
                                        f"{inputs.shape}", previous[0]))  # fmt: skip
            else:
                ok, message, _ = _check(check, own_input, inputs, f"input of {label}", clause)
                if not ok:
                    findings.append(Finding(name, "before", message, previous[0]))
        got = map_layout(seen.output, output.shape)
        if got is None:
            findings.append(Finding(name, "inside", f"{label}: output shape {np.shape(seen.output)}, official "
                                    f"{output.shape}"))  # fmt: skip
            return output
        if part.kind in _LEAVES and own_input is not None:  # the module on exactly its own input
            output = run.bounded.component(part.kind, subtree(weights, name), exact(own_input), part.settings)
        ok, message, _ = _check(check, got, output, f"{label} of {run.target.label}", clause)
        if not ok:
            findings.append(Finding(name, "inside", message, previous[0]))
        checked.append(name)
        if part.kind not in ("stage",):
            previous[0] = name
        return exact(got)

    params = {k: v.astype(np.float64) for k, v in weights.items()}
    run.bounded.model(run.target.config, params, exact(run.image), trace=substitute)
    ancestors = {}
    for name in sorted(via_parameters):
        parent = name
        while parent and parent not in observed:
            parent = parent.rpartition(".")[0]
        ancestors[name] = parent or "the model"
    return findings, {"modules_checked": len(checked), "checked_through_ancestor": ancestors}


def _growth(check: Checker, run: ModelRun, observation: Observation) -> list[dict[str, Any]]:
    """Per stage output: error, bound and values, relative to the values' RMS (clause 14.8)."""
    rows = []
    for name, _, expected in run.trace:
        if not (name.startswith(("downsample_layers.", "stages."))) or name.count(".") != 1:
            continue
        seen = observation.last(name)
        got = None if seen is None else map_layout(seen.output, expected.shape)
        rms = float(np.sqrt(np.mean(expected.value**2))) or 1.0
        bound = run.bounded.bound(expected)
        row = {"module": name, "bound/rms": float(np.max(bound)) / rms}
        if got is not None:
            error = np.abs(got.astype(np.float64) - expected.value)
            row["error/rms"] = float(np.max(error)) / rms
            row["error/bound"] = float(np.max(error / bound))
        rows.append(row)
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    lines = ["    growth of the error (max over the tensor, relative to its RMS):"]
    for r in rows:
        err = f"error {r['error/rms']:.2e}, {r['error/bound']:.3g}x bound" if "error/rms" in r else "not observed"
        lines.append(f"      {r['module']:<22} bound {r['bound/rms']:.2e}  {err}")
    return "\n".join(lines)


def check_model(check: Checker, run: ModelRun, *, case: Any = None, require_power: bool = True) -> None:
    """All checks of the module docstring on the model of ``run``; AssertionError naming the first
    divergence, the coverage problems and the error's growth. Report notes go to ``check.notes``.
    ``require_power``: a check without power fails (clause 11.10; the whole-model targets) instead
    of being only reported (drawn small configurations, which can be ill-conditioned by nature:
    a LayerNorm over two channels)."""
    if run.model_error is not None:
        if isinstance(run.model_error, Unsupported):
            check.not_provided[str(run.model_error)] += 1
            return
        raise AssertionError(check.describe(f"backend model for {run.target.label} failed: {run.model_error}", case))
    label = run.target.label
    problems: list[str] = []
    # Clause 14.7: a narrower float type stated in the model fails whatever the runtime makes of it.
    narrowed = getattr(run.model, "narrowed", None)
    casts = narrowed() if callable(narrowed) else []
    if casts:
        check.notes["narrowed"] = casts
        check.notes["first_divergence"] = casts[0].split(": ", 1)[0]
        more = f" and {len(casts) - 3} more" if len(casts) > 3 else ""
        problems.append(
            f"precision of {label} (clause 14.7): the model computes activations in a narrower float type "
            f"than its {check.dtype} input: {'; '.join(casts[:3])}{more}"
        )
    try:
        observation = check.call(run.observation)
    except Exception as exc:
        if not casts:
            raise
        problems.append(f"the model does not run: {type(exc).__name__}: {str(exc)[:300]}")
        raise AssertionError(check.describe("\n".join(problems), case)) from None
    if getattr(run.model, "lowered", None):
        check.notes["lowered"] = run.model.lowered
    if observation.traced:
        covered = coverage(run.target.config, observation)
        check.notes["coverage"] = {"problems": covered.problems, "units_observed": len(covered.observed)}
        if covered.problems:
            problems.append(f"call coverage of {label} (clause 2.1): {covered.describe()}")
    else:
        check.notes["coverage"] = f"not observable: {observation.untraced}"
    findings, how = locate(check, run, observation) if observation.traced else ([], {})
    check.notes.update(how)
    growth = _growth(check, run, observation)
    check.notes["growth"] = growth
    output_problem = ""
    try:
        check.compare(observation.logits, run.logits, what=f"output of {label}", clause="2.1", case=case)
    except AssertionError as exc:
        output_problem = str(exc).split("\n  backend:")[0]  # the final message names the backend once
    logits_bound = run.bounded.bound(run.logits)
    power = float(np.max(logits_bound) / (np.sqrt(np.mean(run.logits.value**2)) or 1.0))
    check.notes["power"] = power
    got = np.asarray(observation.logits, dtype=np.float64)
    if got.shape == run.logits.shape:  # the error's share of the bound, for the power table
        check.notes["logits_error/bound"] = float(np.max(np.abs(got - run.logits.value) / logits_bound))
    weak = [f"{r['module']} {r['bound/rms']:.1e}" for r in growth if r["bound/rms"] > POWER_LIMIT]
    if power > POWER_LIMIT:
        weak.append(f"logits {power:.1e}")
    if weak:
        check.notes["weak_power"] = weak
    if weak and require_power:
        problems.append(
            f"no power (clause 11.10): the bound exceeds {POWER_LIMIT:g} of the values' RMS at {', '.join(weak)}; "
            "these weights cannot certify the model there"
        )
    if findings:
        first = findings[0]
        if not casts:
            check.notes["first_divergence"] = first.place()
        problems.insert(1 if casts else 0, f"{first.headline()}\n    {first.message}")
        if len(findings) > 1:
            problems.append(f"{len(findings) - 1} later findings, e.g. " + "; ".join(f.name for f in findings[1:4]))
    if output_problem:
        problems.append(output_problem)
    if problems:
        if not findings and observation.traced:
            problems.append("every observed module agrees on its own input: the error accumulates")
        problems.append(_table(growth))
        raise AssertionError(check.describe("\n".join(problems), case))
