"""Runtime of the conformance suite per backend (spec clause 14; targets on a 2-core machine: the
default profile for one built-in backend in at most 2 minutes, a ``--model`` factory checked on
parcnetv2_xt in at most 4 minutes, the CI profile in about a minute).

Run: ``pytest benchmarks/bench_conformance.py`` (add ``-k onnx`` for one backend, ``-k model``
for the factory run). Each round is
one ``pytest conformance --backend NAME --conformance-profile PROFILE`` subprocess; a backend
whose software is missing here is skipped. Timing targets live here, never in tests.
"""

from __future__ import annotations

import time

import pytest

from parcnetv2.conformance.runner import run_suite

TARGET_SECONDS = {"ci": 60.0, "default": 120.0}
MODEL_TARGET_SECONDS = 240.0
BACKENDS = ["numpy", "cext", "torch", "onnx", "engine"]


@pytest.mark.parametrize("profile", sorted(TARGET_SECONDS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_conformance_suite_runtime(benchmark, tmp_path, backend, profile):
    seconds = {}

    def suite():
        start = time.perf_counter()
        result = run_suite(
            ["conformance", "--backend", backend, "--conformance-profile", profile, "-q"], report=tmp_path / "r.json"
        )
        seconds["wall"] = time.perf_counter() - start
        return result

    result = benchmark.pedantic(suite, rounds=1, iterations=1)
    if result.returncode == 4 and "cannot load" in result.stderr + result.stdout:
        pytest.skip(f"backend {backend} is not available here: {result.stderr.strip().splitlines()[-1]}")
    benchmark.extra_info.update(target_seconds=TARGET_SECONDS[profile], counts=result.report["counts"])
    assert result.returncode == 0, result.stdout[-2000:]
    print(
        f"{backend} {profile}: {seconds['wall']:.1f} s (target {TARGET_SECONDS[profile]:.0f} s), "
        f"{result.report['counts']}"
    )


def test_conformance_model_factory_runtime(benchmark, tmp_path):
    """``--model`` with the project's PyTorch port as the user's factory, default profile."""
    pytest.importorskip("torch")
    seconds = {}
    args = ["conformance", "--backend", "torch", "--model", "parcnetv2.pytorch:build_model", "-q"]

    def suite():
        start = time.perf_counter()
        result = run_suite([*args, "--conformance-profile", "default"], report=tmp_path / "r.json")
        seconds["wall"] = time.perf_counter() - start
        return result

    result = benchmark.pedantic(suite, rounds=1, iterations=1)
    benchmark.extra_info.update(target_seconds=MODEL_TARGET_SECONDS, counts=result.report["counts"])
    assert result.returncode == 0, result.stdout[-2000:]
    print(
        f"--model xt default: {seconds['wall']:.1f} s (target {MODEL_TARGET_SECONDS:.0f} s), {result.report['counts']}"
    )
