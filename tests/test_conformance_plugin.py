"""The conformance harness as a pytest plugin (spec clause 14): options, usage errors, skips of
what a backend does not provide, the JSON report, known failures, repro commands, --pyargs and
pytest-xdist. Each test runs pytest in a subprocess, as a user would.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from parcnetv2.conformance.runner import run_suite

QUICK = ["--conformance-profile", "quick"]
TANH = "parcnetv2.conformance.mutants:tanh_gelu"


def test_entry_points_register_the_plugin_and_the_builtin_backends():
    """Clauses 14.1, 14.3: pytest11 names the plugin by its module path; built-ins are registered."""
    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins["parcnetv2.conformance.plugin"] == "parcnetv2.conformance.plugin"
    names = {ep.name for ep in entry_points(group="parcnetv2.backends")}
    assert {"numpy", "cext", "cext-nhwc", "torch", "torch-cuda", "onnx"} <= names


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backend", "nope"], "--backend 'nope': unknown backend; registered:"),
        (["--backend", "no_such_module:thing"], "cannot import no_such_module"),
        (["--backend", "parcnetv2.conformance.mutants:no_such_backend"], "has no attribute 'no_such_backend'"),
        (
            ["--backend", "torch", "--model", "no_such_module:factory"],
            "--model 'no_such_module:factory': cannot import",
        ),
        (
            ["--backend", "onnx", "--model", "missing.onnx", "--weights", "missing.npz"],
            "--model missing.onnx: no such file",
        ),
        (["--backend", "numpy", "--model", "x:y"], "--model works with --backend torch"),
        (["--weights", "w.npz"], "--weights needs --model"),
        (["--conformance-profile", "slow"], "--conformance-profile 'slow': unknown"),
        (["--variant", "parcnetv2_huge"], "--variant 'parcnetv2_huge': unknown"),
        (["--xfails-file", "missing.toml"], "--xfails-file missing.toml: no such file"),
        (["--report", "/no/such/dir/r.json"], "does not exist"),
        (["--max-examples", "0"], "--max-examples 0: must be at least 1"),
    ],
)
def test_bad_options_are_one_line_usage_errors(args, message):
    """Clause 14.1: a bad option is pytest's usage error (exit 4), one line, no traceback."""
    result = run_suite(["conformance/test_operations.py", *args])
    assert result.returncode == 4, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len([line for line in result.stderr.splitlines() if line.startswith("ERROR")]) == 1


def test_what_a_backend_leaves_out_is_skipped_never_passed(tmp_path):
    """Clauses 14.2, 14.11: a third-party backend with one operation passes that test; every
    other test is skipped, naming the operation; the report says so."""
    (tmp_path / "partial_backend.py").write_text(
        "import numpy as np\nfrom parcnetv2 import reference as R\n\n"
        "class Partial:\n    name = 'partial'\n    dtype = np.float32\n\n    def gelu(self, x):\n        "
        "return R.gelu(x)\n\n"
        "backend = Partial()\n"
    )
    result = run_suite(
        ["conformance", "--backend", "partial_backend:backend", *QUICK], report=tmp_path / "r.json", pythonpath=tmp_path
    )
    assert result.returncode == 0, result.stdout[-3000:]
    tests = result.tests()
    assert tests["test_gelu"]["outcome"] == "passed"
    assert tests["test_linear"]["outcome"] == "skipped"
    assert tests["test_linear"]["message"] == "backend partial does not provide linear"
    assert {t["outcome"] for name, t in tests.items() if name != "test_gelu"} == {"skipped"}


