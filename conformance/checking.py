"""One test's comparisons, Hypothesis runs and failure reports (spec clauses 11.2, 14.5).

A ``Checker`` belongs to one test. ``compare`` checks shape, then dtype, then values against the
propagated bound of clauses 11.4-11.9, raising an AssertionError whose message names the component, its
clause, the backend, the case (configuration and seed), the worst index with both values, the
error against the bound, and a one-line repro. ``run`` drives a Hypothesis property with the
profile's settings and the session's seed and appends Hypothesis's ``@reproduce_failure`` blob to
the repro. Backend calls go through ``call``, which turns ``Unsupported`` into a per-example
"not provided" note; a test whose every example was not provided is skipped with the reason.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import hypothesis
import hypothesis.errors
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase

from parcnetv2.conformance.error_bounds import Bounded
from parcnetv2.conformance.protocol import Unsupported, provides
from parcnetv2.spec.tolerance import compare

__all__ = ["Checker", "NotProvided", "as_float64"]

_BLOB = re.compile(r"@reproduce_failure\('([^']+)', b'([^']+)'\)")


class NotProvided(Exception):
    """Raised inside a property when the backend does not provide this example (internal)."""


def as_float64(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The exact values the backend received, in float64, for the reference."""
    return {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}


class Checker:
    """Comparisons and property runs of one test (see the module docstring)."""

    def __init__(self, harness: Any, nodeid: str):
        self.harness = harness
        self.nodeid = nodeid
        self.dtype = harness.dtype
        self.bounded = harness.bounded
        self.worst_ratio = 0.0
        self.worst_where = ""
        self.power = 0.0
        self.examples = 0
        self.not_provided: Counter[str] = Counter()
        self.clauses: list[str] = []
        self.notes: dict[str, Any] = {}

    # ---- backend access --------------------------------------------------------------------

    def require(self, operation: str) -> Callable[..., Any]:
        """The backend's ``operation``; skips the test when the backend does not provide it."""
        backend = self.harness.backend
        if not provides(backend, operation):
            pytest.skip(f"backend {backend.name} does not provide {operation}")
        return getattr(backend, operation)

    def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``function(*args, **kwargs)``; ``Unsupported`` becomes a "not provided" example."""
        try:
            return function(*args, **kwargs)
        except Unsupported as exc:
            self.not_provided[str(exc)] += 1
            raise NotProvided(str(exc)) from None

    # ---- comparisons -----------------------------------------------------------------------

    def cite(self, clause: str) -> None:
        """Record a spec clause this test checks (comparisons record theirs themselves)."""
        if clause not in self.clauses:
            self.clauses.append(clause)

    def compare(self, actual: Any, expected: Bounded, *, what: str, clause: str, case: Any = None) -> float:
        """Shape, dtype, then values of ``actual`` against ``expected``'s propagated bound
        (clauses 11.2, 11.4). Returns the worst error / bound ratio; raises AssertionError."""
        self.cite(clause)
        label = f"{what} (clause {clause})"
        bound = self.bounded.bound(expected)
        result = compare(np.asarray(actual), expected.value, bound, op=label, dtype=self.dtype)
        rms = float(np.sqrt(np.mean(np.square(expected.value)))) if expected.value.size else 0.0
        if rms > 0:  # clause 11.10: the bound relative to the values it bounds, the largest seen
            self.power = max(self.power, float(np.max(bound)) / rms)
        if result.worst_index is not None and result.worst_ratio >= self.worst_ratio:
            self.worst_ratio, self.worst_where = result.worst_ratio, what
        if not result.ok:
            self.notes.setdefault("first_divergence", what)
            raise AssertionError(self.describe(result.message, case))
        return result.worst_ratio

    def describe(self, message: str, case: Any = None) -> str:
        """A failure message: the comparison, the backend, the case and the repro line."""
        backend = self.harness.backend
        lines = [f"{message}", f"  backend: {backend.name} ({np.dtype(self.dtype).name})"]
        if case is not None:
            lines.append(f"  case: {case!r}")
        return "\n".join(lines)

    def repro(self, blob: str | None = None) -> str:
        """One pytest command that reruns this test (this exact example when ``blob`` is given)."""
        args = ["pytest", self.nodeid, *self.harness.repro_args]
        if blob is not None:
            args += ["--reproduce-failure", blob]
        return " ".join(shlex.quote(a) for a in args)

    # ---- properties --------------------------------------------------------------------------

    def run(self, strategy: Any, check: Callable[[Any], None], *, kind: str, explicit: Sequence[Any] = ()) -> None:
        """Run ``check`` on cases drawn from ``strategy`` with the profile's number of examples
        for ``kind`` ("operations", "components", "model" or "probes") and the session's seed,
        after the ``explicit`` cases (run in every profile)."""
        profile = self.harness.profile
        phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if profile.shrink else [])

        def body(case: Any) -> None:
            self.examples += 1
            try:
                check(case)
            except NotProvided:
                return

        settings = hypothesis.settings(
            max_examples=profile.examples(kind),
            deadline=None,
            database=None,
            derandomize=False,
            print_blob=True,
            phases=phases,
            report_multiple_bugs=False,
            suppress_health_check=list(HealthCheck),
        )
        prop = hypothesis.given(case=strategy)(body)
        for case in reversed(explicit):
            prop = hypothesis.example(case=case)(prop)
        prop = hypothesis.seed(self.harness.seed)(settings(prop))
        if self.harness.reproduce_blob:
            prop = hypothesis.reproduce_failure(hypothesis.__version__, self.harness.reproduce_blob.encode())(prop)
        try:
            prop()
        except Exception as exc:
            raise AssertionError(self._final_message(exc)) from None
        self.skip_if_nothing_provided()

    def _final_message(self, exc: BaseException) -> str:
        notes = [n for n in getattr(exc, "__notes__", []) if "reproduce_failure" not in n]
        match = _BLOB.search("\n".join(getattr(exc, "__notes__", [])))
        if isinstance(exc, AssertionError):
            message = str(exc)
        elif isinstance(exc, hypothesis.errors.HypothesisException):  # e.g. a blob of another test
            message = f"Hypothesis: {type(exc).__name__}: {exc}"
        else:  # the backend raised: say what, on which example
            message = "\n".join([f"backend {self.harness.backend.name} raised {type(exc).__name__}: {exc}", *notes])
        # Every failure names where it diverged (clause 14.8); comparisons name their module or operation.
        self.notes.setdefault("first_divergence", message.split("\n", 1)[0][:200])
        return f"{message}\n  seed: {self.harness.seed}\n  reproduce: {self.repro(match.group(2) if match else None)}"

    def skip_if_nothing_provided(self) -> None:
        if self.examples and sum(self.not_provided.values()) >= self.examples:
            reasons = "; ".join(self.not_provided)
            pytest.skip(f"backend {self.harness.backend.name} does not provide this for any drawn case: {reasons}")

    def single(self, check: Callable[[], None]) -> None:
        """Run a deterministic (non-Hypothesis) check with the same failure format."""
        self.examples += 1
        try:
            check()
        except NotProvided:
            pass
        except Exception as exc:
            raise AssertionError(self._final_message(exc)) from None
        self.skip_if_nothing_provided()

    def report(self) -> dict[str, Any]:
        """What the JSON report keeps of this test (clause 14.8)."""
        out: dict[str, Any] = {"clauses": self.clauses, "examples": self.examples}
        if self.worst_where:
            out["worst_ratio"] = self.worst_ratio if np.isfinite(self.worst_ratio) else "inf"
            out["worst_at"] = self.worst_where
        if self.not_provided:
            out["not_provided"] = dict(self.not_provided)
        if self.power:
            out["power"] = self.power
        out.update(self.notes)
        out["repro"] = self.repro()
        return out
