"""Prove every port's catalog verdict against the float64 NumPy reference (``parcnetv2.reference``).

For each port the same float32 weights go into the port and into the reference Model, and both
run the same float64 images:

- ``accept`` ports must agree to ``ACCEPT_RTOL`` (max |port - ref| / max |ref|) at 224 x 224 and
  97 x 131, batch 2, with official-init weights and with random weights that are not like an
  initialisation (gains, nonzero biases, norm weights of both signs, see ``trained_like``), and in
  every kernel mode the factory accepts; their state_dict must carry the official names and
  shapes for all four variants.
- ``reject`` ports must differ by more than ``DIFFER_RTOL`` under the catalog's ``differs`` probe,
  and agree under each of its ``agrees`` probes (which shows the condition is the smallest one);
  ``structure`` rejects must have a state_dict that differs in names or shapes. For every reject
  the float32 "excess" is reported: its float32 error at the ``differs`` probe over the float32
  error of the exact port ``modules`` (about 1 means float32 rounding hides the mistake).

    python tests/ports/verify.py [NAME ...] [--json FILE] [--quick]

``--quick`` skips the 224 x 224 runs and the four-variant structure check. Importable:
``verify_entry(entry)`` returns a ``Result``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from parcnetv2 import reference

CATALOG = Path(__file__).with_name("catalog.toml")
VARIANT = "parcnetv2_xt"
ALL_VARIANTS = ("parcnetv2_xt", "parcnetv2_tiny", "parcnetv2_small", "parcnetv2_base")
ACCEPT_RTOL = 1e-10  # float64 ports: a few hundred ulps of the largest logit
DIFFER_RTOL = 1e-8  # a broken port must miss by 100x more than an accepted one may
FLOAT32_ULP = 2.0**-24
EXACT_PORT = "modules"
LNG_WEIGHTS = ("norm1.weight", "norm2.weight", "pre_norm.weight", "post_norm.weight")


@dataclass(frozen=True)
class Probe:
    """One run: weights, image size and batch, kernel mode, and an optional weights tweak."""

    weights: str = "random"  # "init" (official initialisation) or "random" (trained_like)
    size: tuple[int, int] = (97, 131)
    batch: int = 2
    interpolate: bool | int = False
    kernels: tuple[int, ...] | None = None
    input_scale: float = 1.0
    tweak: str = ""  # a name in TWEAKS
    seed: int = 0

    @classmethod
    def from_toml(cls, table: Mapping[str, Any]) -> Probe:
        unknown = set(table) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown probe field(s) {sorted(unknown)}")
        values = dict(table)
        for key in ("size", "kernels"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def label(self) -> str:
        parts = [self.weights, "x".join(map(str, self.size)), f"b{self.batch}"]
        if self.interpolate is not False:
            parts.append(f"interpolate={self.interpolate}")
        if self.kernels:
            parts.append(f"kernels={list(self.kernels)}")
        if self.input_scale != 1.0:
            parts.append(f"scale={self.input_scale:g}")
        if self.tweak:
            parts.append(self.tweak)
        return " ".join(parts)


STANDARD = tuple(Probe(weights=w, size=s) for s in ((224, 224), (97, 131)) for w in ("init", "random"))


@dataclass(frozen=True)
class Entry:
    name: str
    verdict: str
    kind: str
    description: str
    condition: str = ""
    options: tuple[str, ...] = ()
    differs: Probe | None = None
    agrees: tuple[Probe, ...] = ()
    float32_excess: float | None = None
    output: str = "float64"  # "float32": the port returns float32 whatever it computes in
    exported: Mapping[str, str] = field(default_factory=dict)  # exporter -> "not exportable: ..." / "exact: ..."

    def exported_verdict(self, exporter: str) -> str:
        """What the harness must say of this port's file from ``exporter``: "accept", "reject", or
        "not exportable" (the catalog's ``exported``)."""
        note = self.exported.get(exporter, "")
        if note.startswith("not exportable"):
            return "not exportable"
        return "accept" if note.startswith("exact") else self.verdict


def load_catalog(path: Path = CATALOG) -> list[Entry]:
    """The catalog's entries, validated (verdicts, classes, probes)."""
    data = tomllib.loads(path.read_text())
    classes = set(data["classes"])
    entries = []
    for row in data["port"]:
        row = dict(row)
        kind = row.pop("class")
        if kind not in classes or row["verdict"] not in ("accept", "reject"):
            raise ValueError(f"{row['name']}: bad class {kind!r} or verdict {row['verdict']!r}")
        differs = row.pop("differs", None)
        agrees = row.pop("agrees", [])
        entry = Entry(
            kind=kind,
            differs=Probe.from_toml(differs) if differs is not None else None,
            agrees=tuple(Probe.from_toml(a) for a in agrees),
            options=tuple(row.pop("options", ())),
            **row,
        )
        for exporter, note in entry.exported.items():
            if exporter not in ("torchscript", "dynamo") or not note.startswith(("not exportable: ", "exact: ")):
                raise ValueError(f"{entry.name}: exported.{exporter} = {note!r}: 'not exportable: why' or 'exact: why'")
        if entry.verdict == "reject" and entry.kind != "structure" and entry.differs is None:
            raise ValueError(f"{entry.name}: a numeric reject needs a 'differs' probe")
        entries.append(entry)
    return entries


def factory_of(name: str):
    return importlib.import_module(f"{__package__ or 'ports'}.{name}").factory


def build(name: str, probe: Probe = Probe(), variant: str = VARIANT) -> torch.nn.Module:
    """The port ``name`` for ``variant``, built with the probe's kernel mode and sizes."""
    options: dict[str, Any] = {}
    if probe.interpolate is not False:
        options["interpolate"] = probe.interpolate
    if probe.kernels:
        options["global_kernel_sizes"] = probe.kernels
    return factory_of(name)(variant, **options)


def unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The module holding the official names (``torch.compile`` wraps it as ``_orig_mod``)."""
    return getattr(model, "_orig_mod", model)


def trained_like(shapes: Mapping[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """Random float32 weights unlike an initialisation: matrices and kernels normal with std
    gain / sqrt(fan_in), gain log-uniform in [0.5, 2] per tensor; biases normal with a
    log-uniform std in [0.05, 0.5]; LayerNormGeneral weights sqrt(C) * +-[0.5, 1.5] (its output
    has norm 1, so this keeps activations of order one); other vectors +-[0.5, 1.5]."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in shapes.items():
        if len(shape) >= 2:
            gain = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
            values = rng.standard_normal(shape) * gain / np.sqrt(np.prod(shape[1:]))
        elif name.endswith(".bias"):
            values = rng.normal(0.0, np.exp(rng.uniform(np.log(0.05), np.log(0.5))), size=shape)
        else:
            magnitude = rng.uniform(0.5, 1.5, size=shape) * rng.choice((-1.0, 1.0), size=shape)
            values = magnitude * (np.sqrt(shape[0]) if name.endswith(LNG_WEIGHTS) else 1.0)
        state[name] = values.astype(np.float32)
    return state


def tiny_stem(state: dict[str, np.ndarray]) -> None:
    """Stem conv weights x 1e-9, bias 0: the stem's post_norm sees channel vectors whose centred
    norm is about 1e-9, far below eps = 1e-6, so the clamp decides (and float32 resolves them,
    unlike a constant offset plus 1e-9)."""
    state["downsample_layers.0.conv.weight"] = state["downsample_layers.0.conv.weight"] * np.float32(1e-9)
    state["downsample_layers.0.conv.bias"] = np.zeros_like(state["downsample_layers.0.conv.bias"])


TWEAKS = {"tiny_stem": tiny_stem}


@functools.lru_cache(maxsize=16)
def _weights(variant: str, probe: Probe) -> dict[str, np.ndarray]:
    overrides = {"global_kernel_sizes": probe.kernels} if probe.kernels else {}
    if probe.weights == "init":
        state = dict(reference.create(variant, seed=probe.seed, **overrides).state_dict())
    elif probe.weights == "random":
        config = reference.Config.from_variant(variant, **overrides)
        state = trained_like(reference.parameter_shapes(config), probe.seed)
    else:
        raise ValueError(f"unknown weights {probe.weights!r}")
    if probe.tweak:
        TWEAKS[probe.tweak](state)
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}


