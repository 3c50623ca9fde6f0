"""Export a port with given weights to ONNX, for ``pytest conformance --backend onnx``.

    python tests/ports/export_onnx.py NAME [NAME ...] --out DIR [--exporter torchscript|dynamo|both]
        [--weights init|random] [--seed S] [--variant parcnetv2_xt] [--check] [--dynamic]
    python tests/ports/export_onnx.py --all --out DIR       # try every port, print a table

For each port it writes ``DIR/NAME.npz`` (the float32 weights under the official names, for
``--weights``) and ``DIR/NAME.torchscript.onnx`` (``torch.onnx.export(..., dynamo=False,
opset_version=17)``) and/or ``DIR/NAME.dynamo.onnx`` (``dynamo=True``, opset 18, weights
embedded), input
``images`` (1, 3, 224, 224), output ``logits``; with ``--dynamic`` the batch, H and W of the
input are left free (``dynamic_axes`` / ``dynamic_shapes``), so the harness also runs the file
at another size. The weights are those ``verify.py`` uses
(``trained_like`` for ``random``, the official initialisation for ``init``). With ``--check`` the
exported file is run with ONNX Runtime and compared with the port's own float32 logits.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from parcnetv2 import reference

if __package__ in (None, ""):  # run as a script: import the ports as a package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "ports"  # the relative import below needs it

from .verify import VARIANT, Probe, build, load_catalog, unwrapped, weights

EXPORTERS = ("torchscript", "dynamo")
# opset per exporter: the TorchScript exporter writes 17 as the harness documents; the dynamo
# exporter implements 18 and up, and its conversion down to 17 fails on ReduceMean's axes input
# (torch 2.13, onnx 1.23), so its files are opset 18.
OPSET = {"torchscript": 17, "dynamo": 18}
IMAGE_SHAPE = (1, 3, 224, 224)


def prepared(name: str, state: dict[str, np.ndarray], variant: str = VARIANT) -> torch.nn.Module:
    """The port with ``state`` loaded, float32, in eval mode."""
    model = build(name, Probe(), variant)
    unwrapped(model).load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=True)
    return model.float().eval()


def export(model: torch.nn.Module, path: Path, exporter: str, dynamic: bool = False) -> None:
    """Write ``model`` to ``path`` with the TorchScript (dynamo=False) or dynamo exporter."""
    example = torch.zeros(IMAGE_SHAPE)
    options: dict = {"external_data": False} if exporter == "dynamo" else {}  # one self-contained file
    if dynamic and exporter == "dynamo":
        auto = torch.export.Dim.AUTO
        options["dynamic_shapes"] = ({0: auto, 2: auto, 3: auto},)
    elif dynamic:
        options["dynamic_axes"] = {"images": {0: "N", 2: "H", 3: "W"}, "logits": {0: "N"}}
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=exporter == "dynamo",
                opset_version=OPSET[exporter],
                input_names=["images"],
                output_names=["logits"],
                **options,
            )


def write_weights(state: dict[str, np.ndarray], path: Path) -> None:
    np.savez(path, **state)


def onnx_logits(path: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images.astype(np.float32)})[0]


@dataclass
class Outcome:
    name: str
    exporter: str
    ok: bool
    seconds: float
    detail: str  # the error's first line, or the check's relative difference


def export_port(
    name: str,
    out: Path,
    exporter: str,
    weights_kind: str = "random",
    seed: int = 0,
    check: bool = False,
    dynamic: bool = False,
) -> Outcome:
    """Export one port with one exporter; the weights file is written next to it."""
    state = weights(VARIANT, Probe(weights=weights_kind, seed=seed))
    write_weights(state, out / f"{name}.npz")
    path = out / f"{name}.{exporter}.onnx"
    start = time.perf_counter()
    try:
        model = prepared(name, state)
        export(model, path, exporter, dynamic)
    except Exception as exc:  # which ports an exporter refuses is the result we record
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return Outcome(name, exporter, False, time.perf_counter() - start, f"{type(exc).__name__}: {message[:160]}")
    detail = "exported"
    if check:
        images = np.random.default_rng(seed).standard_normal(IMAGE_SHAPE).astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(images)).numpy()
        try:
            got = onnx_logits(path, images)
        except Exception as exc:  # exported, but ONNX Runtime cannot run it
            first = str(exc).strip().splitlines()[0][:160]
            return Outcome(name, exporter, False, time.perf_counter() - start, f"exported; ONNX Runtime: {first}")
        detail = f"ORT vs port: {np.max(np.abs(got - expected)) / np.max(np.abs(expected)):.2e} relative"
    return Outcome(name, exporter, True, time.perf_counter() - start, detail)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--all", action="store_true", help="every port of the catalog")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--exporter", choices=(*EXPORTERS, "both"), default="both")
    parser.add_argument("--weights", choices=("init", "random"), default="random")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="run the file with ONNX Runtime against the port")
    parser.add_argument("--dynamic", action="store_true", help="leave the batch, H and W of the input free")
    args = parser.parse_args(argv)
    entries = {e.name: e for e in load_catalog()}
    names = list(entries) if args.all else args.names
    unknown = [n for n in names if n not in entries]
    if not names or unknown:
        parser.error(f"name ports of the catalog (unknown: {unknown})" if unknown else "name ports or give --all")
    args.out.mkdir(parents=True, exist_ok=True)
    exporters = EXPORTERS if args.exporter == "both" else (args.exporter,)
    print(f"variant {VARIANT}, weights {args.weights} seed {args.seed}, opsets {OPSET}, torch {torch.__version__}")
    failures = 0
    for name in names:
        for exporter in exporters:
            outcome = export_port(name, args.out, exporter, args.weights, args.seed, args.check, args.dynamic)
            failures += not outcome.ok
            status = "ok  " if outcome.ok else "FAIL"
            print(
                f"{status} {entries[name].verdict:6} {name:28} {exporter:11} {outcome.seconds:6.1f}s {outcome.detail}"
            )
    return 1 if failures and not args.all else 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["export", "export_port", "reference", "write_weights"]
