"""Argument types of the ``parcnetv2`` command line, with the ranges it accepts (spec clause 15.6).

Every number a user types is checked against a documented range when the arguments are parsed, so
that a negative seed, a zero count or ``--threads 2147483648`` is one line on stderr and exit code 2
before anything runs. The maxima are far above any real use and keep the work a command may start
bounded.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from parcnetv2.cext import MAX_THREADS  # OpenMP threads: the C library's PCN_MAX_THREADS, its one home

__all__ = [
    "MAX_BATCH",
    "MAX_CLASSES",
    "MAX_RESOLUTION",
    "MAX_RUNS",
    "MAX_SEED",
    "MAX_THREADS",
    "int_in",
    "name_list",
]

MAX_BATCH = 1024  # images per call in bench
MAX_RESOLUTION = 4096  # square input side in params and bench
MAX_RUNS = 100_000  # timed and warm-up runs in bench
MAX_CLASSES = 100_000  # classes of a random model's head (ImageNet-21k has 21,841)
MAX_SEED = 2**63 - 1


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]; anything else is a one-line usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {text[:40]!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {value}")
        return value

    parse.__name__ = f"integer from {low} to {high}"  # argparse names the type in its messages
    return parse


def name_list(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    """An argparse type: a non-empty comma-separated list of names (checked against ``choices``
    by the command, which names the unknown ones)."""

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        if not names:
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(choices)}, got {text!r}")
        return names

    parse.__name__ = "list of names"
    return parse
