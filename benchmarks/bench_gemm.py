"""The C library's packed GEMM (spec clause 16.2) against SciPy's OpenBLAS sgemm on the 16 block
GEMM shapes of parcnetv2_tiny at 224x224, batch 1, threads 1 and 2.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE pytest benchmarks/bench_gemm.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_gemm.py [--repeat R]
        [--impl pcn|openblas --save FILE] [--table FILE...]

Shapes: rows P = H*W per image (3136, 784, 196, 49 for stages 0-3) times the four block GEMMs
with C = 64, 128, 320, 512: pwconv1 C -> 2C, pwconv2 C -> C, fc1 C -> 5C, fc2 2.5C -> C. Both
sides compute C = A W^T with A (P, K) row-major and the PyTorch weight W (N, K): the C library
with W packed once (``pcn_gemm_pack``) and one ``pcn_gemm_packed`` call per GEMM; OpenBLAS with
one ``sgemm`` call on the same arrays without copies (column-major view), its thread count set by
threadpoolctl. GFLOP/s = 2 P K N / best time (wall clock, Python call included). The machine's
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE hold OpenBLAS back: unset them for this command only.
Two thread pools that busy-wait (OpenMP's with OMP_WAIT_POLICY=ACTIVE, OpenBLAS's) slow each
other down when the CPUs are few: ``--impl X --save FILE`` measures one implementation per process
and ``--table FILE...`` prints the merged table.
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np
import pytest

from parcnetv2 import cext
from parcnetv2.cext import _ffi, _lib

STAGES = ((3136, 64), (784, 128), (196, 320), (49, 512))  # (P, C) of parcnetv2_tiny at 224x224
GEMMS = (("pwconv1", 1, 2), ("pwconv2", 1, 1), ("fc1", 1, 5), ("fc2", 2.5, 1))  # name, K/C, N/C
SHAPES = [(name, p, int(kf * c), int(nf * c)) for p, c in STAGES for name, kf, nf in GEMMS]
THREADS = (1, 2)
IMPLS = ("pcn", "openblas")


class Problem:
    """One GEMM shape with its operands and, per implementation, a callable for a thread count."""

    def __init__(self, p: int, k: int, n: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.p, self.k, self.n = p, k, n
        self.a = rng.standard_normal((p, k)).astype(np.float32)
        self.w = rng.standard_normal((n, k)).astype(np.float32)
        self.c = np.empty((p, n), np.float32)
        out, err = _ffi.new("pcn_packed_matrix **"), _ffi.new("pcn_error *")
        wptr = _ffi.cast("float *", _ffi.from_buffer(self.w))
        assert _lib.pcn_gemm_pack(out, wptr, k, 1, _ffi.NULL, k, n, _lib.PCN_ISA_AUTO, err) == _lib.PCN_OK
        self.packed = _ffi.gc(out[0], _lib.pcn_gemm_free)
        self.err = err

    @property
    def flops(self) -> float:
        return 2.0 * self.p * self.k * self.n

    def fn(self, impl: str, threads: int):
        if impl == "pcn":
            opt = _ffi.new("pcn_options *", _lib.pcn_options_default())
            opt.threads = threads
            a = _ffi.cast("float *", _ffi.from_buffer(self.a))
            c = _ffi.cast("float *", _ffi.from_buffer(self.c))

            def run():
                _lib.pcn_gemm_packed(self.packed, a, self.k, c, self.n, self.p, opt, self.err)

            return run
        from scipy.linalg.blas import sgemm

        def run_blas():  # C^T (N, P) column-major = W (N, K) A^T: both operands as stored
            sgemm(1.0, self.w.T, self.a.T, trans_a=1)

        return run_blas


def set_threads(impl: str, threads: int):
    """A context limiting OpenBLAS to ``threads`` (the C library takes its count per call)."""
    from contextlib import nullcontext

    if impl != "openblas":
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(threads, user_api="blas")


def best_time(fn, budget: float = 0.3, repeat: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        runs, start = 0, time.perf_counter()
        while True:
            fn()
            runs += 1
            elapsed = time.perf_counter() - start
            if elapsed > budget / repeat:
                break
        best = min(best, elapsed / runs)
    return best


def machine() -> str:
    try:
        from threadpoolctl import threadpool_info

        blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')})" for i in threadpool_info()]
    except ImportError:  # pragma: no cover
        blas = []
    unset = [v for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ]
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; C library {cext.build_info()}, "
        f"best ISA {cext.best_isa()}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; BLAS: {', '.join(blas)}"
        + (f"; WARNING {', '.join(unset)} set (unset them for a fair OpenBLAS)" if unset else "")
    )


def table(results: dict, conditions: list[str] | None = None) -> str:
    lines = [
        "GEMM C = A W^T, GFLOP/s (best time); " + ("\n".join(conditions) if conditions else machine()),
        "",
        "| stage | GEMM | P x K x N | "
        + " | ".join(f"{i} {t}t" for t in THREADS for i in IMPLS)
        + " | pcn/openblas 1t | 2t |",
        "|---|---|---|" + "---|" * (len(THREADS) * len(IMPLS) + 2),
    ]
    totals = dict.fromkeys(((i, t) for i in IMPLS for t in THREADS), 0.0)
    flops = 0.0
    for s, (name, p, k, n) in enumerate(SHAPES):
        f = 2.0 * p * k * n
        flops += f
        cells, ratio = [], []
        for t in THREADS:
            for impl in IMPLS:
                sec = results.get((name, p, k, n, impl, t))
                cells.append(f"{f / sec * 1e-9:.0f}" if sec else "-")
                if sec:
                    totals[(impl, t)] += sec
            a, b = results.get((name, p, k, n, "pcn", t)), results.get((name, p, k, n, "openblas", t))
            ratio.append(f"{b / a:.2f}x" if a and b else "-")
        lines.append(f"| {s // 4} | {name} | {p}x{k}x{n} | " + " | ".join(cells) + " | " + " | ".join(ratio) + " |")
    tot = [f"{totals[(i, t)] * 1e3:.2f} ms ({flops / totals[(i, t)] * 1e-9:.0f})" if totals[(i, t)] else "-"
           for t in THREADS for i in IMPLS]  # fmt: skip
    lines.append("| all | sum of the 16 | time (GFLOP/s) | " + " | ".join(tot) + " | | |")
    return "\n".join(lines)


_RESULTS: dict = {}
_PROBLEMS: dict = {}


def _problem(p, k, n) -> Problem:
    if (p, k, n) not in _PROBLEMS:
        _PROBLEMS[(p, k, n)] = Problem(p, k, n)
    return _PROBLEMS[(p, k, n)]


@pytest.fixture(scope="module", autouse=True)
def _print_table(show_table):
    yield
    if _RESULTS:
        show_table(table(_RESULTS))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("name,p,k,n", SHAPES, ids=[f"{s[0]}-{s[1]}x{s[2]}x{s[3]}" for s in SHAPES])
def test_bench(benchmark, name, p, k, n, threads, impl):
    problem = _problem(p, k, n)
    fn = problem.fn(impl, threads)
    with set_threads(impl, threads):
        fn()
        benchmark.pedantic(fn, rounds=max(5, int(0.2 / max(best_time(fn, 0.05, 1), 1e-6))), iterations=1)
    _RESULTS[(name, p, k, n, impl, threads)] = benchmark.stats.stats.min
    benchmark.extra_info["gflops"] = problem.flops / benchmark.stats.stats.min * 1e-9


def main(argv: list[str]) -> int:
    """Standalone: the table, alternating the implementations (best of --repeat sweeps)."""
    import json

    def option(name: str, default: str = "") -> str:
        return argv[argv.index(name) + 1] if name in argv else default

    if "--table" in argv:  # merge saved results
        results, conditions = {}, []
        for path in argv[argv.index("--table") + 1 :]:
            with open(path, encoding="utf-8") as fh:
                saved = json.load(fh)
            results.update({tuple(k): v for k, v in saved["results"]})
            conditions.append(f"{', '.join(saved['impls'])}: {saved['machine']}")
        print(table(results, conditions))
        return 0
    repeat = int(option("--repeat", "3"))
    impls = (option("--impl"),) if "--impl" in argv else IMPLS
    results = {}
    for _ in range(repeat):
        for name, p, k, n in SHAPES:
            problem = _problem(p, k, n)
            for t in THREADS:
                for impl in impls:
                    with set_threads(impl, t):
                        sec = best_time(problem.fn(impl, t))
                    key = (name, p, k, n, impl, t)
                    results[key] = min(results.get(key, float("inf")), sec)
    if "--save" in argv:
        with open(option("--save"), "w", encoding="utf-8") as fh:
            saved = {"machine": machine(), "impls": list(impls), "results": [[list(k), v] for k, v in results.items()]}
            json.dump(saved, fh)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
