"""The built-in ``torch`` and ``torch-cuda`` backends and user models given by a factory
(spec clause 14.3, 14.6).

``TorchBackend`` runs the project's PyTorch model (``parcnetv2.pytorch.model``): every
protocol operation is one of its modules (or a functional layer) with the given weights, run on
CPU or a CUDA device. ``TorchModuleBackend`` wraps a user's ``factory(variant) -> nn.Module``
(``--backend torch --model package.module:factory``): it provides whole models of the official
variants only, with their named components and activations. Importing this module imports torch.

Shape legend: N, C, H, W, K. Layouts are the official ones (clause 1.2).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from parcnetv2 import __version__
from parcnetv2.conformance.observation import Run, module_names
from parcnetv2.conformance.protocol import BackendUnavailable, Unsupported
from parcnetv2.conformance.torch_trace import callable_module, submodule, trace_module, unwrap
from parcnetv2.errors import WeightsError
from parcnetv2.pytorch import model as tm
from parcnetv2.reference.architecture import Config
from parcnetv2.spec import architecture_defaults

__all__ = ["TorchBackend", "TorchModel", "TorchModuleBackend", "backend", "cuda_backend"]


class _Spatial(nn.Module):
    """OC(x) + DW7(x) of the token mixer (clause 8.1), with the official sub-module names."""

    def __init__(self, channels: int, kernel: int, local: int, interpolate: Any):
        super().__init__()
        self.dwconv1 = tm.OversizeConv2d(channels, kernel, interpolate)
        self.dwconv2 = nn.Conv2d(channels, channels, local, padding=local // 2, groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dwconv1(x) + self.dwconv2(x)


def _conv(weight: np.ndarray, bias: np.ndarray | None, **kwargs: Any) -> nn.Conv2d:
    cout, cin_per_group, kh, kw = weight.shape
    groups = kwargs.pop("groups", 1)
    return nn.Conv2d(cin_per_group * groups, cout, (kh, kw), groups=groups, bias=bias is not None, **kwargs)


class TorchBackend:
    """The project's PyTorch model on ``device``, float32 (clause 14.3)."""

    def __init__(self, device: str = "cpu", name: str = "torch"):
        self.name = name
        self.dtype = np.dtype(np.float32)
        self.device = torch.device(device)

    def info(self) -> dict[str, Any]:
        return {
            "implementation": "parcnetv2.pytorch.model",
            "torch": torch.__version__,
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "parcnetv2": __version__,
        }

    # ---- running --------------------------------------------------------------------------

    def _load(self, module: nn.Module, params: Mapping[str, np.ndarray]) -> nn.Module:
        """``module`` in eval mode, on the device, with ``params`` loaded strictly."""
        module = module.to(device=self.device, dtype=torch.float32).eval()
        tm.load_numpy_state_dict(module, params, strict=True)
        return module

    def _run(self, module: nn.Module, x: np.ndarray) -> np.ndarray:
        """Run ``module`` on one input array; subclasses (ONNX) change how."""
        with torch.no_grad():
            out = module(torch.from_numpy(np.ascontiguousarray(x)).to(self.device))
        return out.detach().cpu().numpy()

    # ---- operations (clause 14.2) ---------------------------------------------------------

    def conv2d(self, x, weight, bias=None, stride=1, padding=0):
        conv = _conv(weight, bias, stride=stride, padding=padding)
        return self._run(self._load(conv, _named(weight=weight, bias=bias)), x)

    def depthwise_conv2d(self, x, weight, bias=None, padding=None):
        pad = (weight.shape[2] // 2, weight.shape[3] // 2) if padding is None else padding
        conv = _conv(weight, bias, padding=pad, groups=weight.shape[0])
        return self._run(self._load(conv, _named(weight=weight, bias=bias)), x)

    def pointwise_conv2d(self, x, weight, bias=None):
        return self._run(self._load(_conv(weight, bias), _named(weight=weight, bias=bias)), x)

    def linear(self, x, weight, bias=None):
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        return self._run(self._load(layer, _named(weight=weight, bias=bias)), x)

    def _oversized(self, k_h: np.ndarray, k_w: np.ndarray, interpolate: Any) -> tm.OversizeConv2d:
        if k_h.shape[2] != k_w.shape[3]:
            raise Unsupported(f"OversizeConv2d has one kernel size; got K_h={k_h.shape[2]}, K_w={k_w.shape[3]}")
        return tm.OversizeConv2d(k_h.shape[0], k_h.shape[2], interpolate)

    def oversized_conv(self, x, k_h, k_w, interpolate=False):
        module = self._oversized(k_h, k_w, interpolate)
        return self._run(self._load(module, {"conv_h.weight": k_h, "conv_w.weight": k_w}), x)

    def resize_kernel(self, kernel, size):
        channels, length = kernel.shape
        module = self._load(
            tm.OversizeConv2d(channels, length, True),
            {
                "conv_h.weight": kernel[:, None, :, None],
                "conv_w.weight": kernel[:, None, None, :],
            },
        )
        return module.resized_kernels(size, 1)[0][:, 0, :, 0].detach().cpu().numpy()

    def reparameterize(self, k_h, k_w, k7):
        return self._merged(k_h, k_w, k7)

    def _merged(self, k_h, k_w, k7):
        """The dense kernel of clause 7.1 by ``torch_model.reparameterize``."""
        if k_h.shape[2] != k_w.shape[3]:
            raise Unsupported("torch_model.reparameterize needs K_h = K_w; clause 7.1 also defines K_h != K_w")
        if min(k_h.shape[2], k_w.shape[3]) < k7.shape[2]:
            raise Unsupported(
                "torch_model.reparameterize needs the local kernel inside the oversized one "
                "(K >= 7); clause 7.1 also defines K < 7"
            )
        tensors = [torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in (k_h, k_w, k7)]
        return tm.reparameterize(*tensors).detach().cpu().numpy()

    def layer_norm_general(self, x, weight, eps=1e-6):
        norm = tm.LayerNormGeneral(weight.shape[0], eps)
        return self._run(self._load(norm, {"weight": weight}), x)

    def layer_norm(self, x, weight, bias, eps=1e-6):
        norm = nn.LayerNorm(weight.shape[0], eps=eps)
        return self._run(self._load(norm, {"weight": weight, "bias": bias}), x)

    def gelu(self, x):
        return self._run(nn.GELU().to(self.device), x)

    # ---- components -----------------------------------------------------------------------

    def parc_spatial(self, params, x, *, interpolate, local_padding):
        k_h, k_w = params["dwconv1.conv_h.weight"], params["dwconv1.conv_w.weight"]
        self._oversized(k_h, k_w, interpolate)
        module = _Spatial(k_h.shape[0], k_h.shape[2], 2 * local_padding + 1, interpolate)
        return self._run(self._load(module, params), x)

    def parc_spatial_reparameterized(self, params, x, *, interpolate, local_padding):
        """Clause 7.2 with the torch model's ``reparameterize``: one dense depthwise conv."""
        k_h, k_w, k7 = params["dwconv1.conv_h.weight"], params["dwconv1.conv_w.weight"], params["dwconv2.weight"]
        oversized = self._load(self._oversized(k_h, k_w, interpolate), {"conv_h.weight": k_h, "conv_w.weight": k_w})
        height, width = x.shape[2:]
        if interpolate is True:
            kernels = oversized.resized_kernels(2 * height - 1, 2 * width - 1)
        elif interpolate is False:
            kernels = (oversized.conv_h.weight, oversized.conv_w.weight)
        else:
            kernels = oversized.resized_kernels(interpolate, interpolate)
        dense = self._merged(*(k.detach().cpu().numpy() for k in kernels), k7)
        return self.depthwise_conv2d(x, dense)

    def token_mixer(self, params, x, *, interpolate, local_padding, reparameterized=False):
        if reparameterized:
            raise Unsupported(
                "the torch model has no reparameterized token mixer (clause 7.2 is checked on parc_spatial)"
            )
        channels, kernel = params["pwconv1.weight"].shape[1], params["dwconv1.conv_h.weight"].shape[2]
        expansion = params["pwconv1.weight"].shape[0] // channels
        module = tm.ParC_V2(
            channels,
            kernel,
            expansion_ratio=expansion,
            local_kernel_size=2 * local_padding + 1,
            interpolate=interpolate,
        )
        return self._run(self._load(module, params), x)

    def bgu(self, params, x):
        hidden, channels = params["fc1.weight"].shape
        if hidden % channels:
            raise Unsupported(f"BGU hidden width {hidden} is not a multiple of C={channels}")
        return self._run(self._load(tm.BGU(channels, hidden // channels), params), x)

    def block(self, params, x, *, res_scale, eps, interpolate, local_padding, reparameterized=False):
        if reparameterized:
            raise Unsupported("the torch model has no reparameterized block (clause 7.2 is checked on parc_spatial)")
        channels = params["norm1.weight"].shape[0]
        defaults = {**architecture_defaults(), "norm_eps": eps, "local_kernel_size": 2 * local_padding + 1}
        kernel = params["token_mixer.dwconv1.conv_h.weight"].shape[2]
        module = tm.ParCNetV2Block(channels, kernel, res_scale=res_scale, interpolate=interpolate, defaults=defaults)
        return self._run(self._load(module, params), x)

    def downsampling(self, params, x, *, stride, padding, stem, eps):
        cout, cin, kernel, _ = params["conv.weight"].shape
        module = tm.Downsampling(cin, cout, kernel, stride, padding, stem=stem, eps=eps)
        return self._run(self._load(module, params), x)

    # ---- whole models ---------------------------------------------------------------------

    def _network(self, config: Config) -> nn.Module:
        return tm.ParCNetV2(
            config.depths,
            config.dims,
            num_classes=config.num_classes,
            global_kernel_sizes=config.global_kernel_sizes,
            interpolate=config.interpolate,
        )

    def parameter_shapes(self, config: Config) -> dict[str, tuple[int, ...]]:
        with torch.device("meta"):
            network = self._network(config)
        return {name: tuple(t.shape) for name, t in network.state_dict().items()}

    def model(self, config: Config, state_dict: Mapping[str, np.ndarray]) -> TorchModel:
        with torch.device("meta"):
            network = self._network(config)
        network = network.to_empty(device=self.device)
        return TorchModel(self._load(network, state_dict), config, self.device)


def _named(**arrays: np.ndarray | None) -> dict[str, np.ndarray]:
    return {k: v for k, v in arrays.items() if v is not None}


class TorchModel:
    """An ``nn.Module`` with the official names as a model of the protocol (clause 14.2): callable on
    NCHW images, with ``component(name)`` and ``trace(x)`` (``torch_trace``).

    ``module`` may be wrapped (``torch.compile``): the model is called as given, while its modules
    are traced and called eagerly through the module it wraps. Several models may share one module
    (a factory's model with different weights): each loads its own ``weights`` before it runs.
    """

    def __init__(
        self, module: nn.Module, config: Config, device: torch.device, weights: Mapping[str, Any] | None = None
    ):
        self.module = module.eval()
        self.eager = unwrap(module)
        self.names = module_names(config)
        self.device = device
        self._weights = None if weights is None else dict(weights)
        self.dtype = _first_dtype(self.eager) or torch.float32

    def _activate(self) -> None:
        """Load this model's weights into the (possibly shared) module unless they are loaded."""
        if self._weights is not None and getattr(self.eager, "_parcnetv2_loaded", None) is not self:
            load_into(self.eager, self._weights)
            self.eager._parcnetv2_loaded = self

    def _tensor(self, x: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(device=self.device, dtype=dtype or self.dtype)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """NCHW images (N, 3, H, W) -> logits (N, classes)."""
        self._activate()
        with torch.no_grad():
            return self.module(self._tensor(x, _image_dtype(x))).detach().cpu().numpy()

    def component(self, name: str) -> Callable[[np.ndarray], np.ndarray]:
        """The sub-module ``name`` as a callable on its official input layout, in the dtype of its
        parameters. Unsupported when the model has no such module or it has no forward of its own
        (a holder of parameters, clause 14.6: checked through its nearest callable ancestor)."""
        try:
            sub = submodule(self.eager, name)
        except AttributeError as exc:
            raise Unsupported(f"the model has no module named {name!r}") from exc
        if not callable_module(sub):
            why = (
                "is part of a traced model" if isinstance(sub, torch.jit.TracedModule) else "has no forward of its own"
            )
            raise Unsupported(f"{name} ({type(sub).__name__}) {why}")
        dtype = _first_dtype(sub) or self.dtype

        def run(x: np.ndarray) -> np.ndarray:
            self._activate()
            with torch.no_grad():
                return _numpy(sub(self._tensor(x, dtype)))

        return run

    def trace(self, x: np.ndarray) -> list[Run]:
        """The runs of the official modules during one forward pass (clause 14.6); the model's own
        entry is left out when the module is wrapped (its eager output is not what it returns)."""
        self._activate()
        if isinstance(self.eager, torch.jit.ScriptModule):
            raise Unsupported("a TorchScript module runs no Python hooks: its modules cannot be traced")
        tensor = self._tensor(x, _image_dtype(x))
        with torch.no_grad():
            calls = trace_module(self.eager, self.names, lambda: self.eager(tensor))
        if self.eager is not self.module:
            calls = [c for c in calls if c.name]
        return calls


def _image_dtype(x: np.ndarray) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, np.asarray(x).dtype)).dtype


def _first_dtype(module: nn.Module) -> torch.dtype | None:
    """The dtype of the module's first floating entry of its state_dict (parameters and persistent
    buffers: a non-persistent constant may keep a wider dtype than the weights)."""
    for tensor in module.state_dict().values():
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, tuple | list):
        value = value[0]
    return value.detach().cpu().numpy()


def load_into(module: nn.Module, state_dict: Mapping[str, Any]) -> None:
    """``state_dict`` loaded strictly, each array cast to its parameter's dtype (WeightsError naming
    the differences when names or shapes do not match)."""
    own = module.state_dict()
    tensors = {
        k: torch.from_numpy(np.ascontiguousarray(v)).to(own[k].dtype if k in own else torch.float32)
        for k, v in state_dict.items()
    }
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise WeightsError(
            f"the model does not load the official weights strictly: {' '.join(str(exc).split())}"
        ) from None


class TorchModuleBackend:
    """A user's ``factory(variant) -> nn.Module`` with the official names (clause 14.6).

    Provides ``parameter_shapes`` and ``model`` for the official variants (1000 classes unless the
    factory takes ``num_classes``); weights are loaded with ``load_state_dict(strict=True)`` into
    the module the factory returned, unwrapped from ``torch.compile`` when it is wrapped. When the
    factory takes ``interpolate``, the kernel modes of clause 5 are checked too
    (``interpolate_modes``); ``own_state_dict`` gives the weights the factory's model came with.
    The compute dtype is the dtype of the logits (a port computing in float64 inside and returning
    float32 logits is a float32 backend).
    """

    def __init__(self, factory: Callable[..., nn.Module], label: str, variant: str, device: str = "cpu"):
        self.name = f"torch --model {label}"
        self.label = label
        self.device = torch.device(device)
        self._factory = factory
        self._accepts = _keywords(factory)
        self.interpolate_modes = (True, 13) if "interpolate" in self._accepts else ()
        self._built: dict[tuple[str, Any, int], nn.Module] = {}
        self._own: dict[str, dict[str, np.ndarray]] = {}
        config = Config.from_variant(variant)
        module = self._build(config)
        probe = np.zeros((1, config.constants["in_chans"], 32, 32), np.float32)
        try:  # the dtype of its logits (a model that cannot run yet is reported by the model tests)
            self.dtype = TorchModel(module, config, self.device)(probe).dtype
        except Exception:
            self.dtype = np.dtype(str(_first_dtype(unwrap(module)) or torch.float32).removeprefix("torch."))

    def info(self) -> dict[str, Any]:
        return {"implementation": f"user model {self.label}", "torch": torch.__version__, "device": str(self.device)}

    def _build(self, config: Config) -> nn.Module:
        if config.variant is None:
            raise Unsupported(f"{self.label} builds the official variants only")
        key = (config.variant, config.interpolate, config.num_classes)
        if key not in self._built:
            kwargs: dict[str, Any] = {}
            if config.interpolate is not False:
                if "interpolate" not in self._accepts:
                    raise Unsupported(f"{self.label} takes no interpolate argument")
                kwargs["interpolate"] = config.interpolate
            if config.num_classes != 1000:
                if "num_classes" not in self._accepts:
                    raise Unsupported(f"{self.label} takes no num_classes argument")
                kwargs["num_classes"] = config.num_classes
            module = self._factory(config.variant, **kwargs)
            if not isinstance(module, nn.Module):
                raise WeightsError(
                    f"{self.label}({config.variant!r}) returned {type(module).__name__}, not an nn.Module"
                )
            module = module.to(self.device).eval()
            self._own.setdefault(
                config.variant, {k: v.detach().cpu().numpy().copy() for k, v in unwrap(module).state_dict().items()}
            )
            self._built[key] = module
        return self._built[key]

    def own_state_dict(self, config: Config) -> dict[str, np.ndarray]:
        """The weights the factory's model of ``config.variant`` came with (its initialisation or
        the trained weights it loaded)."""
        self._build(config)
        return self._own[config.variant]

    def parameter_shapes(self, config: Config) -> dict[str, tuple[int, ...]]:
        return {name: tuple(t.shape) for name, t in unwrap(self._build(config)).state_dict().items()}

    def model(self, config: Config, state_dict: Mapping[str, np.ndarray]) -> TorchModel:
        module = self._build(config)
        load_into(unwrap(module), state_dict)  # fails here, with the differences, when names do not fit
        return TorchModel(module, config, self.device, state_dict)


def _keywords(factory: Callable[..., Any]) -> set[str]:
    """The keyword arguments ``factory`` accepts (every name when it takes ``**kwargs``)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return set()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return {"interpolate", "num_classes"}
    return {
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }


def backend() -> TorchBackend:
    """Entry point of the built-in ``torch`` backend (CPU)."""
    return TorchBackend()


def cuda_backend() -> TorchBackend:
    """Entry point of the built-in ``torch-cuda`` backend; unavailable without a CUDA device."""
    if not torch.cuda.is_available():
        raise BackendUnavailable("backend torch-cuda: no CUDA device (torch.cuda.is_available() is False)")
    return TorchBackend("cuda", name="torch-cuda")
