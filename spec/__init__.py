"""The normative spec of ParCNetV2 (SPEC.md) and the data the code reads from it.

``variants.toml`` holds the variants and the official anchors (clause 9); ``tolerance.toml``
the constants of the tolerance policy (clause 11).
"""

from parcnetv2.spec.data import load_toml, spec_text
from parcnetv2.spec.variants import Variant, architecture_defaults, get_variant, variant_names

__all__ = [
    "Variant",
    "architecture_defaults",
    "get_variant",
    "load_toml",
    "spec_text",
    "variant_names",
]
