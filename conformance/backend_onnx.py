"""The built-in ``onnx`` backend and exported files given by the user (spec clauses 14.3, 14.7).

``OnnxBackend`` exports the project's PyTorch model (``torch_model``) for every operation,
component and model it is asked for, with ``torch.onnx.export(..., dynamo=False)`` at opset 17,
and runs the export with ONNX Runtime's CPUExecutionProvider. Exports are cached per module,
weights and input shape within the process (so per pytest-xdist worker).
``OnnxFileBackend`` is ``--backend onnx --model FILE.onnx --weights FILE``: one fixed model,
the weights it was exported from, and its intermediate activations (``onnx_graph``); when the
harness can locate every parameter in the graph (``onnx_weights``), the file also runs with other
weights.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from parcnetv2.conformance.backend_torch import TorchBackend
from parcnetv2.conformance.observation import Run, module_names
from parcnetv2.conformance.onnx_graph import OnnxModel, official_name, session
from parcnetv2.conformance.onnx_weights import WeightMap, locate_weights
from parcnetv2.conformance.protocol import Unsupported
from parcnetv2.reference.architecture import Config

__all__ = ["OPSET", "OnnxBackend", "OnnxFileBackend", "backend"]

OPSET = 17
_CACHE_SIZE = 32
_EXPORTER = "torch.onnx.export(dynamo=False) (TorchScript exporter)"


def export(module: nn.Module, x: np.ndarray) -> onnx.ModelProto:
    """``module`` exported at opset 17 for an input shaped like ``x`` (NCHW or NHWC)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.from_numpy(np.ascontiguousarray(x)),),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=["x"],
            output_names=["y"],
        )
    return onnx.load_from_string(buffer.getvalue())


def _reject_interpolate_true(interpolate: Any) -> None:
    if interpolate is True:
        raise Unsupported(
            f"{_EXPORTER} cannot export interpolate=True: the resized kernel's length comes from "
            "the input's shape, and the exporter refuses a convolution with a kernel of unknown shape"
        )


class OnnxBackend(TorchBackend):
    """The project's torch model, exported per call and run by ONNX Runtime (clause 14.3)."""

    # Kernel arithmetic on weights happens in torch before the export; nothing for ONNX Runtime.
    resize_kernel = None
    reparameterize = None

    def __init__(self) -> None:
        super().__init__("cpu", name="onnx")
        self._sessions: OrderedDict[str, ort.InferenceSession] = OrderedDict()

    def info(self) -> dict[str, Any]:
        return {
            "implementation": "parcnetv2.pytorch.model exported to ONNX",
            "exporter": _EXPORTER,
            "opset": OPSET,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "provider": "CPUExecutionProvider",
            "torch": torch.__version__,
        }

    def _key(self, module: nn.Module, x: np.ndarray) -> str:
        digest = hashlib.sha1(repr(module).encode())
        digest.update(repr((x.shape, x.dtype.str)).encode())
        for name, tensor in module.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
        return digest.hexdigest()

    def _run(self, module: nn.Module, x: np.ndarray) -> np.ndarray:
        key = self._key(module, x)
        if key in self._sessions:
            self._sessions.move_to_end(key)
        else:
            self._sessions[key] = session(export(module, x))
            if len(self._sessions) > _CACHE_SIZE:
                self._sessions.popitem(last=False)
        return self._sessions[key].run(None, {"x": np.ascontiguousarray(x)})[0]

    def oversized_conv(self, x, k_h, k_w, interpolate=False):
        _reject_interpolate_true(interpolate)
        return super().oversized_conv(x, k_h, k_w, interpolate)

    def parc_spatial(self, params, x, *, interpolate, local_padding):
        _reject_interpolate_true(interpolate)
        return super().parc_spatial(params, x, interpolate=interpolate, local_padding=local_padding)

    def token_mixer(self, params, x, *, interpolate, local_padding, reparameterized=False):
        _reject_interpolate_true(interpolate)
        return super().token_mixer(
            params, x, interpolate=interpolate, local_padding=local_padding, reparameterized=reparameterized
        )

    def block(self, params, x, *, res_scale, eps, interpolate, local_padding, reparameterized=False):
        _reject_interpolate_true(interpolate)
        return super().block(
            params,
            x,
            res_scale=res_scale,
            eps=eps,
            interpolate=interpolate,
            local_padding=local_padding,
            reparameterized=reparameterized,
        )

    def model(self, config: Config, state_dict: Mapping[str, np.ndarray]) -> _ExportingModel:
        _reject_interpolate_true(config.interpolate)
        return _ExportingModel(super().model(config, state_dict).module, module_names(config))