def weights(variant: str, probe: Probe) -> dict[str, np.ndarray]:
    return _weights(variant, replace(probe, size=(0, 0), batch=0, input_scale=1.0))


def images(probe: Probe) -> np.ndarray:
    rng = np.random.default_rng(1000 + probe.seed)
    return rng.standard_normal((probe.batch, 3, *probe.size)) * probe.input_scale


@functools.lru_cache(maxsize=64)
def reference_logits(variant: str, probe: Probe) -> np.ndarray:
    model = reference.from_state_dict(weights(variant, probe), interpolate=probe.interpolate)
    return model(images(probe))


def port_logits(name: str, probe: Probe, dtype: torch.dtype, variant: str = VARIANT) -> np.ndarray:
    """The port's logits (as float64) for the probe, computed in ``dtype``."""
    model = build(name, probe, variant)
    tensors = {k: torch.tensor(v) for k, v in weights(variant, probe).items()}
    unwrapped(model).load_state_dict(tensors, strict=True)
    model = model.to(dtype).eval()
    with torch.no_grad():
        out = model(torch.from_numpy(images(probe)).to(dtype))
    return out.detach().to(torch.float64).numpy()


def relative_error(y: np.ndarray, ref: np.ndarray) -> float:
    if y.shape != ref.shape:
        return float("inf")
    return float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))


