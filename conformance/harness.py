"""The state of one conformance session (spec clause 14): the backend under test, the profile and
seed, the variants, and the reference runs of whole models, cached per process (so per
pytest-xdist worker).

Shape legend: N, C, H, W, K.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from parcnetv2.conformance.cases import random_weights, rounded
from parcnetv2.conformance.error_bounds import Bounded, BoundedReference, exact
from parcnetv2.conformance.protocol import Unsupported, backend_dtype
from parcnetv2.reference.architecture import Component, Config, components, parameter_shapes
from parcnetv2.spec import architecture_defaults

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["IMAGE_SIZE", "Harness", "ModelRun", "Profile", "Target", "load_profile", "profile_names"]

IMAGE_SIZE = 224  # the resolution whose feature maps the official kernels fit, K = 2H - 1 (clause 5.1)
_PROFILES = "profiles.toml"
_CACHED_RUNS = 2


@dataclasses.dataclass(frozen=True)
class Profile:
    """A row of profiles.toml (clause 14.4), with the --max-examples override applied."""

    name: str
    seed: int | None  # None: draw one per run
    shrink: bool
    counts: Mapping[str, int]
    override: int | None = None

    def examples(self, kind: str) -> int:
        """Hypothesis examples per test of ``kind``: operations, components or model."""
        return self.override if self.override is not None else int(self.counts[kind])


def _profiles() -> dict[str, Any]:
    from importlib import resources

    return tomllib.loads(resources.files("parcnetv2.conformance").joinpath(_PROFILES).read_text(encoding="utf-8"))


def profile_names() -> list[str]:
    return list(_profiles())


def load_profile(name: str, max_examples: int | None = None) -> Profile:
    """The profile ``name`` (KeyError for an unknown one)."""
    row = _profiles()[name]
    seed = None if row["seed"] == "random" else int(row["seed"])
    return Profile(name, seed, bool(row["shrink"]), dict(row["examples"]), max_examples)


@dataclasses.dataclass(frozen=True)
class Target:
    """A whole model the numerics checks run: an official variant with generated weights, or the
    fixed model of a backend (an exported file) with its own weights."""

    label: str
    config: Config
    image: tuple[int, ...]  # (N, 3, H, W)
    fixed_weights: Mapping[str, np.ndarray] | None = None


@dataclasses.dataclass
class ModelRun:
    """The reference run of one target: weights and image as the backend receives them, the
    bounded trace of every named component (name, input, output) and the logits."""

    target: Target
    weights: dict[str, np.ndarray]
    image: np.ndarray
    trace: list[tuple[str, Bounded, Bounded]]
    logits: Bounded
    parts: dict[str, Component]
    model: Any = None
    model_error: BaseException | None = None

    def entry(self, name: str) -> tuple[Bounded, Bounded]:
        for entry_name, inputs, output in self.trace:
            if entry_name == name:
                return inputs, output
        raise KeyError(name)


class Harness:
    """Session state shared by the tests through the ``conformance`` fixture."""

    def __init__(
        self,
        *,
        spec: str,
        backend: Any,
        unavailable: str | None,
        profile: Profile,
        seed: int,
        param_targets: Sequence[Target],
        targets: Sequence[Target],
        geometry_variants: Sequence[str],
        repro_args: Sequence[str],
        reproduce_blob: str | None = None,
    ):
        self.spec = spec  # the --backend value
        self.backend = backend
        self.unavailable = unavailable
        self.profile = profile
        self.seed = seed
        self.param_targets = list(param_targets)  # parameter names, shapes and counts
        self.targets = list(targets)  # whole-model numerics
        self.geometry_variants = list(geometry_variants)
        self.repro_args = list(repro_args)
        self.reproduce_blob = reproduce_blob
        self.dtype = backend_dtype(backend) if backend is not None else np.dtype(np.float32)
        self.bounded = BoundedReference(self.dtype)
        self._runs: dict[str, ModelRun] = {}

    def target(self, label: str) -> Target:
        """The numerics or parameter target called ``label``."""
        return next(t for t in self.targets + self.param_targets if t.label == label)

    def run_for(self, target: Target) -> ModelRun:
        """The reference run of ``target`` with weights and image generated from the session's
        seed (or the target's fixed weights), computed once per process."""
        if target.label not in self._runs:
            while len(self._runs) >= _CACHED_RUNS:  # a traced variant at 224 x 224 holds ~1 GB (base)
                self._runs.pop(next(iter(self._runs)))
            rng = np.random.default_rng([self.seed, sum(map(ord, target.label))])
            weights = target.fixed_weights
            if weights is None:
                weights = random_weights(parameter_shapes(target.config), rng)
            image = rng.standard_normal(target.image)
            self._runs[target.label] = self.reference_run(
                target, rounded(weights, self.dtype), image.astype(self.dtype)
            )
        return self._runs[target.label]

    def reference_run(self, target: Target, weights: dict[str, np.ndarray], image: np.ndarray) -> ModelRun:
        """Build the backend's model with ``weights`` and trace the reference on ``image``
        (N, 3, H, W), both already in the backend's dtype. A model the backend does not provide
        (``Unsupported``) leaves the trace empty."""
        run = ModelRun(target, weights, image, [], exact(np.zeros(0)), {c.name: c for c in components(target.config)})
        try:
            run.model = self.backend.model(target.config, weights)
        except Exception as exc:
            run.model_error = exc
            if isinstance(exc, Unsupported):
                return run
        params = {k: v.astype(np.float64) for k, v in weights.items()}
        run.logits = self.bounded.model(
            target.config, params, exact(image), trace=lambda *entry: run.trace.append(entry) or entry[2]
        )
        return run


def official_target(variant: str) -> Target:
    """An official variant at 224 x 224, batch 1 (clause 9)."""
    channels = architecture_defaults()["in_chans"]
    return Target(variant, Config.from_variant(variant), (1, channels, IMAGE_SIZE, IMAGE_SIZE))
