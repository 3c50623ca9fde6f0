"""Golden test vectors for the C library's self-check (spec clause 12; format in pcn_golden.h)
and whole-model golden cases for the C model (spec clause 16.7).

    python -m parcnetv2.cext.golden --out DIR [--no-models]

writes one little-endian ``.pcng`` file per kernel case into DIR, computed by the NumPy reference
in float64 from float32 inputs, and per whole-model case a ``.pcnm`` manifest with its weights
(``.safetensors``), input (raw float32 NCHW) and expected logits (raw float64, the reference in
float64 on the float32 weights and input); ``make -C cext selfcheck VECTORS=DIR`` (or
``pcn_selfcheck DIR/*.pcng DIR/*.pcnm`` on a device) checks the library against them. Vectors are
generated, not committed.

Format version 1 (all little-endian): a 128-byte header (magic "PCNGOLD\\0", version, byte-order
mark 0x01020304, op, layout, path, flags, N C H W KH KW PH PW as u64, reduction length n as u64,
tolerance factor c and unit roundoff u as f64, array count), then arrays, each a 56-byte header
(16-byte NUL-padded name, dtype 1=f32 / 2=f64, ndim, 4 u64 dims) followed by the data in C order.
"""

from __future__ import annotations

import argparse
import os
import struct
from dataclasses import dataclass, field

import numpy as np

from parcnetv2 import reference as ref
from parcnetv2.reference.architecture import Config
from parcnetv2.reference.checkpoint import write_state_dict
from parcnetv2.reference.initialization import random_state_dict
from parcnetv2.spec.tolerance import reduction_length, relative_tolerance, safety_factor, unit_roundoff

MAGIC = b"PCNGOLD\x00"
VERSION = 1
BOM = 0x01020304
HEADER = struct.Struct("<8sIIIIII8QQddII")
ARRAY = struct.Struct("<16sII4Q")
OPS = {"dwconv2d": 1, "oversized_conv": 2, "parc_spatial": 3, "reparameterize": 4}
LAYOUTS = {"NCHW": 0, "NHWC": 1}
PATHS = {"auto": 0, "separable": 1, "dense": 2}
assert HEADER.size == 128 and ARRAY.size == 56


@dataclass
class Case:
    """One golden case: op, layout, path, the eight sizes, reduction length, arrays by name."""

    op: str
    layout: str = "NCHW"
    path: str = "auto"
    dims: tuple[int, ...] = (0,) * 8  # N, C, H, W, KH, KW, PH, PW
    n: int = 1
    c: float = 4.0
    u: float = 2.0**-24
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def write_case(path: str, case: Case) -> None:
    has_bias = 1 if "bias" in case.arrays else 0
    head = HEADER.pack(
        MAGIC,
        VERSION,
        BOM,
        OPS[case.op],
        LAYOUTS[case.layout],
        PATHS[case.path],
        has_bias,
        *[int(d) for d in case.dims],
        int(case.n),
        float(case.c),
        float(case.u),
        len(case.arrays),
        0,
    )
    with open(path, "wb") as fh:
        fh.write(head)
        for name, arr in case.arrays.items():
            dtype = 1 if arr.dtype == np.float32 else 2
            arr = np.ascontiguousarray(arr, dtype="<f4" if dtype == 1 else "<f8")
            dims = list(arr.shape) + [0] * (4 - arr.ndim)
            fh.write(ARRAY.pack(name.encode().ljust(16, b"\x00"), dtype, arr.ndim, *dims))
            fh.write(arr.tobytes())


def read_case(path: str) -> Case:
    with open(path, "rb") as fh:
        data = fh.read()
    fields = HEADER.unpack_from(data, 0)
    magic, version, bom = fields[0], fields[1], fields[2]
    if magic != MAGIC or version != VERSION or bom != BOM:
        raise ValueError(f"{path}: not a version-{VERSION} golden vector file")
    op, layout, pth, _flags = fields[3:7]
    dims, n, c, u, count = fields[7:15], fields[15], fields[16], fields[17], fields[18]
    inv = lambda d, v: next(k for k, x in d.items() if x == v)  # noqa: E731
    case = Case(inv(OPS, op), inv(LAYOUTS, layout), inv(PATHS, pth), tuple(dims), n, c, u)
    off = HEADER.size
    for _ in range(count):
        name, dtype, ndim, *d = ARRAY.unpack_from(data, off)
        off += ARRAY.size
        shape = tuple(d[:ndim])
        dt = np.dtype("<f4" if dtype == 1 else "<f8")
        size = int(np.prod(shape)) * dt.itemsize
        case.arrays[name.rstrip(b"\x00").decode()] = np.frombuffer(data, dt, int(np.prod(shape)), off).reshape(shape)
        off += size
    return case


