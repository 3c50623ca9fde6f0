"""The four official variants and the shared architecture constants (spec clauses 2 and 9).

All numbers come from ``variants.toml``; this module only gives them types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from parcnetv2.errors import InputError
from parcnetv2.spec.data import load_toml

__all__ = ["Variant", "architecture_defaults", "get_variant", "variant_names"]


@dataclass(frozen=True)
class Variant:
    """One official variant: depths and dims per stage, plus the official anchors."""

    name: str
    depths: tuple[int, ...]
    dims: tuple[int, ...]
    params: int  # exact parameter count of the official code, 1000 classes
    gmacs_224: float  # MACs at 224x224 in G, three decimals
    paper: dict[str, float]


def architecture_defaults() -> dict[str, Any]:
    """Constructor arguments shared by every variant (clause 2), as read from variants.toml."""
    return dict(load_toml("variants.toml")["defaults"])


def variant_names() -> list[str]:
    """Names of the official variants, smallest first."""
    return list(load_toml("variants.toml")["variants"])


def get_variant(name: str) -> Variant:
    """The variant called ``name``; InputError naming the known ones otherwise."""
    table = load_toml("variants.toml")["variants"]
    if name not in table:
        raise InputError(f"unknown variant {name!r}; known variants: {', '.join(table)}")
    row = table[name]
    return Variant(
        name=name,
        depths=tuple(row["depths"]),
        dims=tuple(row["dims"]),
        params=int(row["params"]),
        gmacs_224=float(row["gmacs_224"]),
        paper=dict(row["paper"]),
    )
