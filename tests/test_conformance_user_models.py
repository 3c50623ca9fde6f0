"""Validating a user's model (spec clauses 14.6 and 14.7): a torch factory with the official
names (``--backend torch --model package.module:factory``) and an exported ONNX file with the
weights it was exported from (``--backend onnx --model FILE.onnx --weights FILE``). Correct
models pass; a wrong GELU is found in the module where it happens, even where the logits hide it;
wrong names are listed.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from parcnetv2.conformance.runner import run_suite

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

FACTORIES = """
import torch
from parcnetv2.pytorch import model as tm


def official(variant):
    return tm.build_model(variant)


def tanh_gelu(variant):
    model = tm.build_model(variant)
    for module in model.modules():
        if isinstance(module, torch.nn.GELU):
            module.approximate = "tanh"
    return model


def renamed(variant):
    model = tm.build_model(variant)
    model.classifier = model.head
    del model.head
    return model
"""

# A small custom model, so the exported file runs quickly (clause 2.4).
SMALL = dict(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), global_kernel_sizes=(21, 11, 5, 3), num_classes=10)
MODEL_TESTS = ["conformance/test_model.py::test_variant_model", "conformance/test_parameters.py"]
QUICK = ["--conformance-profile", "quick"]


@pytest.fixture(scope="module")
def factories(tmp_path_factory):
    folder = tmp_path_factory.mktemp("factories")
    (folder / "user_factories.py").write_text(FACTORIES)
    return folder


def test_official_torch_factory_passes(factories, tmp_path):
    """Clause 14.6: every whole-model target of a factory (224 x 224, 97 x 131 with batch 2, its own
    weights), its coverage, every module on its own input, names and counts, and a probe."""
    probe = "conformance/test_probes.py::test_module_probe[parcnetv2_xt:stages.0.0.token_mixer.dwconv1]"
    result = run_suite(
        [*MODEL_TESTS, probe, "--backend", "torch", "--model", "user_factories:official", *QUICK],
        report=tmp_path / "r.json",
        pythonpath=factories,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    tests = result.tests()
    targets = {name for name in tests if name.startswith("test_variant_model[")}
    assert targets == {
        "test_variant_model[parcnetv2_xt]",
        "test_variant_model[parcnetv2_xt@97x131]",
        "test_variant_model[parcnetv2_xt,own-weights]",
    }, targets
    whole = tests["test_variant_model[parcnetv2_xt]"]
    assert whole["outcome"] == "passed"
    assert whole["modules_checked"] > 250
    assert whole["coverage"]["problems"] == []
    assert tests[probe.split("::")[1]]["outcome"] == "passed"
    assert tests["test_parameter_count[parcnetv2_base]"]["outcome"] == "passed"


def test_torch_factory_with_tanh_gelu_names_the_first_divergence(factories, tmp_path):
    """Clause 14.6: the first module out of its own bound is the first GELU."""
    result = run_suite(
        ["conformance/test_model.py::test_variant_model", "--backend", "torch", "--model", "user_factories:tanh_gelu",
         *QUICK],
        report=tmp_path / "r.json",
        pythonpath=factories,
    )  # fmt: skip
    assert result.returncode == 1
    divergences = set(result.report["first_divergences"].values())
    assert divergences == {"stages.0.0.token_mixer.act"}, divergences


def test_torch_factory_with_other_names_lists_the_differences(factories, tmp_path):
    """Clause 2.2: missing and unexpected names are listed in the failure and the report."""
    result = run_suite(
        [
            "conformance/test_parameters.py",
            "--backend",
            "torch",
            "--model",
            "user_factories:renamed",
            "--variant",
            "parcnetv2_xt",
            *QUICK,
        ],
        report=tmp_path / "r.json",
        pythonpath=factories,
    )
    assert result.returncode == 1
    names = result.tests()["test_parameter_names_and_shapes[parcnetv2_xt]"]
    assert names["parameter_differences"]["missing"] == ["head.weight", "head.bias"]
    assert names["parameter_differences"]["unexpected"] == ["classifier.weight", "classifier.bias"]


def _export(folder, approximate: str, dynamo: bool = False, half_norm: bool = False) -> tuple[str, str]:
    """A small model with harness-style weights, exported at 45 x 29 (TorchScript exporter at
    opset 17, or the dynamo exporter at opset 18), and its weights (.npz). ``half_norm``: the head
    norm's output goes through float16 and back."""
    from parcnetv2.pytorch import model as tm
    from parcnetv2.reference import Config, parameter_shapes
    from parcnetv2.reference.initialization import independent_weights

    weights = independent_weights(parameter_shapes(Config(**SMALL)), np.random.default_rng(0))
    weights = {k: v.astype(np.float32) for k, v in weights.items()}
    model = tm.build_model(**SMALL, init=False)
    tm.load_numpy_state_dict(model, weights)
    for module in model.modules():
        if isinstance(module, torch.nn.GELU):
            module.approximate = approximate
    if half_norm:
        model.norm.register_forward_hook(lambda module, args, out: out.half().float())
    stem = folder / f"small_{approximate}_{'dynamo' if dynamo else 'torchscript'}"
    np.savez(f"{stem}.npz", **weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(model, (torch.zeros(2, 3, 45, 29),), dynamo=True, opset_version=18).save(f"{stem}.onnx")
        else:
            torch.onnx.export(model, (torch.zeros(2, 3, 45, 29),), f"{stem}.onnx", dynamo=False, opset_version=17)
    return f"{stem}.onnx", f"{stem}.npz"


def test_exported_onnx_file_with_its_weights_passes(tmp_path):
    """Clause 14.7: output, every located module on its own input, probes of modules cut out of the
    graph, initializers; with the file's weights and with the harness's written into it."""
    model, weights = _export(tmp_path, "none")
    probe = "conformance/test_probes.py::test_module_probe[file,harness-weights:stages.1.0.token_mixer.dwconv1.conv_h]"
    result = run_suite(
        [*MODEL_TESTS, probe, "--backend", "onnx", "--model", model, "--weights", weights, *QUICK],
        report=tmp_path / "r.json",
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert result.report["backend_info"]["opset"] == 17
    assert result.report["backend_info"]["other_weights"].startswith("every parameter located")
    tests = result.tests()
    assert tests["test_variant_model[file]"]["modules_checked"] > 60
    assert tests["test_variant_model[file,harness-weights]"]["modules_checked"] > 60
    assert tests["test_exported_initializers_match_weights"]["outcome"] == "passed"
    assert tests[probe.split("::")[1]]["outcome"] == "passed"


def test_exported_onnx_file_with_tanh_gelu_names_the_first_divergence(tmp_path):
    """Clause 14.7: the wrong GELU is found at its first module, inside the file."""
    model, weights = _export(tmp_path, "tanh")
    result = run_suite(
        ["conformance/test_model.py::test_variant_model", "--backend", "onnx", "--model", model, "--weights", weights,
         *QUICK],
        report=tmp_path / "r.json",
    )  # fmt: skip
    assert result.returncode == 1
    assert set(result.report["first_divergences"].values()) == {"stages.0.0.token_mixer.act"}


def test_exported_onnx_file_without_scopes_is_checked_with_the_harness_weights(tmp_path):
    """Clause 14.7: a graph whose nodes name no module (as a port of one flat module exports) gets
    the harness's weights written in; a wrong GELU is then found at the logits, placed between the
    image and the logits."""
    model, weights = _export(tmp_path, "tanh")
    proto = onnx.load(model)
    for i, node in enumerate(proto.graph.node):
        node.name = f"n{i}"
    onnx.save(proto, model)
    result = run_suite(
        ["conformance/test_model.py::test_variant_model", "--backend", "onnx", "--model", model, "--weights", weights,
         *QUICK],
        report=tmp_path / "r.json",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout[-3000:]
    assert result.tests()["test_variant_model[file,harness-weights]"]["outcome"] == "failed"
    assert set(result.report["first_divergences"].values()) == {
        "between the image and the logits (no module of the model could be observed)"
    }


def test_exported_onnx_file_computing_in_float16_fails_even_when_the_runtime_does_not(tmp_path):
    """Clause 14.7: a Cast of an activation to float16 in a float32 file fails with its place,
    whether or not ONNX Runtime keeps the round trip."""
    model, weights = _export(tmp_path, "none", half_norm=True)
    result = run_suite(
        ["conformance/test_model.py::test_variant_model", "--backend", "onnx", "--model", model, "--weights", weights,
         *QUICK],
        report=tmp_path / "r.json",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout[-3000:]
    assert "computes activations in a narrower float type" in result.stdout
    assert set(result.report["first_divergences"].values()) == {"after norm, before head"}


def test_dynamo_export_is_located_through_scope_metadata(tmp_path):
    """Clause 14.7: the dynamo exporter's pkg.torch.onnx.name_scopes locate modules (blocks and token
    mixers included) just as TorchScript node names do."""
    pytest.importorskip("onnxscript")
    model, weights = _export(tmp_path, "none", dynamo=True)
    probe = "conformance/test_probes.py::test_module_probe[file,harness-weights:stages.0.0]"
    result = run_suite(
        ["conformance/test_model.py", probe, "--backend", "onnx", "--model", model, "--weights", weights, *QUICK],
        report=tmp_path / "r.json",
    )
    assert result.returncode == 0, result.stdout[-3000:]
    tests = result.tests()
    assert tests["test_variant_model[file]"]["modules_checked"] > 60
    assert tests["test_variant_model[file]"]["coverage"]["problems"] == []
    assert tests[probe.split("::")[1]]["outcome"] == "passed"
