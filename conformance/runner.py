"""Running the conformance suite from Python (spec clause 14.1): one pytest subprocess per call.

Used by the project's tests of the harness, the sensitivity suite, the runtime benchmark and
the kill-rate script; useful in any CI script that wants the exit code and the JSON report::

    result = run_suite(["conformance", "--backend", "torch", "--conformance-profile", "ci"], report=path)
    result.returncode, result.report["counts"]
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["REPOSITORY", "SuiteResult", "run_suite"]

# The source checkout this package was installed from (where ``pytest conformance`` runs).
REPOSITORY = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class SuiteResult:
    """Exit code, captured output and (when ``report`` was given) the parsed JSON report."""

    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None

    def tests(self) -> dict[str, dict[str, Any]]:
        """The report's test entries by name (the node id without its file)."""
        return {t["nodeid"].split("::", 1)[1]: t for t in (self.report or {}).get("tests", [])}


def run_suite(
    args: Sequence[str],
    *,
    report: Path | None = None,
    cwd: Path | None = None,
    pythonpath: Path | None = None,
    timeout: float | None = None,
) -> SuiteResult:
    """``python -m pytest ARGS`` in a subprocess (cwd: the repository), no cache written;
    ``report`` adds ``--report`` and reads it back; ``pythonpath`` is prepended to PYTHONPATH."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider"]
    if report is not None:
        command += ["--report", str(report)]
    done = subprocess.run(command, cwd=cwd or REPOSITORY, env=env, capture_output=True, text=True, timeout=timeout)
    data = json.loads(Path(report).read_text()) if report is not None and Path(report).is_file() else None
    return SuiteResult(done.returncode, done.stdout, done.stderr, data)
