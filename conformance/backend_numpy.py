"""The built-in ``numpy`` backend: the reference itself, computing in float32 (spec clause 14.3).

``ReferenceBackend`` runs the functions of ``parcnetv2.reference`` on inputs of its dtype. Its
``patches`` replace named functions inside the reference's modules for the duration of each call
(never outside it, so the harness's own float64 reference is untouched); the sensitivity suite
builds its deliberately broken and its legitimately different backends that way
(``parcnetv2.conformance.mutants``).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from parcnetv2 import __version__
from parcnetv2.reference import Model

__all__ = ["ReferenceBackend", "backend"]

# Where each protocol operation lives in the reference; the reference's components look these
# names up at call time, so a patch of "parcnetv2.reference.components.gelu" reaches every GELU.
_HOME = {
    "resize_kernel": "parcnetv2.reference.oversized",
    "parameter_shapes": "parcnetv2.reference.architecture",
}
_COMPONENTS = "parcnetv2.reference.components"


class ReferenceBackend:
    """The NumPy reference as a backend computing in ``dtype``; ``patches`` maps dotted names
    (``"parcnetv2.reference.components.gelu"``) to replacement functions used during calls."""

    def __init__(
        self,
        name: str = "numpy",
        dtype: Any = np.float32,
        patches: Mapping[str, Callable[..., Any]] | None = None,
        description: str = "the NumPy reference (parcnetv2.reference) in float32",
    ):
        self.name = name
        self.dtype = np.dtype(dtype)
        self.description = description
        self._patches = dict(patches or {})

    def info(self) -> dict[str, Any]:
        return {"implementation": self.description, "numpy": np.__version__, "parcnetv2": __version__}

    @contextlib.contextmanager
    def _patched(self) -> Iterator[None]:
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

    def _call(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        with self._patched():
            function = getattr(importlib.import_module(_HOME.get(operation, _COMPONENTS)), operation)
            return function(*args, **kwargs)

    # Operations and components: the reference functions of the same names (clause 14.2).
    def conv2d(self, *args, **kwargs):
        return self._call("conv2d", *args, **kwargs)

    def depthwise_conv2d(self, *args, **kwargs):
        return self._call("depthwise_conv2d", *args, **kwargs)

    def pointwise_conv2d(self, *args, **kwargs):
        return self._call("pointwise_conv2d", *args, **kwargs)

    def linear(self, *args, **kwargs):
        return self._call("linear", *args, **kwargs)

    def oversized_conv(self, *args, **kwargs):
        return self._call("oversized_conv", *args, **kwargs)

    def resize_kernel(self, *args, **kwargs):
        return self._call("resize_kernel", *args, **kwargs)

    def reparameterize(self, *args, **kwargs):
        return self._call("reparameterize", *args, **kwargs)

    def layer_norm_general(self, *args, **kwargs):
        return self._call("layer_norm_general", *args, **kwargs)

    def layer_norm(self, *args, **kwargs):
        return self._call("layer_norm", *args, **kwargs)

    def gelu(self, *args, **kwargs):
        return self._call("gelu", *args, **kwargs)

    def parc_spatial(self, *args, **kwargs):
        return self._call("parc_spatial", *args, **kwargs)

    def parc_spatial_reparameterized(self, *args, **kwargs):
        return self._call("parc_spatial_reparameterized", *args, **kwargs)

    def token_mixer(self, *args, **kwargs):
        return self._call("token_mixer", *args, **kwargs)

    def bgu(self, *args, **kwargs):
        return self._call("bgu", *args, **kwargs)

    def block(self, *args, **kwargs):
        return self._call("block", *args, **kwargs)

    def downsampling(self, *args, **kwargs):
        return self._call("downsampling", *args, **kwargs)

    def parameter_shapes(self, config):
        return self._call("parameter_shapes", config)

    def model(self, config, state_dict) -> _ReferenceModel:
        return _ReferenceModel(self, Model(config, state_dict))


class _ReferenceModel:
    """A reference ``Model`` whose calls run inside its backend's patches."""

    def __init__(self, owner: ReferenceBackend, model: Model):
        self._owner, self._model = owner, model

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """NCHW images (N, 3, H, W) -> logits (N, classes)."""
        with self._owner._patched():
            return self._model(x)

    def component(self, name: str) -> Callable[[np.ndarray], np.ndarray]:
        """The official module ``name`` as a callable on its official input layout."""
        run = self._model.component(name)

        def patched(x: np.ndarray) -> np.ndarray:
            with self._owner._patched():
                return run(x)

        return patched


def backend() -> ReferenceBackend:
    """Entry point of the built-in ``numpy`` backend."""
    return ReferenceBackend()
