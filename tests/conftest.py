"""Shared test settings."""

from __future__ import annotations

import contextlib

import pytest

try:
    import torch
except ImportError:  # torch is an optional extra; its tests skip without it
    torch = None


def pytest_addoption(parser):
    parser.addoption(
        "--zoo",
        choices=("ci", "all", "none"),
        default="ci",
        help="ports of tests/ports run through the conformance harness: the CI subset (default), all, none",
    )


@pytest.fixture(scope="session", autouse=True)
def single_threaded_libraries():
    """Run NumPy's BLAS and PyTorch single-threaded during the tests.

    The tests run as two xdist workers on two cores and their arrays are small: threaded BLAS or
    torch there oversubscribes the cores and slows runs down many times. Tests of thread counts
    pass them explicitly (the C kernels take a per-call thread count).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the `test` extra installs it; without it only torch is limited
        blas = contextlib.nullcontext()
    else:
        blas = threadpool_limits(limits=1, user_api="blas")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    try:
        with blas:
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)


@pytest.fixture
def cli(capsys):
    """Run the ``parcnetv2`` command line in-process: ``cli(*argv) -> (exit code, stdout, stderr)``.
    argparse's own errors arrive as SystemExit and are returned the same way."""
    from parcnetv2.cli import main

    def run(*argv):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def assert_usage_error():
    """``check(code, err, *fragments)``: exit code 2 and one stderr line containing each fragment."""

    def check(code, err, *fragments):
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        for fragment in fragments:
            assert fragment in lines[0], lines[0]

    return check
