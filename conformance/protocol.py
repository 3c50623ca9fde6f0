"""The backend protocol of the conformance harness (spec clause 14.2).

A backend is any object with a ``name`` (str) and a compute ``dtype`` (anything ``numpy.dtype``
accepts) that provides any subset of the operations below. Each operation has exactly the
signature of the function of the same name in ``parcnetv2.reference``; arrays come in as NumPy
arrays of the backend's dtype (weights included), in the official layouts, and results may be
anything ``numpy.asarray`` accepts. Shape legend: N, C, H, W, K.

Operations (array signatures; NCHW unless stated)::

    conv2d(x, weight, bias=None, stride=1, padding=0)          x (N, Cin, H, W)
    depthwise_conv2d(x, weight, bias=None, padding=None)       weight (C, 1, KH, KW)
    pointwise_conv2d(x, weight, bias=None)                     weight (Cout, Cin, 1, 1)
    linear(x, weight, bias=None)                               x (..., Cin)
    oversized_conv(x, k_h, k_w, interpolate=False)             k_h (C, 1, K, 1), k_w (C, 1, 1, K)
    resize_kernel(kernel, size)                                kernel (C, K) -> (C, size)
    reparameterize(k_h, k_w, k7)                               -> (C, 1, max(K, 7), max(K, 7))
    layer_norm_general(x, weight, eps=1e-6)                    x (..., C)
    layer_norm(x, weight, bias, eps=1e-6)                      x (..., C)
    gelu(x)                                                    any shape

Components take ``(params, x, **settings)``: ``params`` maps the component's local official
names (``"pwconv1.weight"``, ``"dwconv1.conv_h.weight"`` ...) to arrays, ``x`` is in the
component's official layout, ``settings`` are those of ``Model.component_info(name).settings``::

    parc_spatial(params, x, *, interpolate, local_padding)                 NCHW
    parc_spatial_reparameterized(params, x, *, interpolate, local_padding) NCHW
    token_mixer(params, x, *, interpolate, local_padding, reparameterized=False)    NHWC
    bgu(params, x)                                                         (..., C)
    block(params, x, *, res_scale, eps, interpolate, local_padding, reparameterized=False)  NHWC
    downsampling(params, x, *, stride, padding, stem, eps)                 NCHW (stem) / NHWC

Whole models::

    parameter_shapes(config) -> {official name: shape}, in the official order
    model(config, state_dict) -> callable: NCHW images (N, 3, H, W) -> logits (N, classes)

The callable ``model`` returns may also offer ``component(name)`` (a callable for one official
module, taking its official input layout, like ``parcnetv2.reference.Model.component``) and
``activations(x)`` (the outputs of the named modules during one forward pass, as
``{official name: array}`` in each module's official output layout). A backend that computes
one fixed model (an exported file) sets ``fixed_state_dict`` to the weights it was built from;
the harness then uses those weights instead of generating its own. If its ``model`` also takes
other weights, it sets ``other_weights = None`` (else a string saying why not), and the harness
checks it with its own weights first (clause 14.7). ``info()`` may return a dict
of facts for the report (versions, opset, device).

An operation may raise ``Unsupported`` for particular arguments (a kernel mode, a dtype); the
harness reports those cases as not provided. Constructing a backend may raise
``BackendUnavailable`` when the machine lacks what it needs (a CUDA device): every test is then
skipped with that reason.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BackendUnavailable", "Unsupported", "backend_dtype", "backend_info", "provides"]


class Unsupported(Exception):
    """Raised by a backend operation for arguments it does not handle; the message says why."""


class BackendUnavailable(Exception):
    """Raised while constructing a backend the machine cannot run (e.g. no CUDA device)."""


def provides(backend: Any, operation: str) -> bool:
    """Whether ``backend`` offers ``operation`` (a callable attribute of that name)."""
    return callable(getattr(backend, operation, None))


def backend_dtype(backend: Any):
    """The backend's compute dtype as a ``numpy.dtype``."""
    import numpy as np

    return np.dtype(backend.dtype)


def backend_info(backend: Any) -> dict[str, Any]:
    """``backend.info()`` when provided, else an empty dict."""
    info = getattr(backend, "info", None)
    return dict(info()) if callable(info) else {}
