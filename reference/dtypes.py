"""Compute-dtype rule of the reference (spec clause 1.3): the input's dtype decides, weights follow."""

from __future__ import annotations

from typing import Any

import numpy as np

from parcnetv2.errors import InputError

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_input(x: Any, name: str = "x") -> np.ndarray:
    """Return ``x`` as an ndarray of float32 or float64; InputError for any other dtype."""
    arr = np.asarray(x)
    if arr.dtype not in SUPPORTED_DTYPES:
        raise InputError(f"{name} has dtype {arr.dtype}; the reference computes in float32 or float64 only")
    return arr


def cast(weight: Any, dtype: np.dtype) -> np.ndarray:
    """A weight in the compute dtype (no copy when it already is)."""
    return np.asarray(weight, dtype=dtype)
