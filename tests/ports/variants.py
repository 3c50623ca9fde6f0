"""The four official ParCNetV2 variants (depths and dims per stage) and the oversized kernel
lengths fixed at construction (2H - 1 for the 56, 28, 14 and 7 maps of a 224 x 224 input)."""

from __future__ import annotations

VARIANTS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "parcnetv2_xt": ((3, 3, 9, 2), (48, 96, 192, 320)),
    "parcnetv2_tiny": ((3, 3, 12, 3), (64, 128, 320, 512)),
    "parcnetv2_small": ((3, 9, 24, 3), (64, 128, 320, 512)),
    "parcnetv2_base": ((3, 9, 24, 3), (96, 192, 384, 576)),
}
GLOBAL_KERNEL_SIZES = (111, 55, 27, 13)
RES_SCALE_STAGES = (False, False, True, True)  # res_scale1/2 exist in stages 2 and 3 only
NUM_CLASSES = 1000


def lookup(variant: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(depths, dims) of an official variant; ValueError naming the known ones otherwise."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[variant]