def agrees(entry: Entry, y: np.ndarray, ref: np.ndarray) -> bool:
    if y.shape != ref.shape or not np.isfinite(y).all():
        return False
    if entry.output == "float32":  # float64 result rounded to float32 once, at the end
        bound = FLOAT32_ULP * np.abs(ref) + ACCEPT_RTOL * np.max(np.abs(ref))
        return bool(np.all(np.abs(y - ref) <= bound))
    return relative_error(y, ref) <= ACCEPT_RTOL


@functools.lru_cache(maxsize=64)
def exact_float32_error(variant: str, probe: Probe) -> float:
    return relative_error(port_logits(EXACT_PORT, probe, torch.float32, variant), reference_logits(variant, probe))


def structure_differences(name: str, variant: str) -> list[str]:
    """Names and shapes of the port's state_dict that differ from the official ones."""
    official = reference.parameter_shapes(reference.Config.from_variant(variant))
    model = unwrapped(build(name, Probe(), variant))
    found = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = [f"missing {k}" for k in official if k not in found]
    problems += [f"unexpected {k}" for k in found if k not in official]
    problems += [f"{k}: {found[k]} != {s}" for k, s in official.items() if k in found and found[k] != s]
    return problems


@dataclass
class Result:
    name: str
    verdict: str
    kind: str
    ok: bool = True
    errors: dict[str, float] = field(default_factory=dict)  # probe label -> float64 relative error
    float32_excess: float | None = None
    structure: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def fail(self, message: str) -> None:
        self.ok = False
        self.notes.append(message)


def accept_probes(entry: Entry, quick: bool) -> list[Probe]:
    probes = [p for p in STANDARD if not (quick and p.size == (224, 224))]
    if "interpolate" in entry.options:
        probes += [Probe(interpolate=True), Probe(interpolate=5)]
    if "global_kernel_sizes" in entry.options:
        probes.append(Probe(kernels=(31, 15, 9, 5)))
    return probes