class _ExportingModel:
    """A torch model exported on first use for the input shape it is called with."""

    def __init__(self, module: nn.Module, names: list[str]):
        self._module, self._names = module, names
        self._exports: dict[tuple[int, ...], OnnxModel] = {}

    def _for(self, x: np.ndarray) -> OnnxModel:
        if x.shape not in self._exports:
            self._exports[x.shape] = OnnxModel(export(self._module, x), self._names)
        return self._exports[x.shape]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """NCHW images (N, 3, H, W) -> logits (N, classes)."""
        return self._for(x)(x)

    def trace(self, x: np.ndarray) -> list[Run]:
        """Module runs located through the exporter's scope names and parameters (clause 14.7)."""
        return self._for(x).trace(x)


class OnnxFileBackend:
    """A user's exported model and the weights it was exported from (clause 14.7).

    ``fixed_state_dict`` holds those weights (the harness runs the reference with them);
    ``model`` returns the file as an ``OnnxModel`` with its intermediate activations, with
    other weights written into it where ``other_weights`` is None (else it says why not).
    """

    def __init__(self, path: Path, state_dict: Mapping[str, np.ndarray], config: Config):
        self.name = f"onnx --model {Path(path).name}"
        self.path = Path(path)
        self.proto = onnx.load(str(path))
        self.fixed_state_dict = dict(state_dict)
        self.config = config
        self._weights: WeightMap | None = None
        self.other_weights: str | None = None
        try:
            self._weights = locate_weights(self.proto, self.fixed_state_dict)
        except Unsupported as exc:
            self.other_weights = str(exc)
        self._aliases = self._weights.aliases() if self._weights else {}
        self._model = OnnxModel(self.proto, module_names(config), self._aliases)
        self.dtype = self._model.dtype
        self._substituted: tuple[str, OnnxModel] | None = None

    def info(self) -> dict[str, Any]:
        opsets = {o.domain or "ai.onnx": o.version for o in self.proto.opset_import}
        return {
            "implementation": f"ONNX file {self.path}",
            "opset": opsets.get("ai.onnx"),
            "producer": f"{self.proto.producer_name} {self.proto.producer_version}".strip(),
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "provider": "CPUExecutionProvider",
            "input_shape": list(self._model.input_shape),
            "located_activations": len(self._model.outputs),
            "other_weights": self.other_weights or "every parameter located: the harness's weights are written in",
            "lowered": self._model.lowered,
        }

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        return self._model.input_shape

    def initializers(self) -> dict[str, np.ndarray]:
        """Initializers stored under official parameter names (the exporter keeps most)."""
        stored = {official_name(i.name): i for i in self.proto.graph.initializer}
        return {name: onnx.numpy_helper.to_array(i) for name, i in stored.items() if name in self.fixed_state_dict}

    def parameter_shapes(self, config: Config) -> dict[str, tuple[int, ...]]:
        if config != self.config:
            raise Unsupported(f"the ONNX file is one model ({self.config.name})")
        return {k: tuple(np.shape(v)) for k, v in self.fixed_state_dict.items()}

    def model(self, config: Config, state_dict: Mapping[str, np.ndarray]) -> OnnxModel:
        """The file computing with ``state_dict``: as stored when those are its weights, else with
        them written in (the last such model is kept)."""
        if config != self.config:
            raise Unsupported(f"the ONNX file is one model ({self.config.name})")
        if all(np.array_equal(state_dict[k], v) for k, v in self.fixed_state_dict.items()):
            return self._model
        if self._weights is None:
            raise Unsupported(f"the ONNX file cannot take other weights: {self.other_weights}")
        digest = hashlib.sha1()
        for name in self.fixed_state_dict:
            digest.update(np.ascontiguousarray(state_dict[name]).tobytes())
        key = digest.hexdigest()
        if self._substituted is None or self._substituted[0] != key:
            proto = self._weights.substituted(self.proto, state_dict)
            self._substituted = (key, OnnxModel(proto, module_names(config), self._aliases))
        return self._substituted[1]


def backend() -> OnnxBackend:
    """Entry point of the built-in ``onnx`` backend."""
    return OnnxBackend()
