"""The ``engine`` conformance backend (spec clauses 14.2, 15, 16): the engine's code, in float32.

Registered as ``parcnetv2.backends: engine``. Whole models run through ``parcnetv2.engine.Engine``
(the C library's whole-model runtime, every kernel mode). The pieces of that runtime the C library
also runs on their own, through the public binding ``parcnetv2.cext``, are checked on their own:

- the packed-weight GEMM (``cext.PackedMatrix``, clause 16.2; bias added after the sum) as Linear,
  the 1x1 convolution and, after the patches of ``cext.im2col``, the strided convolution of the
  stem and the downsampling layers;
- the spatial operation OC + DW7 in NHWC (``cext.parc_spatial``: the cost-model path the model
  takes, and the reparameterized dense path), the depthwise convolution, the oversized
  convolution with given kernels and the kernel merge (clauses 5.1, 6, 7);
- the fused elementwise kernels the model's epilogues share: GELU, LayerNormGeneral, LayerNorm.

The token mixer, the channel BGU, the block and the downsampling layer exist only inside the C
model's plan (fused GEMM epilogues, no separate entry points), and the kernel resizing of clauses
5.2 and 5.3 runs only when a plan is made: those are reported as not provided, and are checked as
parts of whole models. Layouts follow the protocol: NCHW for convolutions, NHWC for the others.
Shape legend: N, C, H, W, K.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from parcnetv2 import __version__, cext
from parcnetv2.conformance.protocol import Unsupported
from parcnetv2.engine.engine import Engine
from parcnetv2.reference import Model
from parcnetv2.reference.architecture import Config

__all__ = ["EngineBackend", "backend"]


def _nhwc(x: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 2, 3, 1))


def _nchw(y: np.ndarray) -> np.ndarray:
    return y.transpose(0, 3, 1, 2)


def _fixed_mode(interpolate: Any) -> None:
    if interpolate is not False:
        raise Unsupported(
            "the C library resizes oversized kernels (clauses 5.2, 5.3) only inside a model's plan; "
            "those modes are checked on whole models"
        )


class EngineBackend:
    """``parcnetv2.engine`` and the C library pieces it is made of, as a conformance backend (float32)."""

    name = "engine"
    dtype = np.dtype(np.float32)

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def info(self) -> dict[str, Any]:
        return {
            "implementation": "parcnetv2.engine (the C library's whole-model runtime)",
            "parcnetv2": __version__,
            "c_library": cext.build_info(),
            "isa": cext.best_isa(),
        }

    # ---- fused operations

    def gelu(self, x):
        return cext.bias_gelu(x, threads=self.threads)

    def layer_norm_general(self, x, weight, eps=1e-6):
        return cext.layer_norm_general(x, weight, eps, threads=self.threads)

    def layer_norm(self, x, weight, bias, eps=1e-6):
        return cext.layer_norm(x, weight, bias, eps, threads=self.threads)

    # ---- the packed GEMM

    def linear(self, x, weight, bias=None):
        """x (..., Cin), weight (Cout, Cin) -> (..., Cout)."""
        return cext.PackedMatrix(weight, bias).matmul(x, threads=self.threads)

    def pointwise_conv2d(self, x, weight, bias=None):
        """x (N, Cin, H, W), weight (Cout, Cin, 1, 1) -> (N, Cout, H, W), as NHWC rows."""
        return _nchw(cext.PackedMatrix(weight, bias).matmul(_nhwc(x), threads=self.threads))

    def conv2d(self, x, weight, bias=None, stride=1, padding=0):
        """x (N, Cin, H, W), weight (Cout, Cin, KH, KW) -> (N, Cout, OH, OW): the patches
        (columns (c, ky, kx), PyTorch's weight order) times the packed weight, bias after the sum."""
        x = np.asarray(x, np.float32)
        weight = np.asarray(weight, np.float32)
        if weight.ndim != 4:
            raise Unsupported(f"conv2d takes a (Cout, Cin, KH, KW) weight, got shape {weight.shape}")
        cout, _, kh, kw = weight.shape
        cols = cext.im2col(x, (kh, kw), stride, padding, "NCHW", threads=self.threads)
        y = cext.PackedMatrix(weight.reshape(cout, -1), bias).matmul(cols, threads=self.threads)
        (sh, sw), (ph, pw) = (np.broadcast_to(np.asarray(v, np.int64), (2,)) for v in (stride, padding))
        oh, ow = (x.shape[2] + 2 * ph - kh) // sh + 1, (x.shape[3] + 2 * pw - kw) // sw + 1
        return _nchw(y.reshape(x.shape[0], int(oh), int(ow), cout))

    # ---- the spatial kernels (NHWC, the model's layout)

    def depthwise_conv2d(self, x, weight, bias=None, padding=None):
        y = cext.dwconv2d(_nhwc(x), weight, bias, padding=padding, layout="NHWC", threads=self.threads)
        return _nchw(y)

    def oversized_conv(self, x, k_h, k_w, interpolate=False):
        _fixed_mode(interpolate)
        return _nchw(cext.oversized_conv(_nhwc(x), k_h, k_w, layout="NHWC", threads=self.threads))

    def reparameterize(self, k_h, k_w, k7):
        return cext.reparameterize(k_h, k_w, k7)

    def _spatial(self, params, x, interpolate, local_padding: int, path: str) -> np.ndarray:
        _fixed_mode(interpolate)
        k7 = params["dwconv2.weight"]
        if np.shape(k7)[2:] != (7, 7) or local_padding != 3:
            raise Unsupported("the C library's spatial operation has the 7x7 local kernel of clause 6 only")
        k_h, k_w = params["dwconv1.conv_h.weight"], params["dwconv1.conv_w.weight"]
        y = cext.parc_spatial(_nhwc(x), k_h, k_w, k7, layout="NHWC", path=path, threads=self.threads)
        return _nchw(y)

    def parc_spatial(self, params, x, *, interpolate, local_padding):
        return self._spatial(params, x, interpolate, local_padding, "auto")

    def parc_spatial_reparameterized(self, params, x, *, interpolate, local_padding):
        return self._spatial(params, x, interpolate, local_padding, "dense")

    # ---- whole models

    def model(self, config: Config, state_dict: Mapping[str, np.ndarray]) -> Engine:
        return Engine.from_model(Model(config, state_dict), self.threads)


def backend() -> EngineBackend:
    """Entry point of the ``engine`` backend."""
    return EngineBackend()
