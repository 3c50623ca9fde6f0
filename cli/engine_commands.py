"""The engine's subcommands of ``parcnetv2`` (spec clause 15.6): ``predict``, ``bench`` and
``plot-kernels``. ``parcnetv2.cli`` registers them through its ``SUBCOMMANDS`` list and turns
bad input (InputError, WeightsError, CheckpointError, unreadable files) into one line on stderr
and exit code 2. Heavy imports (the engine, Pillow, tqdm, matplotlib) happen inside the commands.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from parcnetv2.cli.arguments import (
    MAX_BATCH,
    MAX_CLASSES,
    MAX_RESOLUTION,
    MAX_RUNS,
    MAX_THREADS,
    int_in,
    name_list,
)
from parcnetv2.cli.values import require_finite
from parcnetv2.errors import InputError

__all__ = ["ENGINE_SUBCOMMANDS"]

BATCH = 8  # images per engine call in predict
MAX_LABELS_BYTES = 64 << 20  # a label file: one short name per class
MAX_PLOTTED_CHANNELS = 64  # rows of the plot-kernels figure


# ---------------------------------------------------------------------------- predict


def _labels(path: str | None, num_classes: int) -> list[str] | None:
    if path is None:
        return None
    from parcnetv2.files import open_regular

    try:
        with open_regular(path) as fh:
            data = fh.read(MAX_LABELS_BYTES + 1)
        if len(data) > MAX_LABELS_BYTES:
            raise InputError(f"--labels {path}: over {MAX_LABELS_BYTES >> 20} MiB, not a list of class names")
        names = [line.strip() for line in data.decode("utf-8").splitlines()]
    except UnicodeDecodeError as exc:
        raise InputError(f"--labels {path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    while names and not names[-1]:
        names.pop()
    if len(names) != num_classes:
        raise InputError(f"--labels {path}: {len(names)} labels for a model with {num_classes} classes (one per line)")
    return names


def _progress(total: int) -> Any:
    """A tqdm bar on stderr, shown for more than one image on a terminal."""
    try:
        from tqdm import tqdm
    except ImportError:
        raise InputError("predict needs tqdm: pip install 'parcnetv2[images]'") from None
    return tqdm(total=total, unit="image", file=sys.stderr, disable=total < 2 or not sys.stderr.isatty())


def _cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from parcnetv2 import engine
    from parcnetv2.engine.preprocess import load_image, require_pillow

    require_pillow()
    model = engine.load(args.weights, args.variant, threads=args.threads)
    names = _labels(args.labels, model.num_classes)
    k = min(args.top, model.num_classes)
    results: list[dict[str, Any]] = []
    with _progress(len(args.images)) as bar:
        for start in range(0, len(args.images), BATCH):
            paths = args.images[start : start + BATCH]
            logits = model(np.stack([load_image(p) for p in paths])).astype(np.float64)
            hint = "the weights hold non-finite or extreme values"
            require_finite(logits, f"the logits of {', '.join(paths)}", hint=hint)
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            probabilities = shifted / shifted.sum(axis=1, keepdims=True)
            for path, p in zip(paths, probabilities):
                top = np.argsort(-p, kind="stable")[:k]
                entry = {
                    "image": path,
                    "top": [
                        {"index": int(i), "probability": float(p[i]), **({"label": names[i]} if names else {})}
                        for i in top
                    ],
                }
                results.append(entry)
                if not args.json:
                    bar.clear()
                    print(path)
                    for rank, item in enumerate(entry["top"], 1):
                        label = f"  {item['label']}" if names else ""
                        print(f"  {rank}. {item['index']:>5d}  {item['probability']:.4f}{label}")
                    sys.stdout.flush()
                bar.update(1)
    if args.json:
        print(json.dumps({"model": model.config.name, "results": results}, indent=2))
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="top-5 classes of images with the CPU engine (needs the images extra)",
        description="Classify images with parcnetv2.engine. Preprocessing is the official evaluation: "
        "RGB, bicubic resize of the shorter side to 256, centre crop 224, ImageNet mean/std.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (anything Pillow reads)")
    p.add_argument("--weights", required=True, help="weights file (.pth, .pt, .npz, .safetensors)")
    p.add_argument("--variant", help="official variant the weights must be (default: inferred from the weights)")
    p.add_argument("--labels", help="class names, one per line, in class-index order")
    p.add_argument("--top", type=int_in(1, MAX_CLASSES), default=5, help="classes listed per image (default 5)")
    p.add_argument(
        "--threads", type=int_in(1, MAX_THREADS), help=f"threads, 1..{MAX_THREADS} (default: the libraries' defaults)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.set_defaults(func=_cmd_predict)


# ---------------------------------------------------------------------------- bench


def _cmd_bench(args: argparse.Namespace) -> int:
    from parcnetv2.cli import framework_comparison as comparisons
    from parcnetv2.reference.architecture import Config

    config = Config.from_variant(args.variant)  # InputError for an unknown variant
    unknown = [f for f in args.frameworks if f not in comparisons.FRAMEWORKS]
    if unknown:
        raise InputError(f"--frameworks: unknown {', '.join(unknown)}; choose from {', '.join(comparisons.FRAMEWORKS)}")
    try:
        results, notes = comparisons.run(
            args.variant,
            batch=args.batch,
            threads=args.threads,
            resolution=args.resolution,
            runs=args.runs,
            warmup=args.warmup,
            frameworks=args.frameworks,
            weights=args.weights,
            rounds=args.rounds,
        )
    except RuntimeError as exc:
        raise InputError(f"a benchmark process failed: {exc}") from None
    budget = comparisons.memory_budget(config, args.batch, args.resolution)
    weights = f"weights {args.weights}" if args.weights else "random weights (official initialisation, seed 0)"
    if args.json:
        print(
            json.dumps(
                {
                    "variant": args.variant,
                    "batch": args.batch,
                    "threads": args.threads,
                    "resolution": args.resolution,
                    "weights": weights,
                    "machine": comparisons.machine(),
                    "results": [r.__dict__ for r in results],
                    "notes": notes,
                    **budget,
                },
                indent=2,
            )
        )
        return 0
    print(
        f"{args.variant}, {args.resolution}x{args.resolution}, batch {args.batch}, {args.threads} threads, {weights}; "
        f"{args.rounds} rounds of {args.runs} runs after {args.warmup} warm-up runs; each framework in its own "
        "process, alternated; medians over the rounds"
    )
    print(f"machine: {comparisons.machine()}")
    print(
        f"{'framework':<12} {'median ms':>10} {'p10 ms':>9} {'p90 ms':>9} {'peak RSS MiB':>13} "
        f"{'above imports':>14}  version"
    )
    for r in results:
        print(
            f"{r.framework:<12} {r.median_ms:>10.2f} {r.p10_ms:>9.2f} {r.p90_ms:>9.2f} {r.peak_rss_mib:>13.1f} "
            f"{r.peak_rss_mib - r.baseline_rss_mib:>14.1f}  {r.version}"
        )
    for note in notes:
        print(f"skipped {note}")
    print(
        f"memory budget 2 x (weights {budget['weights_mib']:.1f} MiB + largest activation "
        f"{budget['activation_mib']:.1f} MiB) = {budget['budget_mib']:.1f} MiB"
    )
    return 0


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="latency and peak memory: engine vs ONNX Runtime vs PyTorch vs pcn_predict (where installed)"
    )
    p.add_argument("--variant", required=True, help="official variant")
    p.add_argument("--batch", type=int_in(1, MAX_BATCH), default=1, help=f"images per call, 1..{MAX_BATCH} (default 1)")
    p.add_argument(
        "--threads",
        type=int_in(1, MAX_THREADS),
        default=min(os.cpu_count() or 1, MAX_THREADS),
        help=f"threads of every framework, 1..{MAX_THREADS} (default: all CPUs)",
    )
    p.add_argument(
        "--resolution",
        type=int_in(3, MAX_RESOLUTION),
        default=224,
        help=f"square input size, 3..{MAX_RESOLUTION} (default 224)",
    )
    p.add_argument("--runs", type=int_in(1, MAX_RUNS), default=20, help=f"timed runs, 1..{MAX_RUNS} (default 20)")
    p.add_argument(
        "--warmup", type=int_in(0, MAX_RUNS), default=5, help=f"untimed runs first, 0..{MAX_RUNS} (default 5)"
    )
    p.add_argument(
        "--frameworks",
        type=name_list(("engine", "onnxruntime", "torch", "pcn_predict")),
        default=["engine", "onnxruntime", "torch"],
        help="comma-separated, non-empty subset of engine,onnxruntime,torch,pcn_predict (the C program, "
        "built by make -C cext)",
    )
    p.add_argument(
        "--rounds",
        type=int_in(1, 100),
        default=3,
        help="rounds, each framework once per round in a fresh process, alternated (1..100, default 3)",
    )
    p.add_argument("--weights", help="weights file (default: random weights)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_bench)


# ---------------------------------------------------------------------------- plot-kernels


def _cmd_plot_kernels(args: argparse.Namespace) -> int:
    from parcnetv2 import reference
    from parcnetv2.cli.kernel_plots import plot_kernels, require_matplotlib

    require_matplotlib()
    model = reference.load(args.weights, args.variant)
    chosen = plot_kernels(model, args.stage, args.block, args.out, args.channels)
    print(
        f"wrote {args.out}: stages.{args.stage}.{args.block} oversized kernels, channels {', '.join(map(str, chosen))}"
    )
    return 0


def _add_plot_kernels(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot-kernels", help="figure of a block's oversized kernels (needs the plot extra)")
    p.add_argument("weights", metavar="WEIGHTS", help="weights file (.pth, .pt, .npz, .safetensors)")
    p.add_argument("--stage", type=int, required=True, help="stage index (0-based)")
    p.add_argument("--block", type=int, required=True, help="block index within the stage (0-based)")
    p.add_argument("--out", required=True, help="output figure, e.g. kernels.png")
    p.add_argument(
        "--channels",
        type=int_in(1, MAX_PLOTTED_CHANNELS),
        default=4,
        help=f"channels shown, 1..{MAX_PLOTTED_CHANNELS} (default 4, the strongest)",
    )
    p.add_argument("--variant", help="official variant the weights must be (default: inferred)")
    p.set_defaults(func=_cmd_plot_kernels)


ENGINE_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_predict, _add_bench, _add_plot_kernels]
