"""The state of one conformance session (spec clause 14): the backend under test, the profile and
seed, the whole-model targets, and the reference runs of those targets, cached per process (so per
pytest-xdist worker).

A *target* is one whole model the numerics checks run: an official variant at an input size with
weights from the harness's generator, from the user's ``--weights`` file, from the model itself
(a factory's own weights) or fixed by the backend (an exported file). For ``--model`` factories the
harness plans several (clause 14.6): the variant at 224 x 224 and at a small odd non-square size
with batch 2, with the kernel modes of clause 5 where the factory accepts ``interpolate``, with the
model's own weights, and with ``--weights``.

Shape legend: N, C, H, W, K.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from parcnetv2.conformance.cases import rounded
from parcnetv2.conformance.error_bounds import Bounded, BoundedReference, exact
from parcnetv2.conformance.observation import Observation, observe
from parcnetv2.conformance.protocol import Unsupported, backend_dtype
from parcnetv2.reference.architecture import Component, Config, components
from parcnetv2.reference.initialization import conditioned_state_dict
from parcnetv2.spec import architecture_defaults

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["IMAGE_SIZE", "Harness", "ModelRun", "Profile", "Target", "load_profile", "plan_targets", "profile_names"]

IMAGE_SIZE = 224  # the resolution whose feature maps the official kernels fit, K = 2H - 1 (clause 5.1)
SMALL_IMAGE = (2, 97, 131)  # batch, H, W: odd, non-square, every stage map odd or non-square (clause 14.6)
_PROFILES = "profiles.toml"
_CACHED_RUNS = 2
# Kinds of named modules the probes of clause 14.6 run on drawn inputs (containers are not probed).
_PROBED_KINDS = {
    "downsampling", "conv2d", "layer_norm_general", "layer_norm", "oversized_conv", "depthwise_conv2d",
    "pointwise_conv2d", "gelu", "token_mixer", "bgu", "linear", "scale", "block",
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Profile:
    """A row of profiles.toml (clause 14.4), with the --max-examples override applied."""

    name: str
    seed: int | None  # None: draw one per run
    shrink: bool
    counts: Mapping[str, int]
    override: int | None = None

    def examples(self, kind: str) -> int:
        """Hypothesis examples per test of ``kind``: operations, components, model or probes."""
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
    """A whole model the numerics checks run (see the module docstring). ``weights`` says where its
    weights come from: "harness" (generated from the session's seed), "file" (``fixed_weights``:
    an exported file's or ``--weights``), or "own" (the backend's model as it was built)."""

    label: str
    config: Config
    image: tuple[int, ...]  # (N, 3, H, W)
    fixed_weights: Mapping[str, np.ndarray] | None = None
    weights: str = "harness"


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
    bounded: BoundedReference
    model: Any = None
    model_error: BaseException | None = None
    _observation: Observation | None = None

    def observation(self) -> Observation:
        """The backend model's run on the image (its logits and module trace), computed once."""
        if self._observation is None:
            self._observation = observe(self.model, self.image)
        return self._observation

    def entry(self, name: str) -> tuple[Bounded, Bounded]:
        for entry_name, inputs, output in self.trace:
            if entry_name == name:
                return inputs, output
        raise KeyError(name)


def _image(config: Config, size: tuple[int, int, int]) -> tuple[int, ...]:
    batch, height, width = size
    return (batch, config.constants["in_chans"], height, width)


