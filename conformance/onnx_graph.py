"""Intermediate activations of an exported ONNX model (spec clause 14.7).

Exporters record which module each node came from: the TorchScript exporter
(``torch.onnx.export(..., dynamo=False)``) in the node name (``/stages.0/stages.0.0/token_mixer/Erf``),
the dynamo exporter in the node's metadata ``pkg.torch.onnx.name_scopes``
(``['', 'stages.0', 'stages.0.0', 'stages.0.0.token_mixer', 'erf']``). The output of a module is
the output of the last node inside its scope (graphs are stored in execution order); its input
is the one activation its nodes read from outside the scope.

``OnnxModel`` adds the module inputs and outputs as extra graph outputs (``trace``) and cuts each
module out of the graph as a model of its own (``component``, with ``onnx.utils.Extractor``), so
every module can be checked on its own. The layout of a tensor is whatever the exporter
produced; the harness maps it to the reference's layout by shape (clause 14.7).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx.utils import Extractor

from parcnetv2.conformance.observation import Run
from parcnetv2.conformance.protocol import Unsupported

__all__ = ["OnnxModel", "locate_outputs", "module_inputs", "module_scope", "session", "with_outputs"]

SCOPE_METADATA = "pkg.torch.onnx.name_scopes"
# Nodes that compute no activation (constants, shape arithmetic) never end a module's scope.
_NOT_ACTIVATIONS = {"Constant", "Shape", "Gather", "Unsqueeze", "Concat", "Cast", "ConstantOfShape"}


_WRAPPERS = ("_orig_mod.", "module.")  # torch.compile's and DataParallel's prefixes


def official_name(name: str) -> str:
    """``name`` without the prefixes a wrapper adds when a wrapped model is exported (clause 14.6)."""
    while name.startswith(_WRAPPERS):
        name = name.split(".", 1)[1]
    return name


def module_scope(node: onnx.NodeProto) -> str | None:
    """The dotted official module path a node was exported from, or None (no scope recorded)."""
    scope = _recorded_scope(node)
    return None if scope is None else official_name(scope)


def _recorded_scope(node: onnx.NodeProto) -> str | None:
    for entry in node.metadata_props:
        if entry.key == SCOPE_METADATA:
            scopes = ast.literal_eval(entry.value)
            return scopes[-2] if len(scopes) >= 2 else None
    if not node.name.startswith("/"):
        return None
    path = ""
    for segment in node.name.split("/")[1:-1]:
        if not path:
            path = segment
        elif segment.startswith(path + "."):
            path = segment  # a ModuleList/Sequential child carries its full name
        else:
            path = f"{path}.{segment}"
    return path or None


def _enclosing(path: str) -> Iterable[str]:
    parts = path.split(".")
    for end in range(1, len(parts) + 1):
        yield ".".join(parts[:end])


def locate_outputs(model: onnx.ModelProto, names: Iterable[str]) -> dict[str, str]:
    """Map official module names to the tensor their module produced last (clause 14.7)."""
    wanted = set(names)
    found: dict[str, str] = {}
    for node in model.graph.node:
        scope = module_scope(node)
        if scope is None or node.op_type in _NOT_ACTIVATIONS or not node.output:
            continue
        for path in _enclosing(scope):
            if path in wanted:
                found[path] = node.output[0]
    return found


def _constants(model: onnx.ModelProto) -> set[str]:
    """Initializers and every tensor computed from them alone (e.g. de-duplicated weights)."""
    constant = {i.name for i in model.graph.initializer}
    for node in model.graph.node:
        if all(i in constant for i in node.input if i):
            constant.update(node.output)
    return constant


def module_inputs(model: onnx.ModelProto, name: str, constants: set[str] | None = None) -> list[str]:
    """The activations the nodes of module ``name`` read from outside it. Nodes without a scope
    (the dynamo exporter leaves some, e.g. Split) belong to the module when they only read
    tensors computed inside it."""
    constants = _constants(model) if constants is None else constants
    inside: set[str] = set()
    nodes = []
    for node in model.graph.node:
        scope = module_scope(node)
        reads = [t for t in node.input if t and t not in constants]
        scoped = scope is not None and (scope == name or scope.startswith(name + "."))
        if scoped or (scope is None and reads and all(t in inside for t in reads)):
            nodes.append(node)
            inside.update(node.output)
    external: list[str] = []
    for node in nodes:
        for tensor in node.input:
            if tensor and tensor not in inside and tensor not in constants and tensor not in external:
                external.append(tensor)
    return external


def with_outputs(model: onnx.ModelProto, tensors: Sequence[str]) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs ``tensors`` (typed by shape inference when it can)."""
    extended = onnx.ModelProto()
    extended.CopyFrom(model)
    try:
        typed = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    except Exception:  # shape inference is best effort; untyped outputs still run
        typed = {}
    present = {o.name for o in extended.graph.output}
    elem = model.graph.input[0].type.tensor_type.elem_type
    for name in tensors:
        if name not in present:
            extended.graph.output.append(typed.get(name) or onnx.helper.make_tensor_value_info(name, elem, None))
            present.add(name)
    return extended


