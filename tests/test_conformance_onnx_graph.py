"""Locating module outputs and inputs in exported ONNX graphs (spec clause 14.7), on hand-made
graphs with the node names of the TorchScript exporter and the scope metadata of the dynamo one.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from parcnetv2.conformance.onnx_graph import OnnxModel, locate_outputs, module_inputs, module_scope  # noqa: E402


def _dynamo_node(op, inputs, outputs, scopes):
    node = helper.make_node(op, inputs, outputs, name=f"node_{outputs[0]}")
    entry = node.metadata_props.add()
    entry.key, entry.value = "pkg.torch.onnx.name_scopes", repr(scopes)
    return node


def test_scope_from_torchscript_names_and_dynamo_metadata():
    """Both exporters' scopes give the official dotted module path."""
    named = helper.make_node("Erf", ["a"], ["b"], name="/stages.0/stages.0.0/token_mixer/act/Erf")
    assert module_scope(named) == "stages.0.0.token_mixer.act"
    assert (
        module_scope(helper.make_node("Conv", ["a"], ["b"], name="/downsample_layers.0/conv/Conv"))
        == "downsample_layers.0.conv"
    )
    assert module_scope(helper.make_node("Identity", ["w"], ["v"], name="Identity_3")) is None
    dynamo = _dynamo_node(
        "Erf",
        ["a"],
        ["b"],
        ["", "stages.0", "stages.0.0", "stages.0.0.token_mixer", "stages.0.0.token_mixer.act", "gelu"],
    )
    assert module_scope(dynamo) == "stages.0.0.token_mixer.act"


def _tiny_graph():
    """x -> norm (Mul by w) -> act (Erf) -> block output (Add with x), named like TorchScript."""
    nodes = [
        helper.make_node("Mul", ["x", "w"], ["n"], name="/stages.0/stages.0.0/norm1/Mul"),
        helper.make_node(
            "Constant",
            [],
            ["k"],
            name="/stages.0/stages.0.0/act/Constant",
            value=helper.make_tensor("k", TensorProto.FLOAT, [], [2.0]),
        ),
        helper.make_node("Mul", ["n", "k"], ["m"], name="/stages.0/stages.0.0/act/Mul"),
        helper.make_node("Erf", ["m"], ["a"], name="/stages.0/stages.0.0/act/Erf"),
        helper.make_node("Add", ["a", "x"], ["y"], name="/stages.0/stages.0.0/Add"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 3])],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_module_outputs_inputs_trace_and_cut_out_modules():
    """The last node of a scope is the module's output; the one activation read from outside is
    its input; the trace and cut-out modules compute what the whole graph computes."""
    model = _tiny_graph()
    names = ["stages.0", "stages.0.0", "stages.0.0.norm1", "stages.0.0.act"]
    assert locate_outputs(model, names) == {
        "stages.0": "y",
        "stages.0.0": "y",
        "stages.0.0.norm1": "n",
        "stages.0.0.act": "a",
    }
    assert module_inputs(model, "stages.0.0.act") == ["n"]
    assert module_inputs(model, "stages.0.0") == ["x"]
    wrapped = OnnxModel(model, names)
    x = np.random.default_rng(0).standard_normal((1, 2, 2, 3)).astype(np.float32)
    runs = wrapped.trace(x)
    assert [r.name for r in runs] == ["stages.0.0.norm1", "stages.0.0.act", "stages.0.0", "stages.0", ""]
    acts = {r.name: r.output for r in runs}
    inputs = {r.name: r.input for r in runs}
    np.testing.assert_allclose(acts["stages.0.0.norm1"], x * [1, 2, 3], rtol=1e-6)
    np.testing.assert_array_equal(inputs["stages.0.0.act"], acts["stages.0.0.norm1"])
    np.testing.assert_allclose(
        wrapped.component("stages.0.0.act")(acts["stages.0.0.norm1"]), acts["stages.0.0.act"], rtol=1e-6
    )
    np.testing.assert_allclose(wrapped(x), acts["stages.0.0"], rtol=1e-6)
    np.testing.assert_array_equal(acts[""], wrapped(x))


def test_unscoped_modules_are_seen_through_their_parameters_and_wrapper_prefixes_dropped():
    """A module no node is scoped to runs "through its parameters" at the first node reading one
    (clause 14.7); torch.compile's ``_orig_mod.`` prefix is dropped from scopes and initializers."""
    nodes = [
        helper.make_node("Mul", ["x", "_orig_mod.stages.0.0.norm1.weight"], ["n"], name="Mul_0"),
        _dynamo_node("Erf", ["n"], ["y"], ["", "_orig_mod.stages.0.0.act", "erf"]),
    ]
    graph = helper.make_graph(
        nodes,
        "unscoped",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        initializer=[helper.make_tensor("_orig_mod.stages.0.0.norm1.weight", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    runs = OnnxModel(model, ["stages.0.0.norm1", "stages.0.0.act"]).trace(np.ones((1, 3), np.float32))
    assert [(r.name, r.via) for r in runs] == [
        ("stages.0.0.norm1", "parameters"),
        ("stages.0.0.act", "forward"),
        ("", "forward"),
    ]
