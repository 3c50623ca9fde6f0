"""The built-in ``cext`` and ``cext-nhwc`` backends: the C kernels (spec clauses 12, 14.3).

They cover what the C library computes, in float32: the depthwise convolution (DW7 and the
dense reparameterized kernel), the oversized convolution in its fixed-kernel mode (clause 5.1),
the fused spatial operation OC + DW7 on its separable path (``parc_spatial``) and its dense path
(``parc_spatial_reparameterized``), and the kernel merge (clause 7.1). ``cext`` passes NCHW
arrays to the library, ``cext-nhwc`` NHWC ones (transposing in and out), so both layouts of
every kernel are checked. Everything else is reported as not provided.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from parcnetv2 import __version__
from parcnetv2.conformance.protocol import Unsupported

__all__ = ["CextBackend", "backend", "nhwc_backend"]


def _import_cext():
    try:
        from parcnetv2 import cext
    except ImportError as exc:
        raise ImportError(
            f"parcnetv2.cext is not importable ({exc}); build and install the C extension first"
        ) from None
    return cext


class CextBackend:
    """``parcnetv2.cext`` with activations in ``layout`` ("NCHW" or "NHWC")."""

    def __init__(self, layout: str = "NCHW"):
        self._cext = _import_cext()
        self.layout = layout
        self.name = "cext" if layout == "NCHW" else "cext-nhwc"
        self.dtype = np.dtype(np.float32)

    def info(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "implementation": "parcnetv2.cext (C kernels)",
            "layout": self.layout,
            "parcnetv2": __version__,
        }
        for attribute in ("version", "build_info"):
            value = getattr(self._cext, attribute, None)
            facts[attribute] = value() if callable(value) else value
        return facts

    def _in(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1) if self.layout == "NHWC" else x)

    def _out(self, y: Any) -> np.ndarray:
        y = np.asarray(y)
        return y.transpose(0, 3, 1, 2) if self.layout == "NHWC" else y

    @staticmethod
    def _fixed_mode(interpolate: Any) -> None:
        if interpolate is not False:
            raise Unsupported(
                "the C library has the fixed-kernel mode only (clause 5.1), not the interpolated modes (5.2, 5.3)"
            )

    def depthwise_conv2d(self, x, weight, bias=None, padding=None):
        return self._out(self._cext.dwconv2d(self._in(x), weight, bias, padding=padding, layout=self.layout))

    def oversized_conv(self, x, k_h, k_w, interpolate=False):
        self._fixed_mode(interpolate)
        return self._out(self._cext.oversized_conv(self._in(x), k_h, k_w, layout=self.layout))

    def reparameterize(self, k_h, k_w, k7):
        return np.asarray(self._cext.reparameterize(k_h, k_w, k7))

    def _spatial(self, params, x, interpolate, local_padding: int, path: str) -> np.ndarray:
        self._fixed_mode(interpolate)
        k7 = params["dwconv2.weight"]
        if k7.shape[2:] != (2 * local_padding + 1,) * 2 or k7.shape[2] != 7:
            raise Unsupported("the fused C operation has a 7x7 local kernel only")
        k_h, k_w = params["dwconv1.conv_h.weight"], params["dwconv1.conv_w.weight"]
        return self._out(self._cext.parc_spatial(self._in(x), k_h, k_w, k7, layout=self.layout, path=path))

    def parc_spatial(self, params, x, *, interpolate, local_padding):
        return self._spatial(params, x, interpolate, local_padding, "separable")

    def parc_spatial_reparameterized(self, params, x, *, interpolate, local_padding):
        return self._spatial(params, x, interpolate, local_padding, "dense")


def backend() -> CextBackend:
    """Entry point of the built-in ``cext`` backend (NCHW)."""
    return CextBackend("NCHW")


def nhwc_backend() -> CextBackend:
    """Entry point of the built-in ``cext-nhwc`` backend."""
    return CextBackend("NHWC")
