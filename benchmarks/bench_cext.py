"""Benchmarks of the C kernels (spec clause 12) against PyTorch's CPU convolutions and the NumPy
reference, on the four stage shapes of parcnetv2_tiny at 224x224, batch 1 and 8, 1 and 2 threads.

    pytest benchmarks/bench_cext.py                # pytest-benchmark; prints the GFLOP/s table at the end
    python benchmarks/bench_cext.py [--quick] [--repeat R]   # the same table without pytest (Markdown);
                                                   # --repeat keeps each cell's best over R sweeps
                                                   # (robust when other processes share the CPUs)

GFLOP/s = 2 * valid MACs / time, where valid MACs count only the taps that land on real input
(not zero padding), for every implementation alike, so the numbers compare work per second on
the same useful arithmetic. The machine's sgemm rate (numpy float32 matmul 2048^3, default BLAS
threads) is printed next to them. Timing targets live here only, never in the tests.

Rows:
  parc (OC + DW7):  C NCHW, C NHWC (path "auto"), PyTorch separable NCHW, PyTorch separable
                    channels_last, NumPy reference (float32)
  dense (reparameterized K x K kernel, same MACs for everyone): C dwconv2d NCHW / NHWC,
                    PyTorch channels_last depthwise conv (its NCHW path takes seconds at stage 0).
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np
import pytest

from parcnetv2 import cext
from parcnetv2 import reference as ref

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover
    torch = None

STAGES = [(64, 56, 111), (128, 28, 55), (320, 14, 27), (512, 7, 13)]  # C, H (= W), K
BATCHES = [1, 8]
THREADS = [1, 2]
IMPLS = ["c_nchw", "c_nhwc", "torch_nchw", "torch_cl", "numpy_ref", "c_dense_nchw", "c_dense_nhwc", "torch_dense_cl"]


def valid_taps(n: int, k: int, p: int) -> int:
    return sum(max(0, min(n - 1, i - p + k - 1) - max(0, i - p) + 1) for i in range(n))


def valid_macs(impl: str, n: int, c: int, h: int, k: int) -> int:
    if "dense" in impl:
        kd = max(k, 7)
        return n * c * valid_taps(h, kd, kd // 2) ** 2
    return n * c * (2 * valid_taps(h, k, k // 2) * h + valid_taps(h, 7, 3) ** 2)


class Problem:
    """Inputs of one stage shape, in every layout the implementations need."""

    def __init__(self, n: int, c: int, h: int, k: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.n, self.c, self.h, self.k = n, c, h, k
        self.x = rng.standard_normal((n, c, h, h)).astype(np.float32)
        self.x_nhwc = np.ascontiguousarray(self.x.transpose(0, 2, 3, 1))
        self.kh = (rng.standard_normal((c, 1, k, 1)) / k).astype(np.float32)
        self.kw = (rng.standard_normal((c, 1, 1, k)) / k).astype(np.float32)
        self.k7 = (rng.standard_normal((c, 1, 7, 7)) / 7).astype(np.float32)
        self.dense = cext.reparameterize(self.kh, self.kw, self.k7)
        if torch is not None:
            self.tx = torch.from_numpy(self.x)
            self.tx_cl = self.tx.contiguous(memory_format=torch.channels_last)
            self.tkh, self.tkw, self.tk7 = (torch.from_numpy(a) for a in (self.kh, self.kw, self.k7))
            self.tdense = torch.from_numpy(self.dense)

    def fn(self, impl: str, threads: int):
        p = self
        kd = p.dense.shape[-1]
        if impl == "c_nchw":
            return lambda: cext.parc_spatial(p.x, p.kh, p.kw, p.k7, threads=threads)
        if impl == "c_nhwc":
            return lambda: cext.parc_spatial(p.x_nhwc, p.kh, p.kw, p.k7, layout="NHWC", threads=threads)
        if impl == "c_dense_nchw":
            return lambda: cext.dwconv2d(p.x, p.dense, threads=threads)
        if impl == "c_dense_nhwc":
            return lambda: cext.dwconv2d(p.x_nhwc, p.dense, layout="NHWC", threads=threads)
        if impl == "numpy_ref":
            return lambda: ref.oversized_conv(p.x, p.kh, p.kw) + ref.depthwise_conv2d(p.x, p.k7)
        if torch is None:
            return None
        c, k = p.c, p.k

        def torch_sep(x):
            def run():
                with torch.no_grad():
                    t = F.conv2d(x, p.tkh, padding=(k // 2, 0), groups=c)
                    return F.conv2d(t, p.tkw, padding=(0, k // 2), groups=c) + F.conv2d(x, p.tk7, padding=3, groups=c)

            return run

        if impl == "torch_nchw":
            return torch_sep(p.tx)
        if impl == "torch_cl":
            return torch_sep(p.tx_cl)
        if impl == "torch_dense_cl":

            def run():
                with torch.no_grad():
                    return F.conv2d(p.tx_cl, p.tdense, padding=kd // 2, groups=c)

            return run
        raise ValueError(impl)


def set_threads(impl: str, threads: int) -> None:
    if torch is not None and impl.startswith("torch"):
        torch.set_num_threads(threads)


def rounds_for(fn, budget: float = 0.4) -> int:
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    return int(min(200, max(3, budget / max(dt, 1e-6))))


def sgemm_gflops() -> float:
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(5))
    return 2 * 2048**3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    tv = torch.__version__ if torch is not None else "absent"
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, C kernels ISA {cext.best_isa()}"
        f" ({cext.build_info()}), PyTorch {tv}, NumPy {np.__version__}, Python {platform.python_version()}"
    )


def table(results: dict, gemm: float) -> str:
    """Markdown table: one row per (stage, batch, threads), best time (ms) and GFLOP/s per impl."""
    lines = [
        f"Machine: {machine()}",
        f"sgemm (numpy float32 2048^3): {gemm:.0f} GFLOP/s",
        "",
        "| stage (C, H, K) | N | thr | C NCHW | C NHWC | torch NCHW | torch CL | NumPy ref | C vs torch best | "
        "C dense NCHW | C dense NHWC | torch dense CL | C dense vs torch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s, (c, h, k) in enumerate(STAGES):
        for n in BATCHES:
            for t in THREADS:
                times = {impl: r for (s2, n2, t2, impl), r in results.items() if (s2, n2, t2) == (s, n, t)}

                def cell(impl, times=times, n=n, c=c, h=h, k=k):
                    r = times.get(impl)
                    if r is None:
                        return "-"
                    return f"{r * 1e3:.3f} ms ({2 * valid_macs(impl, n, c, h, k) / r / 1e9:.1f})"

                def best(impls, times=times):
                    v = [times[i] for i in impls if i in times]
                    return min(v) if v else None

                cb, tb = best(["c_nchw", "c_nhwc"]), best(["torch_nchw", "torch_cl"])
                db, tdb = best(["c_dense_nchw", "c_dense_nhwc"]), best(["torch_dense_cl"])
                sp = f"{tb / cb:.1f}x" if cb and tb else "-"
                dsp = f"{tdb / db:.1f}x" if db and tdb else "-"
                lines.append(
                    f"| {s} ({c}, {h}, {k}) | {n} | {t} | {cell('c_nchw')} | {cell('c_nhwc')} | "
                    f"{cell('torch_nchw')} | {cell('torch_cl')} | {cell('numpy_ref')} | {sp} | "
                    f"{cell('c_dense_nchw')} | {cell('c_dense_nhwc')} | {cell('torch_dense_cl')} | {dsp} |"
                )
    lines.append("")
    lines.append(
        "Cells: best time over the rounds, (GFLOP/s on valid MACs). NumPy ref runs once per "
        "(stage, N) with NumPy's default BLAS threads, shown in the 1-thread row."
    )
    return "\n".join(lines)


# ------------------------------------------------------------------------------ pytest-benchmark

_RESULTS: dict = {}
_PROBLEMS: dict = {}


def _problem(n, s):
    key = (n, s)
    if key not in _PROBLEMS:
        c, h, k = STAGES[s]
        _PROBLEMS.clear()  # keep memory small: one shape at a time (tests are ordered by shape)
        _PROBLEMS[key] = Problem(n, c, h, k)
    return _PROBLEMS[key]


@pytest.fixture(scope="module", autouse=True)
def _print_table(show_table):
    yield
    if _RESULTS:
        show_table(table(_RESULTS, sgemm_gflops()))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("stage", range(len(STAGES)))
def test_bench(benchmark, stage, n, threads, impl):
    if impl == "numpy_ref" and threads != 1:
        pytest.skip("NumPy uses its own BLAS threads: measured once per shape")
    p = _problem(n, stage)
    fn = p.fn(impl, threads)
    if fn is None:
        pytest.skip("PyTorch is not installed")
    set_threads(impl, threads)
    c, h, k = STAGES[stage]
    benchmark.group = f"stage{stage} C{c} H{h} K{k} N{n} threads{threads}"
    benchmark.extra_info["valid_macs"] = valid_macs(impl, n, c, h, k)
    benchmark.pedantic(fn, rounds=rounds_for(fn), iterations=1, warmup_rounds=1)
    if benchmark.stats is None:  # --benchmark-disable
        return
    best = benchmark.stats.stats.min
    benchmark.extra_info["gflops"] = 2 * valid_macs(impl, n, c, h, k) / best / 1e9
    _RESULTS[(stage, n, threads, impl)] = best


# ------------------------------------------------------------------------------ standalone


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    repeat = int(argv[argv.index("--repeat") + 1]) if "--repeat" in argv else 1
    results: dict = {}
    gemm = 0.0
    for _ in range(repeat):
        sweep(results, quick)
        gemm = max(gemm, sgemm_gflops())
    print(table(results, gemm))
    return 0


def sweep(results: dict, quick: bool) -> None:
    for s, (c, h, k) in enumerate(STAGES):
        for n in BATCHES[:1] if quick else BATCHES:
            p = Problem(n, c, h, k)
            for t in THREADS:
                for impl in IMPLS:
                    if impl == "numpy_ref" and t != 1:
                        continue
                    fn = p.fn(impl, t)
                    if fn is None:
                        continue
                    set_threads(impl, t)
                    fn()
                    r = rounds_for(fn)
                    best = min(_timed(fn) for _ in range(r))
                    results[(s, n, t, impl)] = min(best, results.get((s, n, t, impl), best))
            print(f"stage {s} N {n} done", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