def test_report_records_backend_outcomes_ratios_and_repro(tmp_path):
    """Clause 14.8: the JSON report: backend, versions, profile, seed, per-test outcome, worst
    error/bound ratio, clauses and a repro command."""
    result = run_suite(
        ["conformance/test_operations.py", "--backend", "numpy", *QUICK, "--seed", "7"], report=tmp_path / "r.json"
    )
    assert result.returncode == 0, result.stdout[-3000:]
    data = result.report
    assert (data["backend"], data["dtype"], data["profile"], data["seed"]) == ("numpy", "float32", "quick", 7)
    assert {"numpy", "hypothesis", "python"} <= set(data["versions"])
    gelu = result.tests()["test_gelu"]
    assert gelu["clauses"] == ["8.1"] and 0 < gelu["worst_ratio"] <= 1
    assert gelu["repro"].startswith("pytest conformance/test_operations.py::test_gelu --backend numpy")
    assert "--seed 7" in gelu["repro"]


def test_failure_names_component_case_bound_and_replays_from_its_blob(tmp_path):
    """Clauses 11.2, 14.5: the failure message names the component, clause, case and seed, the
    worst index with both values and the error against the bound; its repro command, with
    Hypothesis's blob, replays that example."""
    result = run_suite(["conformance/test_operations.py::test_gelu", "--backend", TANH, *QUICK])
    assert result.returncode == 1
    message = result.stdout
    for expected in (
        "gelu (clause 8.1): worst at index",
        "got ",
        "expected ",
        "vs bound",
        "x the bound",
        "case: GeluCase(seed=",
        "--reproduce-failure",
    ):
        assert expected in message
    repro = next(line.split("reproduce: ", 1)[1] for line in message.splitlines() if "reproduce: pytest" in line)
    replay = run_suite(repro.split()[1:])
    assert replay.returncode == 1 and "gelu (clause 8.1)" in replay.stdout


def test_known_failures_file_marks_xfail_strictly(tmp_path):
    """Clause 14.9: a listed test is xfail with its reason; a listed test that passes fails."""
    known = tmp_path / "known.toml"
    known.write_text(
        '[[known_failure]]\nbackend = "*tanh_gelu"\ntest = "test_operations.py::test_gelu"\n'
        'reason = "demonstration"\n\n'
        '[[known_failure]]\nbackend = "*tanh_gelu"\ntest = "test_operations.py::test_linear"\nreason = "not failing"\n'
    )
    result = run_suite(
        [
            "conformance/test_operations.py::test_gelu",
            "conformance/test_operations.py::test_linear",
            "--backend",
            TANH,
            *QUICK,
            "--xfails-file",
            str(known),
        ],
        report=tmp_path / "r.json",
    )
    tests = result.tests()
    assert tests["test_gelu"]["outcome"] == "xfailed" and "demonstration" in tests["test_gelu"]["xfail_reason"]
    assert tests["test_linear"]["outcome"] == "failed"  # strict: XPASS fails
    assert result.returncode == 1


def test_pyargs_runs_the_installed_suite(tmp_path):
    """Clause 14.1: pytest --pyargs parcnetv2.conformance works outside the repository."""
    result = run_suite(
        ["--pyargs", "parcnetv2.conformance.test_operations", "--backend", "numpy", *QUICK], cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "12 passed" in result.stdout


def test_xdist_runs_share_the_seed_and_the_report(tmp_path):
    """Clause 14.4: with -n 2 the workers use the controller's seed; the report has every test."""
    result = run_suite(
        ["conformance/test_operations.py", "conformance/test_parameters.py", "-n", "2", "--backend", "numpy", *QUICK],
        report=tmp_path / "r.json",
    )
    assert result.returncode == 0, result.stdout[-3000:]
    data = result.report
    seeds = {t["repro"].split("--seed ")[1].split()[0] for t in data["tests"] if "repro" in t}
    assert seeds == {str(data["seed"])}
    assert data["counts"]["passed"] == 12 + 13


def test_other_test_suites_are_untouched(tmp_path):
    """Clause 14.1: the plugin, loaded in every pytest run, changes nothing for other tests."""
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    assert True\n")
    result = run_suite([str(tmp_path / "test_plain.py"), "-q"], cwd=tmp_path)
    assert result.returncode == 0
    assert "parcnetv2 conformance" not in result.stdout
