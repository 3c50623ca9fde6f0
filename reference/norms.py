"""Normalisations (spec clause 4): the official LayerNormGeneral and the standard LayerNorm."""

from __future__ import annotations

import numpy as np

from parcnetv2.reference.dtypes import as_input, cast


def layer_norm_general(x: np.ndarray, weight: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Official LayerNormGeneral over the last axis (clause 4.1), no bias.

    ``c = x - mean(x)``; ``y = c / max(||c||_2, eps) * weight``. Note the L2 norm of the centred
    vector, not the standard deviation: the result is the usual LayerNorm divided by sqrt(C).
    x: (..., C) (NHWC feature maps or (N, C)); weight: (C,). Returns x's shape and dtype.
    """
    x = as_input(x)
    centred = x - x.mean(axis=-1, keepdims=True)
    norm = np.sqrt(np.sum(centred * centred, axis=-1, keepdims=True))
    return centred / np.maximum(norm, x.dtype.type(eps)) * cast(weight, x.dtype)


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Standard LayerNorm over the last axis (clause 4.2), as the head's ``norm`` uses it.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` with the biased variance.
    x: (..., C); weight, bias: (C,). Returns x's shape and dtype.
    """
    x = as_input(x)
    centred = x - x.mean(axis=-1, keepdims=True)
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    return centred / np.sqrt(var + x.dtype.type(eps)) * cast(weight, x.dtype) + cast(bias, x.dtype)
