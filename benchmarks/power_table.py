"""Power of the whole-model checks (spec clause 11.10), as the conformance README's table.

Run: ``python benchmarks/power_table.py [--backends numpy torch onnx engine] [--variants
parcnetv2_xt parcnetv2_tiny] [--seeds 0 1]``. For each backend, variant and seed it runs
``pytest conformance/test_model.py -k test_variant_model --backend B --variant V --seed S`` (CI
profile) and prints, from the JSON report: the worst error at the logits as a share of its bound
(target: at least 1/30, so the bound is not loose), the logits' bound relative to their RMS, and
the largest stage-output bound relative to that output's RMS (target: at most 1e-3).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from parcnetv2.conformance.runner import run_suite


def row(backend: str, variant: str, seed: int, folder: Path) -> str:
    args = ["conformance/test_model.py", "-k", "test_variant_model", "--backend", backend, "--variant", variant]
    args += ["--conformance-profile", "ci", "--seed", str(seed), "-q"]
    result = run_suite(args, report=folder / f"{backend}-{variant}-{seed}.json")
    tests = [t for t in (result.report or {}).get("tests", []) if "test_variant_model" in t["nodeid"]]
    if not tests or "growth" not in tests[0]:
        return f"| {backend} | {variant} | {seed} | exit {result.returncode}: no report | | | |"
    test = tests[0]
    stages = max(test["growth"], key=lambda g: g["bound/rms"])
    share = test.get("logits_error/bound", float("nan"))
    return (
        f"| {backend} | {variant} | {seed} | {test['outcome']} | {share:.3f} | {test['power']:.1e} "
        f"| {stages['bound/rms']:.1e} (`{stages['module']}`) |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["numpy", "torch", "onnx", "engine"])
    parser.add_argument("--variants", nargs="+", default=["parcnetv2_xt", "parcnetv2_tiny"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    args = parser.parse_args()
    print(
        "| backend | variant | seed | outcome | logits: worst error / bound | logits: bound / RMS "
        "| largest stage bound / RMS |"
    )
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            for backend in args.backends:
                for seed in args.seeds:
                    print(row(backend, variant, seed, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