def verify_entry(entry: Entry, quick: bool = False, variant: str = VARIANT) -> Result:
    """Check one port against its catalog entry (see the module docstring)."""
    start = time.perf_counter()
    result = Result(entry.name, entry.verdict, entry.kind)
    if entry.kind == "structure":
        result.structure = structure_differences(entry.name, variant)
        if not result.structure:
            result.fail("state_dict has the official names and shapes")
    elif entry.verdict == "accept":
        for v in (variant,) if quick else ALL_VARIANTS:
            problems = structure_differences(entry.name, v)
            if problems:
                result.fail(f"{v}: state_dict differs: {problems[:3]}")
        for probe in accept_probes(entry, quick):
            y, ref = port_logits(entry.name, probe, torch.float64, variant), reference_logits(variant, probe)
            result.errors[probe.label()] = relative_error(y, ref)
            if not agrees(entry, y, ref):
                result.fail(f"disagrees at {probe.label()}: {relative_error(y, ref):.3g}")
    else:
        for probe in [p for p in STANDARD if not (quick and p.size == (224, 224))]:
            result.errors[probe.label()] = relative_error(
                port_logits(entry.name, probe, torch.float64, variant), reference_logits(variant, probe)
            )
        assert entry.differs is not None
        probe = entry.differs
        error = relative_error(port_logits(entry.name, probe, torch.float64, variant), reference_logits(variant, probe))
        result.errors["differs: " + probe.label()] = error
        if not error > DIFFER_RTOL:
            result.fail(f"does not differ at {probe.label()}: {error:.3g}")
        for probe in entry.agrees:
            y, ref = port_logits(entry.name, probe, torch.float64, variant), reference_logits(variant, probe)
            result.errors["agrees: " + probe.label()] = relative_error(y, ref)
            if not agrees(entry, y, ref):
                result.fail(f"differs where the catalog says it agrees, {probe.label()}: {relative_error(y, ref):.3g}")
        error32 = relative_error(
            port_logits(entry.name, entry.differs, torch.float32, variant), reference_logits(variant, entry.differs)
        )
        result.float32_excess = error32 / exact_float32_error(variant, entry.differs)
        if entry.float32_excess is not None and not result.float32_excess >= entry.float32_excess:
            result.fail(f"float32 excess {result.float32_excess:.3g} < {entry.float32_excess}")
    result.seconds = time.perf_counter() - start
    return result


def format_result(r: Result) -> str:
    status = "ok  " if r.ok else "FAIL"
    worst = {k: f"{v:.2e}" for k, v in r.errors.items()}
    extra = f" f32x={r.float32_excess:.3g}" if r.float32_excess is not None else ""
    struct = f" structure: {'; '.join(r.structure[:2])}" if r.structure else ""
    notes = f" -- {' | '.join(r.notes)}" if r.notes else ""
    return f"{status} {r.verdict:6} {r.kind:15} {r.name:28} {r.seconds:6.1f}s{extra}{struct} {worst}{notes}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="ports to verify (default: the whole catalog)")
    parser.add_argument("--quick", action="store_true", help="skip 224 x 224 and the four-variant structure check")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)
    entries = load_catalog()
    if args.names:
        unknown = set(args.names) - {e.name for e in entries}
        if unknown:
            parser.error(f"not in the catalog: {', '.join(sorted(unknown))}")
        entries = [e for e in entries if e.name in args.names]
    results = []
    for entry in entries:
        try:
            result = verify_entry(entry, quick=args.quick)
        except Exception as exc:  # a port that crashes is a failed verification, not a crash of the tool
            result = Result(entry.name, entry.verdict, entry.kind, ok=False, notes=[f"{type(exc).__name__}: {exc}"])
        results.append(result)
        print(format_result(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    failed = [r.name for r in results if not r.ok]
    print(f"{len(results) - len(failed)}/{len(results)} ports verified" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "ports"
    sys.exit(main())
