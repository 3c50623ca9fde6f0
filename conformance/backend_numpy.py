"""The built-in ``numpy`` backend: the reference itself, computing in float32 (spec clause 14.3).

``ReferenceBackend`` runs the reference's composition (``parcnetv2.reference.components``) on
inputs of its dtype. Its ``overrides`` replace operations or components of that composition for
this backend only (``{"gelu": my_gelu}``: every GELU of every component, the model's included),
and its ``patches`` replace functions inside the reference's modules for the duration of each
call (for helpers the operations call, such as ``parcnetv2.reference.oversized.resize_kernel``);
the harness's own float64 reference is never touched. The sensitivity suite builds its
deliberately broken and its legitimately different backends that way
(``parcnetv2.conformance.mutants``).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from parcnetv2 import __version__
from parcnetv2.reference.architecture import Config, components, parameter_shapes
from parcnetv2.reference.components import Reference, subtree
from parcnetv2.reference.model import Model
from parcnetv2.reference.registry import KINDS

__all__ = ["ReferenceBackend", "backend"]

# The protocol's operations and components (clause 14.2), all provided by the reference.
_PROVIDED = (
    "conv2d", "depthwise_conv2d", "pointwise_conv2d", "linear", "oversized_conv", "resize_kernel",
    "reparameterize", "layer_norm_general", "layer_norm", "gelu", "parc_spatial",
    "parc_spatial_reparameterized", "token_mixer", "bgu", "block", "downsampling",
)  # fmt: skip


class ReferenceBackend:
    """The NumPy reference as a backend computing in ``dtype``, optionally with ``overrides`` of
    its composition's operations (by name) and ``patches`` of the reference's module functions
    (dotted names), both applied to this backend only."""

    def __init__(
        self,
        name: str = "numpy",
        dtype: Any = np.float32,
        overrides: Mapping[str, Callable[..., Any]] | None = None,
        patches: Mapping[str, Callable[..., Any]] | None = None,
        description: str = "the NumPy reference (parcnetv2.reference) in float32",
    ):
        self.name = name
        self.dtype = np.dtype(dtype)
        self.description = description
        self._patches = dict(patches or {})
        self.implementation = Reference()
        for attribute, replacement in (overrides or {}).items():
            setattr(self.implementation, attribute, replacement)

    def info(self) -> dict[str, Any]:
        return {"implementation": self.description, "numpy": np.__version__, "parcnetv2": __version__}

    @contextlib.contextmanager
    def patched(self) -> Iterator[None]:
        """The module patches in place (and restored afterwards)."""
        saved = []
        try:
            for dotted, replacement in self._patches.items():
                module_name, attr = dotted.rsplit(".", 1)
                module = importlib.import_module(module_name)
                saved.append((module, attr, getattr(module, attr)))
                setattr(module, attr, replacement)
            yield
        finally:
            for module, attr, original in reversed(saved):
                setattr(module, attr, original)

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        """The protocol's operations and components: the composition's, run inside the patches."""
        if operation not in _PROVIDED:
            raise AttributeError(operation)
        function = getattr(self.implementation, operation)

        def call(*args: Any, **kwargs: Any) -> Any:
            with self.patched():
                return function(*args, **kwargs)

        call.__name__ = operation
        return call

    def parameter_shapes(self, config: Config) -> dict[str, tuple[int, ...]]:
        with self.patched():
            return importlib.import_module(parameter_shapes.__module__).parameter_shapes(config)

    def model(self, config: Config, state_dict: Mapping[str, np.ndarray]) -> ReferenceModel:
        Model(config, state_dict)  # the reference's validation of names, shapes and dtypes
        return ReferenceModel(self, config, {k: np.asarray(v, self.dtype) for k, v in state_dict.items()})


class ReferenceModel:
    """The backend's composition as a whole model of the protocol (clause 14.2): callable on NCHW
    images, with ``component(name)`` and ``trace(x)``."""

    def __init__(self, owner: ReferenceBackend, config: Config, weights: dict[str, np.ndarray]):
        self._owner, self.config, self._weights = owner, config, weights
        self._parts = {c.name: c for c in components(config)}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """NCHW images (N, 3, H, W) -> logits (N, classes)."""
        with self._owner.patched():
            return self._owner.implementation.model(self.config, self._weights, np.asarray(x, self._owner.dtype))

    def trace(self, x: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(name, input, output) of every named module in execution order, children first."""
        calls: list[tuple[str, np.ndarray, np.ndarray]] = []

        def record(name: str, inputs: Any, output: Any) -> Any:
            calls.append((name, inputs, output))
            return output

        with self._owner.patched():
            self._owner.implementation.model(self.config, self._weights, np.asarray(x, self._owner.dtype), trace=record)
        return calls

    def component(self, name: str) -> Callable[[np.ndarray], np.ndarray]:
        """The official module ``name`` as a callable on its official input layout."""
        part = self._parts[name]
        kind, params = KINDS[part.kind], subtree(self._weights, name)

        def run(x: np.ndarray) -> np.ndarray:
            with self._owner.patched():
                return kind.run(self._owner.implementation, params, np.asarray(x, self._owner.dtype), part.settings)

        return run


def backend() -> ReferenceBackend:
    """Entry point of the built-in ``numpy`` backend."""
    return ReferenceBackend()
