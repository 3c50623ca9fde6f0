"""Weights of an exported file found by their values and replaced (spec clause 14.7), and casts to
a narrower float type found in a graph, on hand-made graphs shaped like the exporters' output.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from parcnetv2.conformance.onnx_graph import OnnxModel, session  # noqa: E402
from parcnetv2.conformance.onnx_weights import locate_weights  # noqa: E402
from parcnetv2.conformance.protocol import Unsupported  # noqa: E402

C, HIDDEN = 4, 6


def _weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "fc1.weight": rng.standard_normal((HIDDEN, C)).astype(np.float32),  # Linear: y = x W^T + b
        "fc1.bias": rng.standard_normal(HIDDEN).astype(np.float32),
        "proj.weight": rng.standard_normal((C, HIDDEN, 1, 1)).astype(np.float32),  # a 1x1 conv as a matrix
    }


def _graph(weights: dict[str, np.ndarray], *, extra: list[onnx.TensorProto] = (), cast_to: int | None = None):
    """x (2, C) -> MatMul with fc1.weight^T (a generated name, as constant folding leaves it) + bias
    -> [optional Cast pair] -> MatMul with proj.weight reshaped to a matrix, transposed (a Constant)."""
    w1t = numpy_helper.from_array(weights["fc1.weight"].T.copy(), "onnx::MatMul_17")
    b1 = numpy_helper.from_array(weights["fc1.bias"], "fc1.bias")
    proj = weights["proj.weight"].reshape(C, HIDDEN).T.copy()
    nodes = [
        helper.make_node("Constant", [], ["p"], name="/proj/Constant", value=numpy_helper.from_array(proj, "p")),
        helper.make_node("MatMul", ["x", "onnx::MatMul_17"], ["h0"], name="/fc1/MatMul"),
        helper.make_node("Add", ["h0", "fc1.bias"], ["h"], name="/fc1/Add"),
    ]
    hidden = "h"
    if cast_to is not None:
        nodes += [
            helper.make_node("Cast", ["h"], ["h16"], name="/Cast", to=cast_to),
            helper.make_node("Cast", ["h16"], ["h32"], name="/Cast_1", to=TensorProto.FLOAT),
        ]
        hidden = "h32"
    nodes.append(helper.make_node("MatMul", [hidden, "p"], ["y"], name="/proj/MatMul"))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, C])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, C])],
        initializer=[w1t, b1, *extra],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_parameters_are_found_by_value_and_replaced():
    """Transposed, reshaped, generated names, initializers and Constant nodes: the substituted file
    computes with the new weights, bit for bit as the same graph written from them."""
    file_weights, other = _weights(0), _weights(1)
    model = _graph(file_weights)
    placements = locate_weights(model, file_weights).placements
    assert placements["fc1.weight"][0].tensor == "onnx::MatMul_17" and placements["fc1.weight"][0].transposed
    assert placements["proj.weight"][0].constant_node and placements["proj.weight"][0].transposed
    assert not placements["fc1.bias"][0].transposed
    x = np.random.default_rng(2).standard_normal((2, C)).astype(np.float32)
    substituted = locate_weights(model, file_weights).substituted(model, other)
    got = session(substituted).run(None, {"x": x})[0]
    want = session(_graph(other)).run(None, {"x": x})[0]  # the same graph written from them: same arithmetic
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    worst = np.unravel_index(np.argmax(np.abs(got - want)), got.shape)
    assert np.array_equal(got, want), f"substituted graph at {worst}: {got[worst]} vs {want[worst]}"
    unchanged = session(model).run(None, {"x": x})[0]
    assert not np.array_equal(unchanged, got), "the original file must keep its own weights"


def test_refused_when_a_parameter_is_missing_shared_or_derived():
    """The harness does not mix two models: each reason is named."""
    weights = _weights(0)
    with pytest.raises(Unsupported, match=r"extra.weight \(3,\) is in no tensor"):
        locate_weights(_graph(weights), {**weights, "extra.weight": np.ones(3, np.float32)})
    twin = {**weights, "fc1.bias_copy": weights["fc1.bias"].copy()}
    with pytest.raises(Unsupported, match="holds the values of both fc1.bias and fc1.bias_copy"):
        locate_weights(_graph(weights), twin)
    derived = numpy_helper.from_array(np.arange(20, dtype=np.float32), "folded_kernel")
    with pytest.raises(Unsupported, match="'folded_kernel' .20,. of the file is no parameter"):
        locate_weights(_graph(weights, extra=[derived]), weights)
    uniform = numpy_helper.from_array(np.ones(20, np.float32), "unit_scale")  # LayerNormalization's own
    locate_weights(_graph(weights, extra=[uniform]), weights)


@pytest.mark.parametrize("narrow", [TensorProto.FLOAT16, TensorProto.BFLOAT16])
def test_casts_of_activations_to_a_narrower_float_are_named(narrow):
    """Clause 14.7: a float16 or bfloat16 activation in a float32 file is found with its place,
    whatever the runtime makes of it; a Cast to float64 or of a constant is not."""
    weights = _weights(0)
    found = OnnxModel(_graph(weights, cast_to=narrow), ["fc1", "proj"]).narrowed()
    assert found == [f"after fc1, before proj: /Cast -> {TensorProto.DataType.Name(narrow)}"]
    assert OnnxModel(_graph(weights, cast_to=TensorProto.DOUBLE), ["fc1", "proj"]).narrowed() == []
    assert OnnxModel(_graph(weights), ["fc1", "proj"]).narrowed() == []
