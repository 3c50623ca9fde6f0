"""Runtime of the conformance suite per backend (spec clause 14; issue: the default profile for
one backend in at most 5 minutes on a 2-core machine, the CI profile in about a minute).

Run: ``pytest benchmarks/bench_conformance.py`` (add ``-k onnx`` for one backend). Each round is
one ``pytest conformance --backend NAME --conformance-profile PROFILE`` subprocess; a backend
whose software is missing here is skipped. Timing targets live here, never in tests.
"""

from __future__ import annotations

import time

import pytest

from parcnetv2.conformance.runner import run_suite

TARGET_SECONDS = {"ci": 60.0, "default": 300.0}
BACKENDS = ["numpy", "cext", "torch", "onnx"]


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
