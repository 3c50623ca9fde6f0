"""What a backend's whole model did on one image (spec clause 14.6): its logits and, where the backend
exposes them, the runs of its named modules.

A model of the protocol may offer ``trace(x)``: the runs of the official named modules during one
forward pass, in completion order (children before their parents), each as ``(name, input,
output)`` or as an object with ``name``, ``via`` ("forward" or "parameters"), ``input`` and
``output`` (a ``Run`` of this module). Older backends offer ``activations(x)``,
``{name: output}``; the harness reads either. The model itself appears in a trace as ``""``.

Shape legend: N, C, H, W, K.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from parcnetv2.conformance.protocol import Unsupported
from parcnetv2.reference.architecture import Config, components

__all__ = ["Observation", "Run", "layout_axes", "map_layout", "module_names", "observe"]


def module_names(config: Config) -> list[str]:
    """The official names a trace may report, in the official order: every named module and the
    model itself (``""``), containers left out (clause 2.2)."""
    return [c.name for c in components(config) if c.kind != "container"]


@dataclasses.dataclass
class Run:
    """One run of a named module; ``input`` and ``output`` are None when only its parameters were
    seen in use (``via`` "parameters")."""

    name: str
    via: str = "forward"
    input: Any = None
    output: Any = None


@dataclasses.dataclass
class Observation:
    """The logits of one forward pass and the module runs seen during it (``traced`` False when the
    backend exposes none: ``untraced`` says why)."""

    logits: np.ndarray
    runs: list[Run]
    traced: bool
    untraced: str = ""

    def last(self, name: str) -> Run | None:
        """The last run of ``name`` with an output, if any."""
        for run in reversed(self.runs):
            if run.name == name and run.output is not None:
                return run
        return None


def map_layout(array: Any, shape: Sequence[int]) -> np.ndarray | None:
    """``array`` in the reference's layout of ``shape``: as is, or transposed between NHWC and NCHW
    when only that matches (exported graphs and ports may keep either); None when neither does."""
    array = np.asarray(array)
    if array.shape == tuple(shape):
        return array
    if array.ndim == 4:
        for axes in ((0, 3, 1, 2), (0, 2, 3, 1)):
            if tuple(array.shape[a] for a in axes) == tuple(shape):
                return array.transpose(axes)
    return None


def layout_axes(official: Sequence[int], observed: Sequence[int]) -> tuple[int, ...] | None:
    """The transpose that turns an array of the ``official`` shape into the ``observed`` one (a port
    may keep a module's input NCHW where the official one is NHWC, or the reverse); None when
    neither identity nor such a transpose fits."""
    if tuple(official) == tuple(observed):
        return tuple(range(len(official)))
    if len(official) == 4:
        for axes in ((0, 3, 1, 2), (0, 2, 3, 1)):
            if tuple(official[a] for a in axes) == tuple(observed):
                return axes
    return None


def _as_run(entry: Any) -> Run:
    if isinstance(entry, tuple):
        name, inputs, output = entry
        return Run(name, "forward", inputs, output)
    return Run(entry.name, getattr(entry, "via", "forward"), getattr(entry, "input", None), entry.output)


def _tensor(value: Any) -> Any:
    """A tensor-like module input or output as a NumPy array (first element of a tuple)."""
    if isinstance(value, tuple | list):
        value = value[0] if value else None
    if value is None:
        return None
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def observe(model: Any, image: np.ndarray) -> Observation:
    """Run ``model`` once on ``image`` (N, 3, H, W), recording what its ``trace`` or ``activations``
    expose. ``Unsupported`` from ``trace`` leaves the observation untraced with its reason."""
    trace = getattr(model, "trace", None)
    if callable(trace):
        try:
            runs = [_as_run(e) for e in trace(image)]
        except Unsupported as exc:
            return Observation(np.asarray(model(image)), [], False, str(exc))
        for run in runs:
            run.input, run.output = _tensor(run.input), _tensor(run.output)
        whole = next((r for r in reversed(runs) if r.name == "" and r.output is not None), None)
        logits = whole.output if whole is not None else np.asarray(model(image))
        return Observation(logits, runs, True)
    activations = getattr(model, "activations", None)
    if callable(activations):
        runs = [Run(name, "forward", None, _tensor(out)) for name, out in activations(image).items()]
        return Observation(np.asarray(model(image)), runs, True)
    return Observation(np.asarray(model(image)), [], False, "the backend's model exposes no trace")
