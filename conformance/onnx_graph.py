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
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper
from onnx.utils import Extractor

from parcnetv2.conformance.observation import Run
from parcnetv2.conformance.protocol import Unsupported

__all__ = ["OnnxModel", "locate_outputs", "module_inputs", "module_scope", "runnable", "session", "with_outputs"]

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


# ONNX Runtime's refusal of an operator it has no kernel for at the node's types.
_NO_KERNEL = re.compile(r"Could not find an implementation for (\w+)\(\d+\) node")
_LOWERING_ROUNDS = 8  # one per operator lowered


def _create(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def runnable(model: onnx.ModelProto) -> tuple[ort.InferenceSession, list[str]]:
    """A CPU session for ``model`` and what was lowered to run it: ONNX Runtime has no float64
    kernel for some operators (Conv, Erf), so a file computing internally in float64 would not run
    at all; those nodes run in float32 between two Casts instead (a lower precision than the file
    states, so its error can only grow), and the list says so (clause 14.7). ``model`` is not
    changed: a copy is lowered, and only when needed."""
    lowered: list[str] = []
    for _ in range(_LOWERING_ROUNDS):
        try:
            return _create(model), lowered
        except Exception as exc:  # ORT raises its own exception types
            refused = _NO_KERNEL.search(str(exc))
            if refused is None:
                raise
            op = refused.group(1)
            model = model if lowered else _copy(model)
            count = _lower_float64(model, op)
            if count == 0:
                raise
            lowered.append(f"{count} float64 {op} nodes run in float32 (no float64 kernel in ONNX Runtime)")
    return _create(model), lowered


def _lower_float64(model: onnx.ModelProto, op: str) -> int:
    """Make every ``op`` node reading a float64 tensor compute in float32, in place; how many."""
    inferred = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.value_info, *inferred.input, *inferred.output)}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    double, single = onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT
    nodes, count = [], 0
    for k, node in enumerate(model.graph.node):
        if node.op_type != op or not any(types.get(t) == double for t in node.input if t):
            nodes.append(node)
            continue
        count += 1
        lowered = onnx.NodeProto()
        lowered.CopyFrom(node)
        for i, tensor in enumerate(node.input):
            if tensor and types.get(tensor) == double:
                lowered.input[i] = f"{tensor}__float32_{k}"
                nodes.append(helper.make_node("Cast", [tensor], [lowered.input[i]], to=single))
        for i, tensor in enumerate(node.output):
            lowered.output[i] = f"{tensor}__float32_{k}"
        nodes.append(lowered)
        nodes += [helper.make_node("Cast", [t], [o], to=double) for t, o in zip(lowered.output, node.output)]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return count


def session(model: onnx.ModelProto | bytes) -> ort.InferenceSession:
    """An ONNX Runtime session on the CPU provider, warnings silenced (``runnable``'s lowering applied)."""
    return runnable(onnx.load_from_string(model) if isinstance(model, bytes) else model)[0]


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


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

    def __init__(self, model: onnx.ModelProto, names: Sequence[str], aliases: Mapping[str, str] | None = None):
        self.proto = model
        self.aliases = dict(aliases or {})  # tensor -> the official parameter it holds
        self.names = [n for n in names if n]
        self._known = set(self.names)
        self.input = _image_input(model)
        self.outputs = locate_outputs(model, self.names)
        # Created now so that what had to be lowered to run at all is known up front (``runnable``);
        # a graph ONNX Runtime refuses (a bfloat16 Conv) fails when run, after the harness has named
        # what it can see in the graph itself.
        self.lowered: list[str] = []
        self._plain: ort.InferenceSession | None = None
        self._refused: Exception | None = None
        try:
            self._plain, self.lowered = runnable(model)
        except Exception as exc:  # ORT raises its own exception types
            self._refused = exc
        # ONNX Runtime's DFT operator is a direct DFT on lengths that are not powers of two (clause 11.6).
        self.computes_dft = any(node.op_type == "DFT" for node in model.graph.node)
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
            raise RuntimeError(f"ONNX Runtime cannot run the file: {self._refused}")
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
        parameters the graph computes with: the position of the first node that reads one, or a
        tensor computed from one alone (a Cast to float64, a transpose), together with an
        activation (clause 14.7). Tensors are known as parameters by their official names and by
        the ``aliases`` the model was given (``onnx_weights``: folded copies under other names)."""
        if self._constants is None:
            self._constants = _constants(self.proto)
        owner = {i.name: official_name(i.name) for i in self.proto.graph.initializer}
        owner.update(self.aliases)
        first: dict[str, int] = {}
        for i, node in enumerate(self.proto.graph.node):
            params = [owner[t] for t in node.input if t in owner]
            if not params:
                continue
            if all(t in self._constants for t in node.input if t):  # arithmetic on weights alone
                owner.update((t, params[0]) for t in node.output)
                continue
            for param in params:
                for name in _enclosing(param.rpartition(".")[0]):
                    if name in self._known and name not in located:
                        first.setdefault(name, i)
        return first

    def narrowed(self) -> list[str]:
        """Where the graph casts an activation to a float type narrower than its image input's
        (float16 or bfloat16 in a float32 file): "module or place: Cast node -> type" (clause 14.7). ONNX
        Runtime's CPU provider may drop such a Cast pair and compute in float32; another runtime
        would not, so the file is judged by what it says."""
        width = {onnx.TensorProto.DOUBLE: 64, onnx.TensorProto.FLOAT: 32,
                 onnx.TensorProto.FLOAT16: 16, onnx.TensorProto.BFLOAT16: 16}  # fmt: skip
        own = width.get(self.input.type.tensor_type.elem_type, 0)
        if self._constants is None:
            self._constants = _constants(self.proto)
        ends = {self.outputs[n]: n for n in self.names if n in self.outputs}
        order = [(i, ends[t]) for i, node in enumerate(self.proto.graph.node) for t in node.output if t in ends]
        found = []
        for i, node in enumerate(self.proto.graph.node):
            to = next((a.i for a in node.attribute if a.name == "to"), None)
            if node.op_type != "Cast" or node.input[0] in self._constants or width.get(to, own) >= own:
                continue
            after = next((n for at, n in reversed(order) if at < i), "the input")
            before = next((n for at, n in order if at > i), "the logits")
            where = module_scope(node) or f"after {after}, before {before}"
            found.append(f"{where}: {node.name or node.output[0]} -> {onnx.TensorProto.DataType.Name(to)}")
        return found

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
