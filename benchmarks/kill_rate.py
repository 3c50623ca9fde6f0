"""Kill rate of the conformance harness (spec clause 14.10), as the README's table.

Run: ``python benchmarks/kill_rate.py [--seed N]``. Every mutant of
``parcnetv2.conformance.mutants`` runs under the default profile without ``-x``, so the table
lists every test that rejects it (a parametrized test once, with the number of its failing
cases); every legitimate re-implementation must pass.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

from parcnetv2.conformance.mutants import LEGITIMATE, MUTANTS, suite_args
from parcnetv2.conformance.runner import run_suite


def outcome(name: str, seed: int, folder: Path) -> tuple[int, list[str]]:
    """Exit code and the tests that failed, parametrized ones counted under their base name."""
    args = [*suite_args(name, seed), "-q"]
    result = run_suite(args, report=folder / f"{name}.json")
    failed = Counter(test.split("[")[0] for test, t in result.tests().items() if t["outcome"] in ("failed", "error"))
    return result.returncode, [f"`{test}`" + (f" ×{n}" if n > 1 else "") for test, n in sorted(failed.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    seed = parser.parse_args().seed
    killed = 0
    with tempfile.TemporaryDirectory() as tmp:
        print("| mutant | what is wrong | exit | rejected by |\n|---|---|---|---|")
        for name, backend in MUTANTS.items():
            code, failed = outcome(name, seed, Path(tmp))
            killed += code == 1
            print(f"| `{name}` | {backend.description} | {code} | {', '.join(failed)} |")
        print(
            f"\nKill rate: {killed}/{len(MUTANTS)} ({100 * killed / len(MUTANTS):.0f} %), default profile, "
            f"seed {seed}.\n"
        )
        print("| legitimate re-implementation | what differs | exit |\n|---|---|---|")
        for name, backend in LEGITIMATE.items():
            code, _ = outcome(name, seed, Path(tmp))
            print(f"| `{name}` | {backend.description} | {code} |")


if __name__ == "__main__":
    main()
