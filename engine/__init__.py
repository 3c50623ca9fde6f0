"""parcnetv2.engine: framework-free CPU inference of ParCNetV2 (spec clause 15).

NumPy, SciPy's BLAS sgemm (the 1x1 convolutions, Linear layers and im2col convolutions) and the
project's C kernel library (``parcnetv2.cext``: the oversized and 7x7 depthwise convolutions, the
threaded GEMM driver, and the fused elementwise work: LayerNormGeneral, the GELU gates, the residual
scale, the head). No PyTorch, no ONNX Runtime.

    engine = parcnetv2.engine.load("parcnetv2_tiny.pth", threads=2)   # or from_model(model)
    logits = engine(images)        # images (N, 3, H, W) NCHW float32 -> logits (N, num_classes)

Weights are read and validated by the reference (``parcnetv2.reference.load`` /
``Model``), packed once into the engine's layers; each input shape gets a plan (buffers and
bound C/BLAS calls) built on first use and reused. Shape legend: N, C, H, W, K.
"""

from __future__ import annotations

from os import PathLike
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parcnetv2.engine.engine import Engine

__all__ = ["Engine", "from_model", "load"]


def __getattr__(name: str) -> Any:
    """``Engine`` is imported on first use, so that ``parcnetv2.cli`` (imported by every ``parcnetv2``
    command) does not load the C library and the reference."""
    if name == "Engine":
        from parcnetv2.engine.engine import Engine

        return Engine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def from_model(model, threads: int | None = None) -> Engine:
    """An Engine with the weights of a reference ``Model`` (``parcnetv2.reference.create``,
    ``load`` or ``from_state_dict``); float32 weights are shared with the model, not copied.
    ``threads``: None (library defaults) or an int >= 1 (see ``Engine``)."""
    from parcnetv2.engine.engine import Engine

    return Engine.from_model(model, threads)


def load(path: str | PathLike, variant: str | None = None, threads: int | None = None) -> Engine:
    """An Engine from a weights file (``.pth``/``.pt``, ``.npz``, ``.safetensors``; clause 13),
    read by the reference's reader (``parcnetv2.reference.checkpoint.read_state_dict``) and
    checked by its checks and messages (``Engine.from_state_dict``): with ``variant`` the weights
    must be that official variant, else the architecture is inferred. The weights are held once
    (no second copy as a reference Model would make). Raises CheckpointError for an unreadable
    file, WeightsError for weights that do not fit, InputError for an unknown variant."""
    from parcnetv2.engine.engine import Engine
    from parcnetv2.reference.checkpoint import read_state_dict

    return Engine.from_state_dict(read_state_dict(path), variant, threads)
