"""The vectorized erf of the fused kernels (spec clause 15.3): where its coefficients come from, and
how accurate it is.

    python -m parcnetv2.cext.erf_accuracy measure [--stride 1] [--isa avx2]
    python -m parcnetv2.cext.erf_accuracy fit

``measure`` runs ``parcnetv2.cext.erf`` on every float32 in [0, 4] (``--stride k``: every k-th
bit pattern) and reports the largest error in units in the last place of the float32 result,
against SciPy's float64 erf of the same input. Negative inputs are the mirror image (the kernel
computes |x| and copies the sign back; ``measure`` checks that on a sample) and inputs >= 4 give
exactly +-1, which is erf rounded to float32 there.

``fit`` recomputes the coefficient table of ``src/fused_impl.h``: weighted minimax fits (Lawson's
iteration on a dense grid, weights = the error in float32 ulps of erf) with the coefficients
rounded to float32 one at a time from the constant term up, each later fit absorbing the earlier
roundings. |x| < 1: erf(x) = x + x q(x^2), q of degree 6; |x| >= 1: 1 - exp(p(min(|x|, 4))), p of
degree 9 approximating log(erfc); exp(r) = 1 + r + r^2 P(r), P of degree 4 on |r| <= ln 2 / 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
from scipy.special import erf as erf64
from scipy.special import erfc as erfc64

__all__ = ["CLAIMED_MAX_ULP", "SCALAR_MAX_ULP", "fit", "measure", "ulp_error"]

# The accuracy claimed for the SIMD ISAs, which use fused multiply-add (clause 15.3): measured
# 1.086 ulp with AVX2 over every float32 in [0, 4] (worst near x = 1.06, where the exp branch
# starts), 0.94 ulp with NEON on the C tests' sweep under qemu.
CLAIMED_MAX_ULP = 1.1
# The scalar path rounds every product (-ffp-contract=off): 1.384 ulp over every float32 in [0, 4].
SCALAR_MAX_ULP = 1.4

_FOUR = 0x40800000  # bit pattern of 4.0f


def ulp_error(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|y - erf(x)| in units of the float32 spacing at erf(x) (float64 reference)."""
    ref = erf64(x.astype(np.float64))
    spacing = np.spacing(np.maximum(np.abs(ref).astype(np.float32), np.finfo(np.float32).smallest_subnormal))
    return np.abs(y.astype(np.float64) - ref) / spacing.astype(np.float64)


def measure(stride: int = 1, isa: str | None = None, chunk: int = 1 << 22) -> tuple[float, float]:
    """(largest ulp error, the input where it occurs) over the float32 values in [0, 4]."""
    from parcnetv2 import cext

    worst, where = 0.0, 0.0
    for start in range(0, _FOUR + 1, chunk * stride):
        bits = np.arange(start, min(start + chunk * stride, _FOUR + 1), stride, dtype=np.uint32)
        x = bits.view(np.float32)
        err = ulp_error(x, cext.erf(x, isa=isa))
        i = int(np.argmax(err))
        if err[i] > worst:
            worst, where = float(err[i]), float(x[i])
    sample = np.linspace(-6, 6, 10001, dtype=np.float32)
    if not np.array_equal(cext.erf(-sample, isa=isa), -cext.erf(sample, isa=isa)):
        raise AssertionError("erf is not odd on the sample")
    return worst, where


# ---------------------------------------------------------------------------- the fit


def _lawson(v: np.ndarray, y: np.ndarray, w: np.ndarray, iterations: int = 80) -> np.ndarray:
    """Weighted minimax coefficients (columns of v) by Lawson's iteratively reweighted least squares."""
    lw = np.full(len(y), 1.0 / len(y))
    for _ in range(iterations):
        sw = np.sqrt(lw) * w
        c, *_ = np.linalg.lstsq(v * sw[:, None], sw * y, rcond=None)
        e = np.abs(w * (v @ c - y))
        lw = lw * e
        lw /= lw.sum()
    return c


def _fit_rounded(x: np.ndarray, y: np.ndarray, w: np.ndarray, degree: int) -> np.ndarray:
    """Polynomial coefficients (highest degree first), each rounded to float32 after a refit of
    the remaining ones."""
    v = np.vander(x, degree + 1, increasing=True)
    fixed: list[np.float32] = []
    while len(fixed) <= degree:
        k = len(fixed)
        rest = y - (v[:, :k] @ np.array(fixed, np.float64) if k else 0.0)
        fixed.append(np.float32(_lawson(v[:, k:], rest, w)[0]))
    return np.array(fixed[::-1], np.float32)


def _ulp64(r: np.ndarray) -> np.ndarray:
    return np.spacing(np.abs(r).astype(np.float32)).astype(np.float64)


def fit() -> dict[str, np.ndarray]:
    """The coefficient tables A (q), B (p) and E (P) of the module docstring."""
    s = np.linspace(1e-10, 1.0, 40001)
    x = np.sqrt(s)
    a = _fit_rounded(s, erf64(x) / x - 1.0, x / _ulp64(erf64(x)), 6)
    t = np.linspace(1.0, 4.0, 40001)
    b = _fit_rounded(t, np.log(erfc64(t)), erfc64(t) / _ulp64(erf64(t)), 9)
    r = np.linspace(-0.35, 0.35, 20000)
    e = _fit_rounded(r, (np.exp(r) - 1.0 - r) / r**2, r**2 / np.exp(r), 4)
    return {"A": a, "B": b, "E": e}


def _c_literal(v: np.float32) -> str:
    return np.format_float_scientific(v, unique=True) + "f"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parcnetv2.cext.erf_accuracy", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="largest ulp error over the float32 values in [0, 4]")
    m.add_argument("--stride", type=int, default=1, help="test every k-th float32 (default 1: all)")
    m.add_argument("--isa", default=None, help="scalar, avx2, avx512 or neon (default: the best here)")
    sub.add_parser("fit", help="print the coefficient table of src/fused_impl.h")
    args = parser.parse_args(argv)
    if args.command == "measure":
        worst, where = measure(args.stride, args.isa)
        print(
            f"erf ({args.isa or 'best ISA'}): max {worst:.4f} ulp at x = {where!r} (every {args.stride}. "
            "float32 in [0, 4])"
        )
    else:
        names = {"A": "PCN_ERF_A", "B": "PCN_ERF_B", "E": "PCN_EXP_E"}
        for key, coefficients in fit().items():
            degree = len(coefficients) - 1
            for i, c in enumerate(coefficients):
                print(f"#define {names[key]}{degree - i} {_c_literal(c)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
