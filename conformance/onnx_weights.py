"""Where an exported file keeps each official parameter, and the file with other weights (spec
clause 14.7).

A file fixes the weights it was exported from, and with a user's weights the harness's bounds have
little power (clause 11.10). When every official parameter can be found in the graph, the harness
writes its own well-conditioned weights (clause 11.5) into the file and checks it as it checks a
``--model`` factory. Exporters keep most parameters as initializers under their official names;
constant folding stores some under generated names, transposed (``MatMul`` of a ``Linear``) or
reshaped (a 1x1 convolution as a matrix). A parameter is found by its values: the initializer (or
``Constant`` node) holding exactly the given weights, as they are, reshaped, or transposed as a
matrix (first axis against the rest), possibly cast to the tensor's dtype.

Substitution is refused, with the reason, when a parameter is found nowhere (folded into another
tensor, e.g. a precomputed merged kernel, or never used), when one tensor holds two parameters'
values, or when a float tensor of more than ``_LARGEST_CONSTANT`` values, not all equal, is left
that is no parameter (likely computed from parameters at export time: replacing only the
parameters would mix two models; a uniform one is the graph's own, e.g. the unit scale of a
``LayerNormalization``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from parcnetv2.conformance.protocol import Unsupported

__all__ = ["Placement", "WeightMap", "locate_weights"]

# Float constants up to this size are the graph's own (eps, scales, shape helpers); larger ones
# are taken for weights (the smallest official parameter holds 48 values, a norm of parcnetv2_xt).
_LARGEST_CONSTANT = 16


@dataclasses.dataclass(frozen=True)
class Placement:
    """One copy of a parameter in the graph: the tensor's name, whether it is an initializer or
    a ``Constant`` node's value, and whether it holds the parameter transposed as a matrix."""

    tensor: str
    constant_node: bool
    transposed: bool


def _stored(model: onnx.ModelProto) -> Iterator[tuple[str, bool, np.ndarray]]:
    """(name, from a Constant node, values) of every stored float tensor of the main graph."""
    for init in model.graph.initializer:
        yield init.name, False, numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    yield node.output[0], True, numpy_helper.to_array(attr.t)


def _matrix_t(p: np.ndarray) -> np.ndarray:
    return p.reshape(p.shape[0], -1).T


def _holds(stored: np.ndarray, p: np.ndarray) -> bool | None:
    """Whether ``stored`` holds ``p`` transposed (True), as it is or reshaped (False), or not (None)."""
    for transposed, q in ((False, p), (True, _matrix_t(p) if p.ndim >= 2 else None)):
        if q is not None and np.array_equal(q.reshape(stored.shape).astype(stored.dtype), stored):
            return transposed
    return None


@dataclasses.dataclass(frozen=True)
class WeightMap:
    """Every official parameter's copies in one file (``locate_weights``)."""

    placements: Mapping[str, tuple[Placement, ...]]

    def aliases(self) -> dict[str, str]:
        """Tensor name -> the official parameter it holds."""
        return {place.tensor: name for name, copies in self.placements.items() for place in copies}

    def substituted(self, model: onnx.ModelProto, state_dict: Mapping[str, np.ndarray]) -> onnx.ModelProto:
        """A copy of ``model`` computing with ``state_dict`` (official names, official shapes)."""
        values: dict[str, np.ndarray] = {}
        for name, copies in self.placements.items():
            p = np.asarray(state_dict[name])
            for place in copies:
                values[place.tensor] = _matrix_t(p) if place.transposed else p
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        for init in copy.graph.initializer:
            if init.name in values:
                init.CopyFrom(_like(init, values[init.name], init.name))
        for node in copy.graph.node:
            if node.op_type == "Constant" and node.output[0] in values:
                for attr in node.attribute:
                    if attr.name == "value":
                        attr.t.CopyFrom(_like(attr.t, values[node.output[0]], attr.t.name))
        return copy


def _like(stored: onnx.TensorProto, value: np.ndarray, name: str) -> onnx.TensorProto:
    """``value`` in the shape and dtype of ``stored``, under ``name``."""
    dtype = onnx.helper.tensor_dtype_to_np_dtype(stored.data_type)
    return numpy_helper.from_array(value.reshape(tuple(stored.dims)).astype(dtype), name)


def locate_weights(model: onnx.ModelProto, state_dict: Mapping[str, np.ndarray]) -> WeightMap:
    """Where ``model`` keeps each parameter of ``state_dict`` (the weights it was exported from);
    ``Unsupported`` naming the first reason it cannot take other weights (module docstring)."""
    by_size: dict[int, list[tuple[str, bool, np.ndarray]]] = {}
    for entry in _stored(model):
        if entry[2].dtype.kind == "f":
            by_size.setdefault(entry[2].size, []).append(entry)
    holder: dict[str, str] = {}
    placements: dict[str, tuple[Placement, ...]] = {}
    for name, value in state_dict.items():
        p = np.asarray(value)
        copies = []
        for tensor, constant_node, stored in by_size.get(p.size, []):
            transposed = _holds(stored, p)
            if transposed is None:
                continue
            if tensor in holder:
                raise Unsupported(
                    f"tensor {tensor!r} of the file holds the values of both {holder[tensor]} and {name}: "
                    "the harness cannot tell which to replace"
                )
            holder[tensor] = name
            copies.append(Placement(tensor, constant_node, transposed))
        if not copies:
            raise Unsupported(
                f"{name} {p.shape} is in no tensor of the file (as it is, reshaped or transposed): "
                "never used, or folded into another tensor at export"
            )
        placements[name] = tuple(copies)
    for size, entries in by_size.items():
        for tensor, _, stored in entries:
            if size > _LARGEST_CONSTANT and tensor not in holder and np.ptp(stored) > 0:
                raise Unsupported(
                    f"tensor {tensor!r} {stored.shape} of the file is no parameter: computed from parameters "
                    "at export time, it would keep the file's values"
                )
    return WeightMap(placements)
