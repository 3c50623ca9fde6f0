"""Sensitivity of the conformance harness (spec clause 14.10).

``pytest conformance --backend parcnetv2.conformance.mutants:NAME --conformance-profile default``
must fail with exit code 1 (test failures, not errors) for every deliberately broken backend and
pass for every legitimate re-implementation. The seed is fixed so that the project's CI is
deterministic; ``benchmarks/kill_rate.py`` prints the table of the README with every test that
kills each mutant.
"""

from __future__ import annotations

import pytest

from parcnetv2.conformance.mutants import LEGITIMATE, MUTANTS
from parcnetv2.conformance.runner import run_suite

SEED = "0"


def _run(name: str, tmp_path, *extra: str):
    args = [
        "conformance",
        "--backend",
        f"parcnetv2.conformance.mutants:{name}",
        "--conformance-profile",
        "default",
        "--seed",
        SEED,
        *extra,
    ]
    return run_suite(args, report=tmp_path / "report.json", timeout=900)


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_is_rejected(name, tmp_path):
    """Clause 14.10: the default profile fails the mutant with test failures (exit 1)."""
    result = _run(name, tmp_path, "-x")
    outcomes = {t["outcome"] for t in result.report["tests"]}
    assert result.returncode == 1, f"{name} ({MUTANTS[name].description}) was not rejected:\n{result.stdout[-2000:]}"
    assert "failed" in outcomes and "error" not in outcomes


@pytest.mark.parametrize("name", sorted(LEGITIMATE))
def test_legitimate_reimplementation_is_accepted(name, tmp_path):
    """Clause 14.10: other evaluation orders and layouts of the same mathematics pass."""
    result = _run(name, tmp_path)
    assert result.returncode == 0, f"{name} ({LEGITIMATE[name].description}) was rejected:\n{result.stdout[-4000:]}"
