"""Building a Model: official random initialisation, state_dicts and weights files (clause 2, 13)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from os import PathLike
from typing import Any

import numpy as np

from parcnetv2.errors import WeightsError
from parcnetv2.reference.architecture import Config, infer_official_variant
from parcnetv2.reference.initialization import initial_state_dict
from parcnetv2.reference.model import Model, check_state_dict
from parcnetv2.spec import architecture_defaults


def create(variant: str, num_classes: int = 1000, seed: int | None = None, **overrides: Any) -> Model:
    """A Model of an official variant (``parcnetv2_xt``, ``_tiny``, ``_small``, ``_base``) with
    weights initialised like the official code (clause 2.3), reproducible from ``seed``.

    ``overrides``: ``depths``, ``dims``, ``global_kernel_sizes`` (one entry per stage) and
    ``interpolate`` (False, True or an odd int; clause 5) for custom configurations.
    """
    config = Config.from_variant(variant, num_classes=num_classes, **overrides)
    return Model(config, initial_state_dict(config, seed))


_BLOCK_KEY = re.compile(r"^stages\.(\d{1,6})\.(\d{1,6})\.")  # longer indices: unexpected keys


def infer_config(state_dict: Mapping[str, Any], interpolate: bool | int = False) -> Config:
    """The configuration a state_dict with official names describes (clause 13.4)."""

    def shape_of(key: str, rank: int) -> tuple[int, ...]:
        if key not in state_dict:
            raise WeightsError(f"cannot infer the architecture: missing key {key}")
        shape = tuple(np.shape(state_dict[key]))
        if len(shape) != rank:
            raise WeightsError(f"cannot infer the architecture: {key} has shape {shape}, expected {rank} dimensions")
        return shape

    stages = 0
    while f"downsample_layers.{stages}.conv.weight" in state_dict:
        stages += 1
    if stages == 0:
        shape_of("downsample_layers.0.conv.weight", 4)
    dims = tuple(shape_of(f"downsample_layers.{i}.conv.weight", 4)[0] for i in range(stages))
    blocks: dict[int, set[int]] = {i: set() for i in range(stages)}
    for key in state_dict:
        match = _BLOCK_KEY.match(key)
        if match and int(match.group(1)) in blocks:
            blocks[int(match.group(1))].add(int(match.group(2)))
    # Depths count the blocks present: a stray index (stages.0.999999.x) must not make the
    # expected configuration, and the key lists built from it, arbitrarily large.
    for i, found in blocks.items():
        count = max(found, default=-1) + 1
        if len(found) < count:
            first = [f"stages.{i}.{j}" for j in itertools.islice((j for j in range(count) if j not in found), 5)]
            more = ", ..." if count - len(found) > 5 else ""
            raise WeightsError(f"cannot infer the architecture: blocks {', '.join(first)}{more} are missing "
                               f"({count - len(found)} of {count})")  # fmt: skip
    depths = tuple(len(blocks[i]) for i in range(stages))
    defaults = architecture_defaults()["global_kernel_sizes"]
    kernels = tuple(
        shape_of(f"stages.{i}.0.token_mixer.dwconv1.conv_h.weight", 4)[2] if depths[i] else defaults[i]
        for i in range(stages)
    )
    num_classes = shape_of("head.weight", 2)[0]
    return Config(
        depths=depths,
        dims=dims,
        global_kernel_sizes=kernels,
        num_classes=num_classes,
        interpolate=interpolate,
        variant=infer_official_variant(depths, dims, kernels),
    )


def resolve_config(
    state_dict: Mapping[str, Any], variant: str | None = None, *, interpolate: bool | int = False
) -> Config:
    """The validated configuration of a state_dict with the official names (clause 13.4).

    With ``variant`` the weights must be that variant (any number of classes); without it the
    architecture is inferred from the names and shapes. Another architecture, missing or
    unexpected keys, wrong shapes and non-float weights raise WeightsError naming them.
    """
    if variant is None:
        config = infer_config(state_dict, interpolate)
    else:
        head = state_dict.get("head.weight")
        num_classes = np.shape(head)[0] if head is not None and np.ndim(head) == 2 else 1000
        config = Config.from_variant(variant, num_classes=num_classes, interpolate=interpolate)
        _refuse_other_architecture(state_dict, config)
    check_state_dict(config, state_dict)
    return config


def from_state_dict(
    state_dict: Mapping[str, Any], variant: str | None = None, *, interpolate: bool | int = False
) -> Model:
    """A Model from a state_dict with the official names, validated by ``resolve_config``."""
    return Model(resolve_config(state_dict, variant, interpolate=interpolate), state_dict)


def _refuse_other_architecture(state_dict: Mapping[str, Any], config: Config) -> None:
    """Name the architecture a state_dict holds when it is not the requested variant's."""
    try:
        found = infer_config(state_dict)
    except WeightsError:
        return  # too broken to describe: the key-by-key check reports it
    arch = ("depths", "dims", "global_kernel_sizes")
    if any(getattr(found, a) != getattr(config, a) for a in arch):
        raise WeightsError(f"weights do not match {config.name}: they are {found.name}")


def load(path: str | PathLike, variant: str | None = None, *, interpolate: bool | int = False) -> Model:
    """A Model from a weights file: ``.npz``, ``.safetensors`` or ``.pth``/``.pt`` (torch's zip
    format, read without torch and without running pickled code; clause 13). Wrapped
    checkpoints (``{"model": ...}``, ``{"state_dict": ...}``, ``module.`` prefixes) are unwrapped.
    The variant is inferred from the weights when not given."""
    from parcnetv2.reference.checkpoint import read_state_dict

    return from_state_dict(read_state_dict(path), variant, interpolate=interpolate)
