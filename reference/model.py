"""The whole model (spec clause 2): weights, forward pass, named components.

A ``Model`` holds a ``Config`` and read-only weights under the official names. Its forward pass
runs in the input's dtype (float32 or float64); weights are cast to it once per dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from parcnetv2.errors import InputError, WeightsError, one_line
from parcnetv2.reference.architecture import Component, Config, components, parameter_shapes
from parcnetv2.reference.components import REFERENCE, Trace, subtree
from parcnetv2.reference.dtypes import as_input
from parcnetv2.reference.registry import KINDS

MAX_LISTED_KEYS = 20  # a message stays readable; the count says how many more there are


def _key_list(keys: list[str]) -> str:
    shown = ", ".join(one_line(str(k), 100) for k in keys[:MAX_LISTED_KEYS])
    return shown if len(keys) <= MAX_LISTED_KEYS else f"{shown}, ... and {len(keys) - MAX_LISTED_KEYS} more"


def check_state_dict(config: Config, state_dict: Mapping[str, Any]) -> None:
    """WeightsError listing missing and unexpected keys, or naming a key with both shapes, or a
    weight that is not floating point."""
    expected = parameter_shapes(config)
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_key_list(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_key_list(unexpected)}")
        raise WeightsError(f"weights do not match {config.name}: " + "; ".join(parts))
    for key, shape in expected.items():
        got = tuple(np.shape(state_dict[key]))
        if got != shape:
            raise WeightsError(f"weights do not match {config.name}: {key} has shape {got}, expected {shape}")
        dtype = np.asarray(state_dict[key]).dtype
        if dtype.kind != "f":
            raise WeightsError(f"{key} has dtype {dtype}; weights must be floating point")


def check_image_shape(x: np.ndarray, config: Config) -> None:
    """InputError unless x is NCHW (N, in_chans, H, W) with H, W >= 3 (clause 3.1's stem)."""
    channels = config.constants["in_chans"]
    if x.ndim != 4 or x.shape[1] != channels:
        raise InputError(f"input must be NCHW (N, {channels}, H, W), got shape {x.shape}")
    if min(x.shape[2:]) < 3:
        raise InputError(f"input must be at least 3x3 for the 7x7/4 stem, got {x.shape[2]}x{x.shape[3]}")


class Model:
    """ParCNetV2 forward pass with the official semantics (clauses 2-8).

    ``Model(x)``: x (N, 3, H, W) NCHW float32 or float64 -> logits (N, num_classes), same dtype.
    """

    def __init__(self, config: Config, state_dict: Mapping[str, Any], *, reparameterized: bool = False):
        check_state_dict(config, state_dict)
        weights = {}
        for key in parameter_shapes(config):
            arr = np.array(state_dict[key], copy=True)
            arr.flags.writeable = False
            weights[key] = arr
        self.config = config
        self.reparameterized = reparameterized
        self._weights = weights
        self._components = {c.name: c for c in components(config)}
        self._cast_cache: dict[np.dtype, dict[str, np.ndarray]] = {}

    @property
    def variant(self) -> str | None:
        """The official variant name, or None for a custom configuration."""
        return self.config.variant

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def state_dict(self) -> dict[str, np.ndarray]:
        """Weights under the official names, in the official order (read-only arrays)."""
        return dict(self._weights)

    def with_reparameterized_mixers(self, enabled: bool = True) -> Model:
        """The same weights with token mixers using the merged dense kernel (clause 7.2)."""
        return Model(self.config, self._weights, reparameterized=enabled)

    def weights_as(self, dtype: Any) -> dict[str, np.ndarray]:
        """All weights cast to ``dtype`` (cached: the cast happens once per dtype)."""
        dtype = np.dtype(dtype)
        if dtype not in self._cast_cache:
            self._cast_cache[dtype] = {k: v.astype(dtype, copy=False) for k, v in self._weights.items()}
        return self._cast_cache[dtype]

    def forward(self, x: Any, *, trace: Trace = None) -> np.ndarray:
        """Logits (N, num_classes) of NCHW images (N, 3, H, W); ``trace`` as in
        ``parcnetv2.reference.components`` receives every named module's input and output."""
        x = as_input(x)
        check_image_shape(x, self.config)
        params = self.weights_as(x.dtype)
        return REFERENCE.model(self.config, params, x, reparameterized=self.reparameterized, trace=trace)

    def forward_features(self, x: Any) -> np.ndarray:
        """Pooled, normalised features (clause 8.5): (N, 3, H, W) -> (N, C_last), the input of ``head``."""
        features: list[np.ndarray] = []

        def keep_norm(name: str, inputs: Any, output: Any) -> Any:
            if name == "norm":
                features.append(output)
            return output

        self.forward(x, trace=keep_norm)
        return features[0]

    def __call__(self, x: Any) -> np.ndarray:
        """Logits (N, num_classes) of NCHW images (N, 3, H, W)."""
        return self.forward(x)

    def component_names(self) -> list[str]:
        """Names accepted by ``component``, in the official module order."""
        return [name for name, c in self._components.items() if c.kind != "container" and name]

    def component_info(self, name: str) -> Component:
        """Kind, settings and input layout of the named component."""
        if name not in self._components:
            raise InputError(f"no component named {name!r} in {self.config.name}")
        return self._components[name]

    def component(self, name: str) -> Callable[[np.ndarray], np.ndarray]:
        """A callable for one named component (official module path, e.g.
        ``"stages.2.0.token_mixer"``), taking that module's official input layout
        (``component_info(name).layout``). ``""`` is the whole model."""
        info = self.component_info(name)
        if info.kind == "model":
            return self
        if info.kind == "container":
            raise InputError(f"{name!r} is a container; name one of its members")
        kind = KINDS[info.kind]
        settings = dict(info.settings)
        if info.kind in ("token_mixer", "block", "stage"):
            settings["reparameterized"] = self.reparameterized

        def run(x: np.ndarray) -> np.ndarray:
            params = subtree(self.weights_as(as_input(x).dtype), name)
            return kind.run(REFERENCE, params, x, settings)

        run.__name__ = name
        run.__doc__ = f"{info.kind} {name} ({info.layout} input), clause {kind.clause}"
        return run

    def __repr__(self) -> str:
        return f"Model({self.config.name}, num_classes={self.num_classes})"