def session(model: onnx.ModelProto | bytes) -> ort.InferenceSession:
    """An ONNX Runtime session on the CPU provider, warnings silenced."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _image_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    initializers = {i.name for i in model.graph.initializer}
    return next(i for i in model.graph.input if i.name not in initializers)


def _dims(value: Any) -> tuple[int | None, ...]:
    return tuple(d if isinstance(d, int) else None for d in value.shape)


def _to_layout(x: np.ndarray, dims: tuple[int | None, ...]) -> np.ndarray:
    """``x`` transposed between NHWC and NCHW when only that fits the known ``dims``."""

    def fits(shape: tuple[int, ...]) -> bool:
        return len(shape) == len(dims) and all(d is None or d == s for d, s in zip(dims, shape))

    if fits(x.shape) or x.ndim != 4:
        return x
    for axes in ((0, 3, 1, 2), (0, 2, 3, 1)):
        if fits(tuple(x.shape[a] for a in axes)):
            return np.ascontiguousarray(x.transpose(axes))
    return x


class OnnxModel:
    """An ONNX model of the whole network as a model of the protocol (clause 14.2): callable on
    NCHW images, with ``trace(x)`` and ``component(name)`` for the official module ``names`` it can
    locate. Its tensors may be in another layout than the official one: the harness maps them by
    shape (clause 14.7). Its modules take the shapes the graph was exported with (``fixed_shapes``)."""

    fixed_shapes = True

    def __init__(self, model: onnx.ModelProto, names: Sequence[str]):
        self.proto = model
        self.names = [n for n in names if n]
        self._known = set(self.names)
        self.input = _image_input(model)
        self.outputs = locate_outputs(model, self.names)
        self._plain: ort.InferenceSession | None = None
        self._extended: ort.InferenceSession | None = None
        self._extractor: Extractor | None = None
        self._constants: set[str] | None = None

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        """The image input's shape; None for a dimension the graph leaves free."""
        dims = self.input.type.tensor_type.shape.dim
        return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(self.input.type.tensor_type.elem_type))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """NCHW images (N, 3, H, W) -> the graph's first output (the logits)."""
        if self._plain is None:
            self._plain = session(self.proto)
        return self._plain.run(None, {self.input.name: np.ascontiguousarray(x)})[0]

    def trace(self, x: np.ndarray) -> list[Run]:
        """The runs of one forward pass (clause 14.7): every module located by its scope, with its
        input and output (input None where it reads more than one activation from outside its
        scope), and every module seen only through its parameters (``via`` "parameters"), in the
        graph's order (children before parents); then the whole model as ``""``."""
        if self._constants is None:
            self._constants = _constants(self.proto)
        located = [n for n in self.names if n in self.outputs]
        reads = {n: module_inputs(self.proto, n, self._constants) for n in located}
        inputs = {n: r[0] for n, r in reads.items() if len(r) == 1 and r[0] != self.input.name}
        tensors = list(dict.fromkeys([self.outputs[n] for n in located] + list(inputs.values())))
        if self._extended is None:
            self._extended = session(with_outputs(self.proto, tensors))
        feed = np.ascontiguousarray(x)
        fetched = self._extended.run([self.proto.graph.output[0].name, *tensors], {self.input.name: feed})
        logits, by_tensor = fetched[0], dict(zip(tensors, fetched[1:]))
        by_tensor[self.input.name] = feed
        position = {t: i for i, node in enumerate(self.proto.graph.node) for t in node.output}
        runs = [
            (
                position.get(self.outputs[n], -1),
                -n.count("."),
                Run(
                    n, "forward", by_tensor.get(inputs.get(n, "")) if n in inputs else None, by_tensor[self.outputs[n]]
                ),
            )
            for n in located
        ]
        runs += [(at, -n.count("."), Run(n, "parameters")) for n, at in self._parameter_uses(set(located)).items()]
        runs.sort(key=lambda r: r[:2])  # the graph's order, children first
        return [*(r[2] for r in runs), Run("", "forward", feed, logits)]

    def _parameter_uses(self, located: set[str]) -> dict[str, int]:
        """Modules no node is scoped to (a port computing in a parent, a flat port) whose official
        parameters the graph reads: the position of the first node reading one (clause 14.7)."""
        initializers = {i.name for i in self.proto.graph.initializer}
        first: dict[str, int] = {}
        for i, node in enumerate(self.proto.graph.node):
            for tensor in node.input:
                if tensor not in initializers:
                    continue
                for name in _enclosing(official_name(tensor).rpartition(".")[0]):
                    if name in self._known and name not in located:
                        first.setdefault(name, i)
        return first

    def component(self, name: str) -> Callable[[np.ndarray], np.ndarray]:
        """Module ``name`` cut out of the graph (its one input to its output), as a callable on
        an input in the official layout; Unsupported when it cannot be located or cut out."""
        if name not in self.outputs:
            raise Unsupported(f"no node of the ONNX graph is scoped {name!r}")
        if self._extractor is None:
            self._extractor = Extractor(onnx.shape_inference.infer_shapes(self.proto))
            self._constants = _constants(self.proto)
        inputs = module_inputs(self.proto, name, self._constants)
        if len(inputs) != 1:
            raise Unsupported(f"module {name!r} reads {len(inputs)} activations from outside its scope, not one")
        part = session(self._extractor.extract_model(inputs, [self.outputs[name]]))
        feed = part.get_inputs()[0]

        def run(x: np.ndarray) -> np.ndarray:
            return part.run(None, {feed.name: _to_layout(np.asarray(x), _dims(feed))})[0]

        return run
