"""The command line's policy on non-finite values (spec clause 1.4): it computes on finite values
only. An input holding NaN or ±inf, or logits that come out non-finite (weights with non-finite or
extreme values), are bad input: one line naming how many values and where the first one is, exit
code 2, instead of a NaN "top-5". The Python APIs compute on any values (clause 1.4)."""

from __future__ import annotations

import numpy as np

from parcnetv2.errors import InputError

__all__ = ["require_finite"]


def require_finite(x: np.ndarray, what: str, hint: str | None = None) -> None:
    """InputError unless every value of ``x`` is finite; ``what`` names the array in the message,
    ``hint`` says what to check."""
    finite = np.isfinite(x)
    if finite.all():
        return
    count = finite.size - int(np.count_nonzero(finite))
    first = tuple(int(i) for i in np.unravel_index(int(np.argmin(finite)), x.shape))
    value = x[first]
    suffix = f"; {hint}" if hint else "; the command line computes on finite values only"
    raise InputError(f"{what} has {count} non-finite value{'s' if count > 1 else ''} (NaN or ±inf), "
                     f"the first {value} at index {first}{suffix}")  # fmt: skip
