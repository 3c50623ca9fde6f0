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

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from parcnetv2 import __version__
from parcnetv2.conformance.protocol import BackendUnavailable, Unsupported
from parcnetv2.errors import WeightsError
from parcnetv2.pytorch import model as tm
from parcnetv2.reference.architecture import Config, components
from parcnetv2.spec import architecture_defaults

__all__ = ["TorchBackend", "TorchModel", "TorchModuleBackend", "backend", "cuda_backend", "module_names"]


def module_names(config: Config) -> list[str]:
    """Official names of the modules whose outputs are activations (clause 2.2), forward order."""
    return [c.name for c in components(config) if c.kind not in ("container", "model")]


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
        return TorchModel(self._load(network, state_dict), module_names(config), self.device)


def _named(**arrays: np.ndarray | None) -> dict[str, np.ndarray]:
    return {k: v for k, v in arrays.items() if v is not None}


class TorchModel:
    """A loaded ``nn.Module`` with the official names as a model of the protocol (clause 14.2):
    callable on NCHW images, with ``component(name)`` and ``activations(x)`` (forward hooks)."""

    def __init__(self, module: nn.Module, names: Sequence[str], device: torch.device):
        self.module = module.eval()
        self.names = list(names)
        self.device = device
        self.dtype = next(module.parameters()).dtype

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(device=self.device, dtype=self.dtype)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """NCHW images (N, 3, H, W) -> logits (N, classes)."""
        with torch.no_grad():
            return self.module(self._tensor(x)).detach().cpu().numpy()

    def component(self, name: str) -> Callable[[np.ndarray], np.ndarray]:
        """The sub-module ``name`` as a callable on its official input layout; Unsupported when
        the model has no module of that name."""
        try:
            sub = self.module.get_submodule(name)
        except AttributeError as exc:
            raise Unsupported(f"the model has no module named {name!r}") from exc

        def run(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return sub(self._tensor(x)).detach().cpu().numpy()

        return run

    def activations(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs of the named modules during one forward pass, in forward order."""
        captured: dict[str, np.ndarray] = {}
        hooks = []
        for name in self.names:
            try:
                sub = self.module.get_submodule(name)
            except AttributeError:
                continue

            def hook(_module, _inputs, output, name=name):
                captured[name] = output.detach().cpu().numpy()

            hooks.append(sub.register_forward_hook(hook))
        try:
            self(x)
        finally:
            for handle in hooks:
                handle.remove()
        return {name: captured[name] for name in self.names if name in captured}


class TorchModuleBackend:
    """A user's ``factory(variant) -> nn.Module`` with the official names (clause 14.6).

    Provides ``parameter_shapes`` and ``model`` for the official variants (1000 classes as the
    factory builds them); weights are loaded with ``load_state_dict(strict=True)``. The factory is
    called once per variant; ``variant`` is built at once to learn the model's dtype.
    """

    def __init__(self, factory: Callable[[str], nn.Module], label: str, variant: str, device: str = "cpu"):
        self.name = f"torch --model {label}"
        self.label = label
        self.device = torch.device(device)
        self._factory = factory
        self._built: dict[str, nn.Module] = {}
        first = self._build(Config.from_variant(variant))
        self.dtype = np.dtype(str(next(first.parameters()).dtype).removeprefix("torch."))

    def info(self) -> dict[str, Any]:
        return {"implementation": f"user model {self.label}", "torch": torch.__version__, "device": str(self.device)}

    def _build(self, config: Config) -> nn.Module:
        if config.variant is None:
            raise Unsupported(f"{self.label} builds the official variants only")
        if config.variant not in self._built:
            module = self._factory(config.variant)
            if not isinstance(module, nn.Module):
                raise WeightsError(
                    f"{self.label}({config.variant!r}) returned {type(module).__name__}, not an nn.Module"
                )
            self._built[config.variant] = module.to(self.device).eval()
        return self._built[config.variant]

    def parameter_shapes(self, config: Config) -> dict[str, tuple[int, ...]]:
        return {name: tuple(t.shape) for name, t in self._build(config).state_dict().items()}

    def model(self, config: Config, state_dict: Mapping[str, np.ndarray]) -> TorchModel:
        module = self._build(config)
        dtype = next(module.parameters()).dtype
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)).to(dtype) for k, v in state_dict.items()}
        try:
            module.load_state_dict(tensors, strict=True)
        except RuntimeError as exc:
            detail = " ".join(str(exc).split())
            raise WeightsError(
                f"{self.label}({config.variant!r}) does not load the official weights strictly: {detail}"
            ) from None
        return TorchModel(module, module_names(config), self.device)


def backend() -> TorchBackend:
    """Entry point of the built-in ``torch`` backend (CPU)."""
    return TorchBackend()


def cuda_backend() -> TorchBackend:
    """Entry point of the built-in ``torch-cuda`` backend; unavailable without a CUDA device."""
    if not torch.cuda.is_available():
        raise BackendUnavailable("backend torch-cuda: no CUDA device (torch.cuda.is_available() is False)")
    return TorchBackend("cuda", name="torch-cuda")