def _to_layout(a: np.ndarray, layout: str) -> np.ndarray:
    return a if layout == "NCHW" else np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def _f32(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def cases(seed: int = 20230101) -> list[tuple[str, Case]]:
    """The standard set: every op, both layouts, odd shapes and stage-like shapes."""
    rng = np.random.default_rng(seed)
    c_factor, u = safety_factor(), unit_roundoff(np.float32)
    out: list[tuple[str, Case]] = []
    dense_shapes = [  # N, C, H, W, KH, KW, PH, PW, bias
        (2, 3, 5, 7, 3, 3, 1, 1, True),
        (1, 5, 9, 4, 7, 7, 3, 3, False),
        (1, 17, 6, 11, 5, 3, 0, 4, True),
        (1, 3, 4, 4, 9, 9, 4, 4, False),
        (1, 16, 7, 7, 13, 13, 6, 6, False),
    ]
    for N, C, H, W, KH, KW, PH, PW, bias in dense_shapes:
        x, w = _f32(rng, N, C, H, W), _f32(rng, C, 1, KH, KW)
        b = _f32(rng, C) if bias else None
        x64, w64 = x.astype(np.float64), w.astype(np.float64)
        b64 = None if b is None else b.astype(np.float64)
        y = ref.depthwise_conv2d(x64, w64, b64, padding=(PH, PW))
        m = ref.depthwise_conv2d(np.abs(x64), np.abs(w64), None if b64 is None else np.abs(b64), padding=(PH, PW))
        for layout in LAYOUTS:
            arrays = {"x": _to_layout(x, layout), "weight": w}
            if b is not None:
                arrays["bias"] = b
            arrays.update(expected=_to_layout(y, layout), magnitude=_to_layout(m, layout))
            out.append(
                (
                    f"dwconv2d_{layout}_n{N}c{C}h{H}w{W}k{KH}x{KW}p{PH}x{PW}",
                    Case(
                        "dwconv2d",
                        layout,
                        "auto",
                        (N, C, H, W, KH, KW, PH, PW),
                        reduction_length("depthwise_conv2d", kernel=(KH, KW), size=(H, W), bias=bias),
                        c_factor,
                        u,
                        arrays,
                    ),
                )
            )
    sep_shapes = [  # N, C, H, W, KV, KW, parc paths
        (1, 3, 8, 8, 15, 15, ("separable", "dense", "auto")),
        (2, 5, 7, 12, 13, 5, ("separable", "dense")),
        (1, 9, 1, 6, 3, 11, ("separable",)),
        (1, 16, 7, 7, 13, 13, ("auto",)),
        (1, 33, 14, 14, 27, 27, ("separable",)),
        (1, 4, 10, 9, 4, 6, ()),  # even kernels: oversized_conv only (output H+1 x W+1)
    ]
    for N, C, H, W, KV, KW, paths in sep_shapes:
        x, kh, kw, k7 = _f32(rng, N, C, H, W), _f32(rng, C, 1, KV, 1), _f32(rng, C, 1, 1, KW), _f32(rng, C, 1, 7, 7)
        x64, kh64, kw64, k764 = (a.astype(np.float64) for a in (x, kh, kw, k7))
        oc = ref.oversized_conv(x64, kh64, kw64)
        oc_m = ref.oversized_conv(np.abs(x64), np.abs(kh64), np.abs(kw64))
        dims = (N, C, H, W, KV, KW, KV // 2, KW // 2)
        n_oc = reduction_length("oversized_conv", kernel=(KV, KW), size=(H, W))
        n_parc = reduction_length("parc_spatial", kernel=(KV, KW), size=(H, W))
        for layout in LAYOUTS:
            arrays = {
                "x": _to_layout(x, layout),
                "k_h": kh,
                "k_w": kw,
                "expected": _to_layout(oc, layout),
                "magnitude": _to_layout(oc_m, layout),
            }
            out.append(
                (
                    f"oversized_{layout}_n{N}c{C}h{H}w{W}k{KV}x{KW}",
                    Case("oversized_conv", layout, "auto", dims, n_oc, c_factor, u, arrays),
                )
            )
            if not paths:
                continue
            y = oc + ref.depthwise_conv2d(x64, k764)
            m = oc_m + ref.depthwise_conv2d(np.abs(x64), np.abs(k764))
            for pth in paths:
                arrays = {
                    "x": _to_layout(x, layout),
                    "k_h": kh,
                    "k_w": kw,
                    "k7": k7,
                    "expected": _to_layout(y, layout),
                    "magnitude": _to_layout(m, layout),
                }
                out.append(
                    (
                        f"parc_{layout}_{pth}_n{N}c{C}h{H}w{W}k{KV}x{KW}",
                        Case("parc_spatial", layout, pth, dims, n_parc, c_factor, u, arrays),
                    )
                )
    for C, KV, KW in [(3, 13, 9), (4, 3, 5), (2, 7, 7)]:
        kh, kw, k7 = _f32(rng, C, 1, KV, 1), _f32(rng, C, 1, 1, KW), _f32(rng, C, 1, 7, 7)
        kh64, kw64, k764 = (a.astype(np.float64) for a in (kh, kw, k7))
        arrays = {
            "k_h": kh,
            "k_w": kw,
            "k7": k7,
            "expected": ref.reparameterize(kh64, kw64, k764),
            "magnitude": ref.reparameterize(np.abs(kh64), np.abs(kw64), np.abs(k764)),
        }
        out.append(
            (
                f"reparam_c{C}k{KV}x{KW}",
                Case("reparameterize", "NCHW", "auto", (0, C, 0, 0, KV, KW, 0, 0), 2, c_factor, u, arrays),
            )
        )
    return out


# ------------------------------------------------------------------ whole models (clause 16.7)

MODEL_FORMAT = 1
#: (name, variant or custom config, input shape (N, 3, H, W), interpolate). The interpolated case
#: is small: a custom configuration whose kernels are resized to 2H-1 and 2W-1 per map.
MODEL_CASES = (
    ("xt_64", "parcnetv2_xt", (1, 3, 64, 64), False),
    ("xt_224", "parcnetv2_xt", (1, 3, 224, 224), False),
    (
        "custom_interpolate_2x40x36",
        dict(depths=(1, 1, 2, 1), dims=(16, 24, 32, 48), global_kernel_sizes=(13, 9, 7, 5), num_classes=37),
        (2, 3, 40, 36),
        True,
    ),
)


def _oversized_line(interpolate: bool | int) -> str:
    if interpolate is True:
        return "interpolate"
    if interpolate is False:
        return "fixed"
    return f"size {int(interpolate)}"


def write_model_case(out_dir: str, name: str, config, shape, interpolate, seed: int) -> str:
    """One whole-model case: weights (.safetensors, official names), input (float32), the float64
    reference's logits and the manifest naming them with the clause 11.3 tolerance."""
    cfg = (
        Config.from_variant(config, interpolate=interpolate)
        if isinstance(config, str)
        else Config(**config, interpolate=interpolate)
    )
    weights = random_state_dict(cfg, seed, np.float32)
    x = np.random.default_rng(seed + 1).standard_normal(shape).astype(np.float32)
    model = ref.from_state_dict(weights, interpolate=interpolate)
    logits = model(x.astype(np.float64))
    base = os.path.join(out_dir, f"model_{name}")
    write_state_dict(base + ".safetensors", weights)
    x.astype("<f4").tofile(base + ".input.f32")
    np.ascontiguousarray(logits, dtype="<f8").tofile(base + ".logits.f64")
    lines = [
        "# parcnetv2 whole-model golden case (spec clause 16.7), written by python -m parcnetv2.cext.golden",
        f"pcnm {MODEL_FORMAT}",
        f"weights {os.path.basename(base)}.safetensors",
        f"input {os.path.basename(base)}.input.f32",
        "shape " + " ".join(str(int(d)) for d in shape),
        f"oversized {_oversized_line(interpolate)}",
        f"expected {os.path.basename(base)}.logits.f64",
        f"classes {cfg.num_classes}",
        f"relative_tolerance {relative_tolerance(np.float32)!r}",
    ]
    with open(base + ".pcnm", "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return base + ".pcnm"


def generate(out_dir: str, seed: int = 20230101) -> list[str]:
    """Write the standard kernel cases into out_dir; returns the .pcng paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for i, (name, case) in enumerate(cases(seed)):
        path = os.path.join(out_dir, f"{i:02d}_{name}.pcng")
        write_case(path, case)
        paths.append(path)
    return paths


def generate_models(out_dir: str, seed: int = 20230101, names: tuple[str, ...] | None = None) -> list[str]:
    """Write the whole-model cases (all of MODEL_CASES, or those named) into out_dir; returns the
    .pcnm manifest paths."""
    os.makedirs(out_dir, exist_ok=True)
    return [
        write_model_case(out_dir, name, config, shape, interpolate, seed + 100 * i)
        for i, (name, config, shape, interpolate) in enumerate(MODEL_CASES)
        if names is None or name in names
    ]


def read_model_case(manifest: str) -> dict:
    """A .pcnm manifest: its fields, with the weights, input and expected logits' paths resolved
    and the input and logits loaded."""
    fields: dict = {}
    with open(manifest, encoding="utf-8") as fh:
        for line in fh:
            if line.strip() and not line.startswith("#"):
                key, _, value = line.strip().partition(" ")
                fields[key] = value
    folder = os.path.dirname(manifest)
    shape = tuple(int(v) for v in fields["shape"].split())
    mode = fields["oversized"]
    return {
        "weights": os.path.join(folder, fields["weights"]),
        "input": np.fromfile(os.path.join(folder, fields["input"]), "<f4").reshape(shape),
        "expected": np.fromfile(os.path.join(folder, fields["expected"]), "<f8").reshape(shape[0], -1),
        "interpolate": False if mode == "fixed" else True if mode == "interpolate" else int(mode.split()[1]),
        "relative_tolerance": float(fields["relative_tolerance"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory to write the .pcng files into")
    parser.add_argument("--seed", type=int, default=20230101)
    parser.add_argument("--no-models", action="store_true", help="kernel vectors only, no whole-model cases")
    args = parser.parse_args(argv)
    paths = generate(args.out, args.seed)
    models = [] if args.no_models else generate_models(args.out, args.seed)
    print(f"wrote {len(paths)} golden vector files and {len(models)} whole-model cases to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