def plan_targets(
    backend: Any, variants: Sequence[str], *, factory: bool, weights: Mapping[str, np.ndarray] | None = None
) -> list[Target]:
    """The whole-model targets of the numerics checks (see the module docstring)."""
    small = SMALL_IMAGE
    targets = []
    for variant in variants:
        config = Config.from_variant(variant)
        targets.append(Target(variant, config, _image(config, (1, IMAGE_SIZE, IMAGE_SIZE))))
        if not factory:
            continue
        targets.append(Target(f"{variant}@{small[1]}x{small[2]}", config, _image(config, small)))
        for mode in getattr(backend, "interpolate_modes", ()):
            moded = Config.from_variant(variant, interpolate=mode)
            targets.append(Target(f"{variant}@{small[1]}x{small[2]},interpolate={mode}", moded, _image(moded, small)))
        own = getattr(backend, "own_state_dict", None)
        if callable(own):
            targets.append(Target(f"{variant},own-weights", config, _image(config, small), own(config), "own"))
        if weights is not None:
            fixed = Config.from_variant(variant, num_classes=int(np.shape(weights["head.weight"])[0]))
            targets.append(
                Target(f"{variant},--weights", fixed, _image(fixed, (1, IMAGE_SIZE, IMAGE_SIZE)), weights, "file")
            )
    return targets


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

    def probe_targets(self) -> list[Target]:
        """The targets whose named modules are probed on drawn inputs (clause 14.6): the first target
        of each variant (its modules are the same code at every input size)."""
        seen: dict[str, Target] = {}
        for target in self.targets:
            seen.setdefault(target.config.name, target)
        return list(seen.values())

    def probed_modules(self, target: Target) -> list[str]:
        """The named modules probed in ``target``: every module of the first block of each stage and
        of the last block of the model, the downsampling layers and the head."""
        config = target.config
        blocks = {f"stages.{i}.0" for i, d in enumerate(config.depths) if d}
        last = max((i for i, d in enumerate(config.depths) if d), default=None)
        if last is not None:
            blocks.add(f"stages.{last}.{config.depths[last] - 1}")
        chosen = []
        for part in components(config):
            if part.kind not in _PROBED_KINDS:
                continue
            block = ".".join(part.name.split(".")[:3])
            if not part.name.startswith("stages.") or block in blocks:
                chosen.append(part.name)
        return chosen

    def run_for(self, target: Target) -> ModelRun:
        """The reference run of ``target`` with weights and image generated from the session's
        seed (or the target's fixed weights), computed once per process."""
        if target.label not in self._runs:
            while len(self._runs) >= _CACHED_RUNS:  # a traced variant at 224 x 224 holds ~1 GB (base)
                self._runs.pop(next(iter(self._runs)))
            rng = np.random.default_rng([self.seed, sum(map(ord, target.label))])
            image = rng.standard_normal(target.image).astype(self.dtype)
            weights = target.fixed_weights
            if weights is None:
                weights = conditioned_state_dict(target.config, rng, image)
            self._runs[target.label] = self.reference_run(target, rounded(weights, self.dtype), image)
        return self._runs[target.label]

    def reference_run(self, target: Target, weights: dict[str, np.ndarray], image: np.ndarray) -> ModelRun:
        """Build the backend's model with ``weights`` and trace the reference on ``image``
        (N, 3, H, W), both already in the backend's dtype. The bounds assume the harness's drawn
        weights (clause 11.5, regime "drawn") unless the target's weights come from elsewhere. A
        model the backend does not provide (``Unsupported``) leaves the trace empty."""
        parts = {c.name: c for c in components(target.config)}
        model, error = None, None
        try:
            model = self.backend.model(target.config, weights)
        except Exception as exc:
            error = exc
        # Clause 11.6: a model whose FFT passes are direct DFTs says so (``computes_dft``).
        dft = bool(getattr(model, "computes_dft", False))
        bounded = BoundedReference(self.dtype, "drawn" if target.weights == "harness" else "any", dft=dft)
        run = ModelRun(target, weights, image, [], exact(np.zeros(0)), parts, bounded, model, error)
        if isinstance(error, Unsupported):
            return run

        def record(name: str, inputs: Bounded, output: Bounded) -> Bounded:
            run.trace.append((name, inputs, output))
            return output

        params = {k: v.astype(np.float64) for k, v in weights.items()}
        run.logits = bounded.model(target.config, params, exact(image), trace=record)
        return run


def official_target(variant: str) -> Target:
    """An official variant at 224 x 224, batch 1 (clause 9)."""
    channels = architecture_defaults()["in_chans"]
    return Target(variant, Config.from_variant(variant), (1, channels, IMAGE_SIZE, IMAGE_SIZE))
