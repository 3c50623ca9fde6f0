"""Latency and peak memory of the engine, PyTorch eager and ONNX Runtime, side by side (spec clause
15.7), for ``parcnetv2 bench`` and ``benchmarks/bench_engine.py``.

Each framework runs in a child process of its own (``python -m parcnetv2.cli.framework_comparison``),
so that its peak resident memory (VmHWM) is its own: interpreter, libraries, weights, buffers. All
of them load the same weights file; ONNX Runtime runs the project's torch model
(``parcnetv2.pytorch.model``) exported once, in another child, with
``torch.onnx.export(..., dynamo=False, opset_version=17)``. Importing this module imports neither
torch nor onnxruntime.

Shape legend: N, C, H, W, K. Inputs are NCHW (N, 3, R, R) float32 standard normal.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parcnetv2.errors import InputError

__all__ = [
    "FRAMEWORKS",
    "Result",
    "export_onnx",
    "installed",
    "machine",
    "measure",
    "memory_budget",
    "prepare_weights",
    "run",
]

FRAMEWORKS = ("engine", "onnxruntime", "torch", "pcn_predict")
DEFAULT_FRAMEWORKS = ("engine", "onnxruntime", "torch")
_NEEDS = {"engine": (), "torch": ("torch",), "onnxruntime": ("onnxruntime", "torch", "onnx"), "pcn_predict": ()}
OPSET = 17


@dataclass
class Result:
    """One framework's measurement (times in ms, memory in MiB)."""

    framework: str
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    peak_rss_mib: float
    baseline_rss_mib: float
    version: str


def pcn_predict_program() -> Path:
    """The C library's standalone program (``make -C cext`` builds it beside the sources)."""
    from parcnetv2 import cext

    return Path(cext.__file__).resolve().parent / "build" / "pcn_predict"


def installed(framework: str) -> bool:
    """Whether the packages ``framework`` needs are importable here (the program: built)."""
    if framework == "pcn_predict":
        return pcn_predict_program().is_file()
    return all(importlib.util.find_spec(name) is not None for name in _NEEDS[framework])


def memory_budget(config: Any, batch: int, resolution: int) -> dict[str, float]:
    """The issue's peak-memory budget, 2 x (weights + largest activation), in MiB: float32
    weights of ``config`` and the largest single activation of a forward pass at this batch and
    resolution (the image, or a stage's fc1 output N x H x W x 5C, its widest tensor)."""
    from parcnetv2.reference.architecture import parameter_shapes

    weights = sum(int(np.prod(s)) for s in parameter_shapes(config).values()) * 4
    side, largest = resolution, 3 * resolution * resolution
    for i, c in enumerate(config.dims):  # clause 3: map sizes after the stem and each downsampling
        g = config.constants["stem" if i == 0 else "downsample"]
        side = (side + 2 * g["padding"] - g["kernel_size"]) // g["stride"] + 1
        largest = max(largest, side * side * config.constants["mlp_ratio"] * c)
    largest *= batch * 4
    mib = 1024.0 * 1024.0
    return {"weights_mib": weights / mib, "activation_mib": largest / mib, "budget_mib": 2 * (weights + largest) / mib}


def machine() -> str:
    """One line describing the CPU, core count and library versions."""
    from parcnetv2 import cext

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, NumPy {np.__version__}, "
        f"C kernels ISA {cext.best_isa()}"
    )


def prepare_weights(variant: str, directory: Path, weights: str | None = None, seed: int = 0) -> Path:
    """An .npz every child loads: the given weights file converted, or official-style random
    weights of ``variant`` from ``seed`` (clause 2.3)."""
    from parcnetv2 import reference

    model = reference.load(weights, variant) if weights else reference.create(variant, seed=seed)
    path = directory / f"{variant}.npz"
    np.savez(path, **{k: np.asarray(v, np.float32) for k, v in model.state_dict().items()})
    return path


