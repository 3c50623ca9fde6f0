"""Random weights initialised like the official code (spec clause 2.3).

Conv2d and Linear weights: truncated normal, mean 0, std 0.02, cut at the absolute values -2 and
2 (timm's ``trunc_normal_`` defaults, which at this std never bind); their biases zero;
LayerNormGeneral, LayerNorm and Scale weights one; the LayerNorm bias zero.
"""

from __future__ import annotations

import numpy as np

from parcnetv2.reference.architecture import Config, parameter_shapes

INIT_STD = 0.02
INIT_CUTOFF = 2.0


def truncated_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Normal(0, 0.02) samples, redrawn until inside [-2, 2]; float32 like PyTorch parameters."""
    values = rng.normal(0.0, INIT_STD, size=shape)
    outside = np.abs(values) > INIT_CUTOFF
    while outside.any():
        values[outside] = rng.normal(0.0, INIT_STD, size=int(outside.sum()))
        outside = np.abs(values) > INIT_CUTOFF
    return values.astype(np.float32)


def initial_state_dict(config: Config, seed: int | None = None) -> dict[str, np.ndarray]:
    """A state_dict for ``config`` with the official initialisation, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in parameter_shapes(config).items():
        leaf = name.rsplit(".", 1)[-1]
        is_matrix = leaf == "weight" and len(shape) >= 2  # Conv2d and Linear weights
        if is_matrix:
            state[name] = truncated_normal(rng, shape)
        elif leaf == "bias":
            state[name] = np.zeros(shape, np.float32)
        else:  # norm weights and Scale vectors
            state[name] = np.ones(shape, np.float32)
    return state
