"""Sensitivity of the conformance harness (spec clause 14.10).

``pytest conformance --backend parcnetv2.conformance.mutants:NAME --conformance-profile default``
must fail with exit code 1 (test failures, not errors) for every deliberately broken backend and
pass for every legitimate re-implementation. The seed is fixed so that the project's CI is
deterministic; ``benchmarks/kill_rate.py`` prints the table of the README with every test that
kills each mutant.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from parcnetv2.conformance.mutants import LEGITIMATE, MUTANTS, suite_args
from parcnetv2.conformance.runner import run_suite

SEED = "0"
TESTS = Path(__file__).resolve().parent  # holds the ports package of the zoo


def _run(name: str, tmp_path, *extra: str):
    args = [*suite_args(name, SEED), *extra]
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


# ---------------------------------------------------------------- the port zoo (issue 8, clause 14.10)
# Ports written outside the harness (tests/ports): every accept must pass and every reject fail,
# as a --model factory and as files from both ONNX exporters. `--zoo all` runs the whole catalog
# under the default profile (tests/ports/baseline.py prints the same verdicts as a table); the
# default, `--zoo ci`, runs a small subset under the deterministic CI profile, to fit the CI time
# budget.
ZOO_CI = {
    "model": ["holders", "last_block_skipped"],  # holders: parameter holders without forward, order
    "torchscript": ["dw7_before_gelu", "flat_tanh_gelu_mlp"],  # flat: no scopes, the harness's weights written in
    "dynamo": ["modules"],
}


def pytest_generate_tests(metafunc):
    if "zoo_port" not in metafunc.fixturenames:
        return
    scope = metafunc.config.getoption("zoo")
    try:  # the zoo's ports are PyTorch modules
        from ports.verify import load_catalog
    except ImportError:
        metafunc.parametrize("zoo_port", [])  # reported as skipped: torch is not installed
        return

    route = metafunc.function.__name__.rsplit("_", 1)[-1]  # model, torchscript or dynamo
    catalog = load_catalog()
    names = [e.name for e in catalog] if scope == "all" else ZOO_CI[route] if scope == "ci" else []
    entries = {e.name: e for e in catalog}
    metafunc.parametrize("zoo_port", [entries[n] for n in names], ids=names)


@pytest.fixture
def zoo_profile(request) -> str:
    """The harness profile of the zoo's runs: default for the whole zoo, ci for the CI subset."""
    return "default" if request.config.getoption("zoo") == "all" else "ci"


def _zoo_verdict(entry, target: list[str], tmp_path, profile: str, verdict: str | None = None) -> None:
    """Run the harness on one port (seed 0, stopping at the first failure) and compare its
    verdict with the catalog's (or ``verdict``): exit 0 for accept, test failures (not errors)
    for reject."""
    verdict = verdict or entry.verdict
    args = ["conformance", *target, "--conformance-profile", profile, "--seed", SEED, "-x", "-q"]
    result = run_suite(args, report=tmp_path / "report.json", pythonpath=TESTS, timeout=900)
    failed = {t: r["outcome"] for t, r in result.tests().items() if r["outcome"] in ("failed", "error")}
    tail = result.stdout[-3000:] + result.stderr[-1000:]
    if verdict == "accept":
        assert result.returncode == 0, f"false alarm on {entry.name} ({entry.description}): {failed}\n{tail}"
    else:
        assert result.returncode == 1, f"{entry.name} ({entry.description}) was not rejected:\n{tail}"
        assert set(failed.values()) == {"failed"}, f"{entry.name}: rejected by errors, not failures: {failed}"


def test_zoo_port_model(zoo_port, zoo_profile, tmp_path):
    """Clause 14.10: ``--backend torch --model ports.NAME:factory``."""
    _zoo_verdict(zoo_port, ["--backend", "torch", "--model", f"ports.{zoo_port.name}:factory"], tmp_path, zoo_profile)


def _zoo_exported(entry, exporter: str, tmp_path, profile: str) -> None:
    """The port's file from ``exporter``, judged as the catalog says its file must be: a port the
    exporter refuses must still be refused (the entry goes when it exports), a port whose mistake
    the export traced away must be accepted."""
    from ports.export_onnx import export_port

    verdict = entry.exported_verdict(exporter)
    exported = export_port(entry.name, tmp_path, exporter)
    if verdict == "not exportable":
        assert not exported.ok, f"{entry.name} now exports with {exporter}: update catalog.toml ({entry.exported})"
        return
    assert exported.ok, f"{entry.name} could not be exported with {exporter}: {exported.detail}"
    target = ["--backend", "onnx", "--model", str(tmp_path / f"{entry.name}.{exporter}.onnx")]
    _zoo_verdict(entry, [*target, "--weights", str(tmp_path / f"{entry.name}.npz")], tmp_path, profile, verdict)


def test_zoo_port_torchscript(zoo_port, zoo_profile, tmp_path):
    """Clause 14.10: a file from ``torch.onnx.export(dynamo=False)``."""
    _zoo_exported(zoo_port, "torchscript", tmp_path, zoo_profile)


def test_zoo_port_dynamo(zoo_port, zoo_profile, tmp_path):
    """Clause 14.10: a file from ``torch.onnx.export(dynamo=True)``."""
    _zoo_exported(zoo_port, "dynamo", tmp_path, zoo_profile)
