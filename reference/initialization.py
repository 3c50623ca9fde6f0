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


def random_state_dict(config: Config, seed: int | None = None, dtype=np.float64) -> dict[str, np.ndarray]:
    """Random weights that are deliberately not init-like, for testing (every parameter matters).

    Matrices: normal with std gain / sqrt(fan_in), the gain log-uniform in [0.5, 2] per tensor
    (activations stay of order one through any depth); biases: normal, std 0.3; norm weights and
    scales: uniform in [0.5, 1.5] with random signs, so a missing scale or a wrong norm shows.
    """
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in parameter_shapes(config).items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "weight" and len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
            gain = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
            values = rng.standard_normal(shape) * gain / np.sqrt(fan_in)
        elif leaf == "bias":
            values = rng.normal(0.0, 0.3, size=shape)
        else:
            values = rng.uniform(0.5, 1.5, size=shape) * rng.choice((-1.0, 1.0), size=shape)
        state[name] = values.astype(dtype)
    return state
