"""Exact GELU (spec clause 8.1): x * Phi(x) with the error function, not the tanh approximation."""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from parcnetv2.reference.dtypes import as_input


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU(x) = x/2 * (1 + erf(x / sqrt(2))), elementwise; any shape, dtype kept. Clause 8.1."""
    x = as_input(x)
    return 0.5 * x * (1.0 + erf(x / np.sqrt(x.dtype.type(2.0))))
