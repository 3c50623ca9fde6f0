"""Call coverage and order of a whole model (spec clauses 2.1 and 14.6).

The official forward pass runs every downsampling layer, every block, the head's ``norm`` and
``head`` exactly once per forward pass, in the official order (clause 2.1). From the module runs a
backend exposes (``observation.Observation``), each of these *units* is counted (its own runs, or,
when the port never calls it, the runs of the modules inside it) and the order of their first runs
is compared with the official sequence. Inside a block a port may order its modules freely (the
residual scale may run before or after the token mixer), so only the units are ordered; every
module inside a unit that is seen at all must run once per run of its unit.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from parcnetv2.conformance.observation import Observation
from parcnetv2.reference.architecture import Config

__all__ = ["Coverage", "coverage", "units"]


def units(config: Config) -> list[str]:
    """The official execution order of the units: each downsampling layer followed by its stage's
    blocks, then ``norm`` and ``head`` (clause 2.1)."""
    sequence = []
    for i, depth in enumerate(config.depths):
        sequence += [f"downsample_layers.{i}"] + [f"stages.{i}.{j}" for j in range(depth)]
    return sequence + ["norm", "head"]


def _inside(name: str, unit: str) -> bool:
    return name == unit or name.startswith(unit + ".")


@dataclasses.dataclass
class Coverage:
    """The outcome: ``problems`` (empty when the model runs what the official one runs), the
    observed and expected unit sequences, and the run count of every unit."""

    problems: list[str]
    observed: list[str]
    expected: list[str]
    counts: dict[str, int]

    def describe(self) -> str:
        return "; ".join(self.problems)


def coverage(config: Config, observation: Observation) -> Coverage:
    """Compare the units the backend ran with the official ones (see the module docstring)."""
    expected = units(config)
    runs = [r for r in observation.runs if r.name]
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    inner_problems: list[str] = []
    for unit in expected:
        own = [i for i, r in enumerate(runs) if r.name == unit]
        inner = Counter(r.name for r in runs if _inside(r.name, unit) and r.name != unit)
        counts[unit] = len(own) if own else max(inner.values(), default=0)
        positions = [i for i, r in enumerate(runs) if _inside(r.name, unit)]
        if positions:
            first[unit] = min(positions)
        for name, count in inner.items():
            if counts[unit] and count != counts[unit] and count % counts[unit]:
                inner_problems.append(f"{name} ran {count} times in {counts[unit]} runs of {unit}")
            elif counts[unit] and count > counts[unit]:
                inner_problems.append(f"{name} ran {count // counts[unit]} times per run of {unit} (official: once)")
    observed = sorted(first, key=first.__getitem__)
    problems = []
    never = [u for u in expected if counts[u] == 0]
    if never:
        problems.append(f"never ran: {', '.join(never)}")
    repeated = [f"{u} ({counts[u]} times)" for u in expected if counts[u] > 1]
    if repeated:
        problems.append(f"ran more than once per forward pass: {', '.join(repeated)}")
    in_order = [u for u in expected if u in first]
    if observed != in_order:
        at = next(i for i, (a, b) in enumerate(zip(observed, in_order)) if a != b)
        window = slice(max(0, at - 1), at + 3)
        problems.append(
            f"order differs from the official one (clause 2.1) at position {at}: observed "
            f"{' -> '.join(observed[window])}, expected {' -> '.join(in_order[window])}"
        )
    problems += inner_problems[:5]
    return Coverage(problems, observed, expected, counts)
