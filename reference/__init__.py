"""The golden NumPy reference of ParCNetV2 (spec clauses 1-10).

Model-level API::

    create(variant, num_classes=1000, seed=None, **overrides) -> Model
    load(path, variant=None) -> Model        # .npz, .safetensors, .pth/.pt
    count_params(variant_or_model) -> int
    count_macs(variant, resolution=224) -> int

Operations (NCHW, PyTorch weight shapes, float32 or float64 chosen by the input):
``conv2d``, ``depthwise_conv2d``, ``pointwise_conv2d``, ``linear``, ``oversized_conv``,
``resize_kernel``, ``reparameterize``, ``layer_norm_general``, ``layer_norm``, ``gelu``;
components taking (params, x): see ``parcnetv2.reference.components``.
"""

from parcnetv2.reference.activations import gelu
from parcnetv2.reference.architecture import Config, parameter_shapes
from parcnetv2.reference.components import (
    bgu,
    block,
    downsampling,
    parc_spatial,
    parc_spatial_reparameterized,
    token_mixer,
)
from parcnetv2.reference.convolution import conv2d, depthwise_conv2d, linear, pointwise_conv2d
from parcnetv2.reference.counting import breakdown, count_macs, count_params
from parcnetv2.reference.loading import create, from_state_dict, load
from parcnetv2.reference.model import Model
from parcnetv2.reference.norms import layer_norm, layer_norm_general
from parcnetv2.reference.oversized import oversized_conv, resize_kernel
from parcnetv2.reference.reparameterization import reparameterize

__all__ = [
    "Config",
    "Model",
    "bgu",
    "block",
    "breakdown",
    "conv2d",
    "count_macs",
    "count_params",
    "create",
    "depthwise_conv2d",
    "downsampling",
    "from_state_dict",
    "gelu",
    "layer_norm",
    "layer_norm_general",
    "linear",
    "load",
    "oversized_conv",
    "parameter_shapes",
    "parc_spatial",
    "parc_spatial_reparameterized",
    "pointwise_conv2d",
    "reparameterize",
    "resize_kernel",
    "token_mixer",
]
