"""Benchmarks of the NumPy reference (issue: tiny at 224x224, batch 1, float64, target <= 3 s).

Run: ``pytest benchmarks/bench_reference.py``. Timing targets live here, never in tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from parcnetv2 import reference as R


@pytest.fixture(scope="module")
def tiny():
    return R.create("parcnetv2_tiny", seed=0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_reference_tiny_224_batch1(benchmark, tiny, dtype):
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(dtype)
    tiny(x)  # warm-up: casts the weights once per dtype
    benchmark.extra_info["target_seconds"] = 3.0 if dtype == "float64" else None
    logits = benchmark.pedantic(tiny, args=(x,), rounds=5, iterations=1)
    assert logits.shape == (1, 1000)
