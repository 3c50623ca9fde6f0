"""Run one command under resource limits and report how it ended: a helper of the hostile-input
tests (``test_hostile_input.py``), itself run as a small child process.

    python limited_child.py SPEC_JSON   ->  prints one JSON line

SPEC: argv, cwd, stdout and stderr file paths, address-space and CPU limits, a wall timeout. The
result: the exit status (negative: killed by that signal), whether the timeout struck, the CPU
time and the peak resident memory of the command (``ru_maxrss`` from ``wait4``), and the wall time.

Why a helper process: Linux counts into a process's ``ru_maxrss`` the resident memory of the
process it was forked from, as it was at the fork (the copy it starts as), and keeps it across
exec. Forked from pytest (hundreds of MB), a command would report pytest's memory; forked from
this small interpreter it reports its own.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time


def main() -> None:
    spec = json.loads(sys.argv[1])

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (spec["address_space"], spec["address_space"]))
        resource.setrlimit(resource.RLIMIT_CPU, (spec["cpu_seconds"], spec["cpu_seconds"] + 1))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    with open(spec["stdout"], "wb") as out, open(spec["stderr"], "wb") as err:
        start = time.monotonic()
        # One thread for OpenMP and BLAS: their per-thread buffers would make the address space
        # (which the limit counts) grow with the machine's core count.
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        child = subprocess.Popen(
            spec["argv"], cwd=spec["cwd"], env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, preexec_fn=limit
        )
        timed_out = False
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > spec["timeout"]:
                timed_out = True
                child.kill()
                _, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(0.005)
        wall = time.monotonic() - start
    child.returncode = 0  # reaped above; keep Popen from waiting again
    code = os.waitstatus_to_exitcode(status)
    print(
        json.dumps(
            {
                "code": code,
                "timed_out": timed_out,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "peak_mib": usage.ru_maxrss / 1024.0,
                "wall_s": wall,
            }
        )
    )


if __name__ == "__main__":
    main()
