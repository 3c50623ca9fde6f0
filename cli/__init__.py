"""The ``parcnetv2`` command line.

Bad input (a missing file, an unknown variant, an input of the wrong shape, weights that do not
fit, a refused checkpoint, a number out of its range, non-finite values) prints one line on stderr
and exits with code 2, no traceback (spec clause 15.6). Inputs must be finite (clause 1.4).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

import numpy as np

from parcnetv2 import __version__
from parcnetv2.cli.arguments import MAX_CLASSES, MAX_RESOLUTION, MAX_SEED, int_in
from parcnetv2.cli.engine_commands import ENGINE_SUBCOMMANDS
from parcnetv2.cli.values import require_finite
from parcnetv2.errors import CheckpointError, InputError, ParcnetError, one_line

EXIT_BAD_INPUT = 2
#: The largest .npy input ``run`` reads (its declared size is checked before anything is read).
MAX_INPUT_BYTES = 1 << 30


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (usage stays available through --help)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, one_line(f"{self.prog}: error: {message}") + "\n")


def _cmd_params(args: argparse.Namespace) -> int:
    from parcnetv2.reference import Config, breakdown

    config = Config.from_variant(args.variant, num_classes=args.num_classes)
    rows = breakdown(config, args.resolution)
    params, macs = sum(r.params for r in rows), sum(r.macs for r in rows)
    res = f"{args.resolution}x{args.resolution}"
    if args.detail:
        width = max(len(f"{r.group} {r.component}") for r in rows)
        print(f"{'module':<{width}}  {'params':>12}  {'MACs at ' + res:>16}")
        for r in rows:
            print(f"{r.group + ' ' + r.component:<{width}}  {r.params:>12,}  {r.macs:>16,}")
        print(f"{'total':<{width}}  {params:>12,}  {macs:>16,}")
    print(f"{config.name}: {params:,} parameters, {macs / 1e9:.3f} GMACs at {res} ({macs:,} MACs)")
    return 0


def _read_input(path: str | None, dtype: str | None, seed: int) -> np.ndarray:
    """The NCHW input: the .npy at ``path`` (read by the weights readers' bounded .npy parser,
    at most MAX_INPUT_BYTES) cast to ``dtype``, or a seeded standard-normal 224x224 image."""
    if path is None:  # built-in default: one deterministic 224x224 image, standard normal
        return np.random.default_rng(seed).standard_normal((1, 3, 224, 224)).astype(dtype or "float32")
    from parcnetv2.reference.checkpoint import read_npy

    if not os.path.lexists(path):
        raise InputError(f"input file not found: {path}")
    if os.path.isfile(path) and os.path.getsize(path) > MAX_INPUT_BYTES:
        raise InputError(f"input {path} is {os.path.getsize(path)} bytes, over the {MAX_INPUT_BYTES >> 30} GiB limit")
    try:
        x = read_npy(path)
    except CheckpointError as exc:
        raise InputError(f"cannot read input: {exc}") from None
    if x.dtype.kind == "c":
        raise InputError(f"input {path} has dtype {x.dtype}; the model takes real numbers")
    if dtype is None:
        if x.dtype not in (np.float32, np.float64):
            raise InputError(f"input {path} has dtype {x.dtype}; pass --dtype float32 or float64")
    else:
        x = x.astype(dtype)
    require_finite(x, f"input {path}")
    return x


def _write_logits(path: str, logits: np.ndarray) -> None:
    """Save ``logits`` in .npy format to exactly ``path`` (np.save would append ``.npy`` to a
    name without it); InputError naming the path when it cannot be written."""
    try:
        with open(path, "wb") as f:
            np.save(f, logits)
    except OSError as exc:
        raise InputError(f"cannot write the logits to {path}: {exc.strerror or exc}") from None


def _cmd_run(args: argparse.Namespace) -> int:
    from parcnetv2 import reference

    x = _read_input(args.input, args.dtype, args.input_seed)
    if args.weights is not None:
        model = reference.load(args.weights, args.variant)
    else:
        model = reference.create(args.variant, num_classes=args.num_classes, seed=args.random_seed)
    with np.errstate(all="ignore"):  # extreme values: reported below, not as warnings
        logits = model(x)
    require_finite(logits, "the logits", hint="the weights hold non-finite or extreme values")
    if args.output is not None:
        _write_logits(args.output, logits)
        print(f"wrote logits {logits.shape} {logits.dtype} to {args.output}")
    else:
        top = np.argsort(-logits, axis=1)[:, :5]
        for n in range(logits.shape[0]):
            ranked = ", ".join(f"{int(k)}: {logits[n, k]:.4f}" for k in top[n])
            print(f"image {n}: top-5 logits {ranked}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from parcnetv2.reference.checkpoint import convert

    count = convert(args.source, args.destination)
    print(f"wrote {count} tensors to {args.destination}")
    return 0


def _add_params(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("params", help="exact parameter count and MACs of a variant")
    p.add_argument("variant", help="parcnetv2_xt, parcnetv2_tiny, parcnetv2_small or parcnetv2_base")
    p.add_argument("--detail", action="store_true", help="break the counts down per stage and component")
    p.add_argument(
        "--num-classes",
        type=int_in(1, MAX_CLASSES),
        default=1000,
        help=f"classes of the head, 1..{MAX_CLASSES} (default 1000)",
    )
    p.add_argument(
        "--resolution",
        type=int_in(3, MAX_RESOLUTION),
        default=224,
        help=f"square input size for MACs, 3..{MAX_RESOLUTION} (default 224)",
    )
    p.set_defaults(func=_cmd_params)


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the NumPy reference on an NCHW .npy input")
    p.add_argument("--variant", required=True, help="official variant name")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", help="weights file (.pth, .pt, .npz, .safetensors)")
    source.add_argument(
        "--random-seed", type=int_in(0, MAX_SEED), help="use official-style random weights from this seed (>= 0)"
    )
    p.add_argument(
        "--input",
        help=f"NCHW (N, 3, H, W) .npy of finite values, at most {MAX_INPUT_BYTES >> 30} GiB; "
        "default: one seeded random 224x224 image",
    )
    p.add_argument("--input-seed", type=int_in(0, MAX_SEED), default=0, help=argparse.SUPPRESS)
    p.add_argument("--output", help="file for the logits (.npy format, written under this exact name); default: top-5")
    p.add_argument("--dtype", choices=("float32", "float64"), help="compute dtype (default: the input's)")
    p.add_argument(
        "--num-classes", type=int_in(1, MAX_CLASSES), default=1000, help=f"classes with --random-seed, 1..{MAX_CLASSES}"
    )
    p.set_defaults(func=_cmd_run)


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert weights between .pth, .npz and .safetensors")
    p.add_argument("source", help="input weights file")
    p.add_argument("destination", help="output file; its extension picks the format")
    p.set_defaults(func=_cmd_convert)


# Each entry adds one subcommand; later features append here.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_params, _add_run, _add_convert]
# The inference engine's predict, bench and plot-kernels (spec clause 15).
SUBCOMMANDS += ENGINE_SUBCOMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="parcnetv2", description="ParCNetV2 reference, kernels and conformance tools")
    parser.add_argument("--version", action="version", version=f"parcnetv2 {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ParcnetError as exc:
        message = str(exc)
    except OSError as exc:  # unreadable or unwritable files
        name = exc.filename if exc.filename is not None else ""
        message = f"{exc.strerror or exc}: {name}".rstrip(": ")
    except MemoryError:  # the last resort: every input size is bounded where it is read
        message = "out of memory: the input or the model is too large for this machine"
    print(one_line(f"parcnetv2 {args.command}: error: {message}"), file=sys.stderr)
    return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
