"""The inference engine: the C model of the C library (spec clause 16) behind the engine's API
(clause 15): weights checked by the reference, handed to C by name, one C plan per input shape.

Shape legend: N, C, H, W, K. The engine takes NCHW images (N, 3, H, W) and returns logits
(N, num_classes) in float32; all the computation is C's (``parcnetv2.cext.model``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from parcnetv2 import cext
from parcnetv2.cext import model as cmodel
from parcnetv2.errors import InputError
from parcnetv2.reference import Model
from parcnetv2.reference.architecture import Config
from parcnetv2.reference.loading import resolve_config
from parcnetv2.reference.model import check_image_shape

__all__ = ["PLAN_CACHE_SIZE", "Engine", "check_threads"]

PLAN_CACHE_SIZE = cmodel.PLAN_CACHE_SIZE
check_threads = cext.check_threads  # None or 1..cext.MAX_THREADS; the command line's range too


class Engine:
    """ParCNetV2 inference on CPU by the C library's whole-model runtime (clauses 15, 16).

    ``engine(x)``: x (N, 3, H, W) NCHW images, H, W >= 3, any N (float32; other float dtypes are
    converted to float32) -> logits (N, num_classes) float32, a new array. Build one with
    ``from_model``, ``from_state_dict`` or ``parcnetv2.engine.load``.

    ``threads``: the OpenMP threads of a call (None: OpenMP's default, OMP_NUM_THREADS else all
    CPUs; else 1..``cext.MAX_THREADS``). Results do not depend on the thread count, on the number
    of concurrent callers or on an image's position in the batch (clause 16.4).

    Threads: an Engine may be called from several Python threads at once. Each input shape has one
    C plan (its buffers); calls of one shape on one Engine run one after another on that plan (a
    lock per plan: a C plan runs one call at a time), calls of different shapes or on different
    Engines run concurrently. For parallel callers of one shape, give each its own Engine.
    """

    def __init__(self, config: Config, model: cmodel.Model, threads: int | None = None):
        """``model``: the C model built from weights ``config`` describes (``from_model``,
        ``from_state_dict``)."""
        self.config: Config = config
        self.threads = check_threads(threads)
        self._model = model

    @classmethod
    def from_model(cls, model: Model, threads: int | None = None) -> Engine:
        """An Engine with a reference Model's weights (packed by C; the Model keeps its own)."""
        if not isinstance(model, Model):
            raise InputError(f"expected a parcnetv2.reference.Model, got {type(model).__name__}")
        return cls._build(model.config, model.weights_as(np.float32), threads, release=False)

    @classmethod
    def from_state_dict(
        cls,
        state_dict: Mapping[str, Any],
        variant: str | None = None,
        threads: int | None = None,
        *,
        release: bool = False,
    ) -> Engine:
        """An Engine from a state_dict with the official names, validated by the reference's own
        checks and messages (``parcnetv2.reference.loading.resolve_config``: CheckpointError,
        WeightsError, InputError for an unknown variant) and handed to C by name. With
        ``release`` (a dict the caller gives up) each entry is dropped once C has packed it, so
        the weights are held about once while loading (clause 15.7)."""
        return cls._build(resolve_config(state_dict, variant), state_dict, threads, release=release)

    @classmethod
    def _build(cls, config: Config, weights: Mapping[str, Any], threads: Any, *, release: bool) -> Engine:
        threads = check_threads(threads)
        model = cmodel.from_arrays(weights, interpolate=config.interpolate, threads=threads, release=release)
        return cls(config, model, threads)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def info(self) -> dict[str, Any]:
        """Facts for reports: ISA, threads, the C model's memory, cached plans and their spatial paths."""
        model = self._model.info()
        return {
            "config": self.config.name,
            "threads": self.threads,
            "c_library": cext.build_info(),
            "isa": model["isa"],
            "packed_bytes": model["packed_bytes"],
            "plans": {
                "x".join(map(str, shape)): {"paths": plan.info()["paths"], "buffer_bytes": plan.info()["buffer_bytes"]}
                for shape, plan in list(self._model._plans.items())
            },
        }

    def __call__(self, x: Any) -> np.ndarray:
        """Logits (N, num_classes) float32 of NCHW images x (N, 3, H, W)."""
        x = np.asarray(x)
        if x.dtype.kind != "f":
            raise InputError(f"input must be a floating-point array, got dtype {x.dtype}")
        check_image_shape(x, self.config)
        return self._model(x, threads=self.threads)
