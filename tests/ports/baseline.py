"""Run the conformance harness of this checkout on the ports and tabulate its verdicts.

    python tests/ports/baseline.py [NAME ...] [--profile default] [--seed 0] [--timeout 1800] [--markdown FILE]
    python tests/ports/baseline.py NAME ... --onnx DIR [--exporter torchscript|dynamo]

Each port runs in its own subprocess, from the repository root (the folder holding
``conformance/``), with ``PYTHONPATH`` pointing at ``tests/`` so that ``--model ports.NAME:factory``
imports:

    pytest conformance --backend torch --model ports.NAME:factory --conformance-profile P -q

With ``--onnx DIR`` the files ``export_onnx.py`` wrote are checked instead:

    pytest conformance --backend onnx --model DIR/NAME.EXPORTER.onnx --weights DIR/NAME.npz ...

Exit code 0 is "accepted", 1 "rejected" (test failures); anything else (usage error, crash,
timeout) is reported as such. A verdict is right when it matches the catalog's.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
SUMMARY = re.compile(r"=+ (.*\d+ (?:passed|failed|error|errors|skipped).*?) in [\d.]+s")


@dataclass
class Run:
    name: str
    expected: str
    command: str
    outcome: str  # accepted, rejected, error (rc N), timeout
    seconds: float
    summary: str

    @property
    def right(self) -> bool:
        return (self.expected, self.outcome) in (("accept", "accepted"), ("reject", "rejected"))


def command_for(name: str, profile: str, seed: str, onnx_dir: Path | None, exporter: str) -> list[str]:
    # -x: the first failure decides the verdict (any failure rejects), so the rest is not run.
    cmd = [sys.executable, "-m", "pytest", "conformance", "-q", "-x", "-p", "no:cacheprovider"]
    if onnx_dir is None:
        cmd += ["--backend", "torch", "--model", f"ports.{name}:factory"]
    else:
        model = onnx_dir / f"{name}.{exporter}.onnx"
        cmd += ["--backend", "onnx", "--model", str(model), "--weights", str(onnx_dir / f"{name}.npz")]
    return cmd + ["--conformance-profile", profile, "--seed", seed]


def run_port(name: str, expected: str, args: argparse.Namespace) -> Run:
    cmd = command_for(name, args.profile, args.seed, args.onnx, args.exporter)
    timeout, logs = args.timeout, args.logs
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    shown = " ".join(cmd[1:]).replace(str(ROOT) + "/", "")
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Run(name, expected, shown, "timeout", time.perf_counter() - start, f"> {timeout:.0f} s")
    seconds = time.perf_counter() - start
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
        (logs / f"{name}.log").write_text(f"$ {shown}\n{proc.stdout}\n{proc.stderr}")
    outcome = {0: "accepted", 1: "rejected"}.get(proc.returncode, f"error (rc {proc.returncode})")
    found = SUMMARY.findall(proc.stdout)
    summary = found[-1] if found else (proc.stdout.strip().splitlines() or proc.stderr.strip().splitlines() or [""])[-1]
    return Run(name, expected, shown, outcome, seconds, summary[:160])


def markdown(runs: list[Run], title: str) -> str:
    lines = [
        f"### {title}",
        "",
        "| port | catalog | harness | right | time (s) | pytest summary |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        right = "yes" if r.right else "**no**"
        lines.append(f"| {r.name} | {r.expected} | {r.outcome} | {right} | {r.seconds:.0f} | {r.summary} |")
    right = sum(r.right for r in runs)
    lines += ["", f"{right}/{len(runs)} verdicts right.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(TESTS))
    from ports.verify import load_catalog

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="ports (default: the whole catalog)")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--seed", default="0", help="the harness's --seed (an integer or 'random')")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--onnx", type=Path, help="check exported files from this folder instead of --model factories")
    parser.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript")
    parser.add_argument("--markdown", type=Path, help="append the table to this file")
    parser.add_argument("--logs", type=Path, help="keep each run's pytest output in this folder")
    args = parser.parse_args(argv)
    catalog = {e.name: e for e in load_catalog()}
    names = args.names or list(catalog)
    runs = []
    for name in names:
        run = run_port(name, catalog[name].verdict, args)
        runs.append(run)
        mark = "right" if run.right else "WRONG"
        print(f"{mark} {name:28} {run.expected:6} -> {run.outcome:12} {run.seconds:6.0f}s  {run.summary}", flush=True)
    kind = f"onnx ({args.exporter})" if args.onnx else "torch --model"
    table = markdown(runs, f"{kind}, profile {args.profile}, seed {args.seed}")
    if args.markdown:
        with args.markdown.open("a") as f:
            f.write(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
