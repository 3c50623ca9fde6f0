"""Access to the spec's machine-readable data files (spec clause 9 and 11)."""

from __future__ import annotations

import functools
import sys
from importlib import resources
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


@functools.cache
def load_toml(name: str) -> dict[str, Any]:
    """Parse one of the spec's TOML files shipped inside ``parcnetv2.spec``."""
    text = resources.files("parcnetv2.spec").joinpath(name).read_text(encoding="utf-8")
    return tomllib.loads(text)


def spec_text() -> str:
    """The normative spec document, SPEC.md."""
    return resources.files("parcnetv2.spec").joinpath("SPEC.md").read_text(encoding="utf-8")