def _child(args: Sequence[str], timeout: float) -> dict[str, Any]:
    """Run ``python -m parcnetv2.cli.framework_comparison ARGS`` and parse its last stdout line (JSON)."""
    done = subprocess.run(
        [sys.executable, "-m", "parcnetv2.cli.framework_comparison", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{args[0]} child failed: {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def export_onnx(weights: Path, variant: str, batch: int, resolution: int, out: Path, timeout: float = 900) -> Path:
    """The torch model with ``weights`` exported to ONNX (opset 17, TorchScript exporter), in a child."""
    _child(["export", str(weights), variant, str(batch), str(resolution), str(out)], timeout)
    return out


def measure(
    framework: str,
    weights: Path,
    variant: str,
    *,
    batch: int,
    threads: int,
    resolution: int,
    runs: int,
    warmup: int,
    onnx_file: Path | None = None,
    timeout: float = 1800,
) -> Result:
    """Time ``framework`` in a child process (see the module docstring)."""
    args = [framework, str(weights), variant, str(batch), str(threads), str(resolution), str(runs), str(warmup)]
    if framework == "pcn_predict":
        return _measure_program(weights, batch, threads, resolution, runs, warmup, timeout)
    if framework == "onnxruntime":
        if onnx_file is None:
            raise InputError("onnxruntime needs the exported ONNX file")
        args.append(str(onnx_file))
    return Result(**_child(args, timeout))


def _inputs(batch: int, resolution: int) -> np.ndarray:
    """The images every framework runs: NCHW float32 standard normal, seed 0."""
    return np.random.default_rng(0).standard_normal((batch, 3, resolution, resolution)).astype(np.float32)


def _measure_program(
    weights: Path, batch: int, threads: int, resolution: int, runs: int, warmup: int, timeout: float
) -> Result:
    """``pcn_predict --bench`` on the same weights (as .safetensors) and images (raw float32); the
    program reports its own peak resident memory (VmHWM)."""
    from parcnetv2 import cext
    from parcnetv2.reference.checkpoint import read_state_dict, write_state_dict

    st = weights.with_suffix(".safetensors")
    if not st.exists():
        write_state_dict(st, read_state_dict(weights))
    raw = weights.with_name(f"images_{batch}x{resolution}.raw")
    raw.write_bytes(_inputs(batch, resolution).astype("<f4").tobytes())
    argv = [str(pcn_predict_program()), str(st), str(raw), "--shape", f"{batch},3,{resolution},{resolution}"]
    argv += ["--threads", str(threads), "--top", "1", "--bench", str(runs), "--warmup", str(warmup)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"pcn_predict failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    line = next(line for line in done.stdout.splitlines() if line.startswith("bench:"))
    times = {key: float(line.split(f" {key} ")[1].split(" ")[0]) for key in ("median", "p10", "p90", "RSS")}
    version = f"C {cext.version()}"
    return Result("pcn_predict", times["median"], times["p10"], times["p90"], runs, times["RSS"], 0.0, version)


# ---------------------------------------------------------------------------- children


def _rss_mib() -> float:
    """Peak resident set size of this process so far: Linux's VmHWM (the high-water mark of this
    program's own memory; ``ru_maxrss`` would also count the parent's, which survives fork and
    exec), else ``ru_maxrss`` (KiB, bytes on macOS)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _time(call, x: np.ndarray, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        call(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call(x)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _torch_module(weights: str, variant: str):
    from parcnetv2.pytorch.model import build_model, load_numpy_state_dict

    with np.load(weights) as data:
        state = {k: data[k] for k in data.files}
    num_classes = state["head.weight"].shape[0]
    return load_numpy_state_dict(build_model(variant, num_classes=num_classes, init=False), state)


def _child_main(argv: Sequence[str]) -> dict[str, Any]:
    framework, weights, variant = argv[0], argv[1], argv[2]
    if framework == "export":
        import warnings

        import torch

        batch, resolution, out = int(argv[3]), int(argv[4]), argv[5]
        module = _torch_module(weights, variant)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (torch.zeros(batch, 3, resolution, resolution),),
                out,
                dynamo=False,
                opset_version=OPSET,
                input_names=["x"],
                output_names=["logits"],
            )
        return {"onnx": out}
    batch, threads, resolution, runs, warmup = (int(v) for v in argv[3:8])
    x = _inputs(batch, resolution)
    if framework == "engine":
        from parcnetv2 import __version__, engine
        from parcnetv2.engine.engine import Engine  # noqa: F401 - the runtime libraries, before the baseline

        baseline = _rss_mib()
        model = engine.load(weights, variant, threads=threads)
        call, version = model, f"parcnetv2 {__version__}"
    elif framework == "torch":
        import torch

        torch.set_num_threads(threads)
        baseline = _rss_mib()
        module = _torch_module(weights, variant)

        def call(a: np.ndarray) -> Any:
            with torch.inference_mode():
                return module(torch.from_numpy(a)).numpy()

        version = f"torch {torch.__version__}"
    elif framework == "onnxruntime":
        import onnxruntime as ort

        baseline = _rss_mib()
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(argv[8], options, providers=["CPUExecutionProvider"])

        def call(a: np.ndarray) -> Any:
            return session.run(None, {"x": a})[0]

        version = f"onnxruntime {ort.__version__}"
    else:
        raise SystemExit(f"unknown framework {framework!r}")
    times = _time(call, x, runs, warmup)
    return asdict(
        Result(
            framework,
            float(np.median(times)),
            float(np.percentile(times, 10)),
            float(np.percentile(times, 90)),
            runs,
            _rss_mib(),
            baseline,
            version,
        )
    )


def run(
    variant: str,
    *,
    batch: int = 1,
    threads: int = 2,
    resolution: int = 224,
    runs: int = 20,
    warmup: int = 5,
    frameworks: Sequence[str] = DEFAULT_FRAMEWORKS,
    weights: str | None = None,
    rounds: int = 3,
) -> tuple[list[Result], list[str]]:
    """Measure ``frameworks`` (those not installed are listed as skipped): (results, notes).

    Each framework runs ``rounds`` times, each time in a fresh process, the frameworks alternated
    (the order reversed every other round) so that a change in the machine's load falls on all of
    them; a framework's result is the median over its rounds."""
    notes: list[str] = []
    rounds_of: dict[str, list[Result]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = prepare_weights(variant, Path(tmp), weights)
        onnx_file = None
        present = []
        for framework in frameworks:
            if installed(framework):
                present.append(framework)
            else:
                needs = "make -C cext" if framework == "pcn_predict" else ", ".join(_NEEDS[framework])
                notes.append(f"{framework}: not installed (needs {needs})")
        if "onnxruntime" in present:
            onnx_file = export_onnx(path, variant, batch, resolution, Path(tmp) / "model.onnx")
        for r in range(rounds):
            for framework in present if r % 2 == 0 else present[::-1]:
                measured = measure(
                    framework,
                    path,
                    variant,
                    batch=batch,
                    threads=threads,
                    resolution=resolution,
                    runs=runs,
                    warmup=warmup,
                    onnx_file=onnx_file,
                )
                rounds_of.setdefault(framework, []).append(measured)
    return [_combined(rounds_of[f]) for f in present], notes


def _combined(results: list[Result]) -> Result:
    """One framework's rounds as one result: medians of the rounds' times, the largest peak."""
    return Result(
        results[0].framework,
        float(np.median([r.median_ms for r in results])),
        float(np.median([r.p10_ms for r in results])),
        float(np.median([r.p90_ms for r in results])),
        sum(r.runs for r in results),
        max(r.peak_rss_mib for r in results),
        min(r.baseline_rss_mib for r in results),
        results[0].version,
    )


if __name__ == "__main__":  # a child process: print one JSON line
    parser = argparse.ArgumentParser(prog="python -m parcnetv2.cli.framework_comparison")
    parser.add_argument("argv", nargs="+")
    print(json.dumps(_child_main(parser.parse_args().argv)))
