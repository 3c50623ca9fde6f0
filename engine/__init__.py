"""parcnetv2.engine: framework-free CPU inference of ParCNetV2 (spec clause 15).

A thin binding of the C library's whole-model runtime (``parcnetv2.cext.model``, clause 16:
packed-weight GEMMs with fused epilogues, the oversized and 7x7 depthwise convolutions, the norms,
the head; one OpenMP region per call). No SciPy, no PyTorch, no ONNX Runtime.

    engine = parcnetv2.engine.load("parcnetv2_tiny.pth", threads=2)   # or from_model(model)
    logits = engine(images)        # images (N, 3, H, W) NCHW float32 -> logits (N, num_classes)

Weights are read and validated by the reference (``parcnetv2.reference.checkpoint``, the checks
and messages of clause 13), then handed to C by name and packed once; each input shape gets a C
plan (every buffer) built on first use and reused. Shape legend: N, C, H, W, K.
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
    ``load`` or ``from_state_dict``), packed by C. ``threads``: None (OpenMP's default) or an int
    in 1..``parcnetv2.cext.MAX_THREADS`` (see ``Engine``); anything else raises InputError."""
    from parcnetv2.engine.engine import Engine

    return Engine.from_model(model, threads)


def load(path: str | PathLike, variant: str | None = None, threads: int | None = None) -> Engine:
    """An Engine from a weights file (``.pth``/``.pt``, ``.npz``, ``.safetensors``; clause 13),
    read by the reference's reader (``parcnetv2.reference.checkpoint.read_state_dict``) and
    checked by its checks and messages (``Engine.from_state_dict``): with ``variant`` the weights
    must be that official variant, else the architecture is inferred. Each array read is dropped
    once C has packed it, so the weights are held about once. Raises CheckpointError for an
    unreadable file, WeightsError for weights that do not fit, InputError for an unknown variant
    or bad ``threads``."""
    from parcnetv2.engine.engine import Engine, check_threads
    from parcnetv2.reference.checkpoint import read_state_dict

    check_threads(threads)  # before reading a file
    return Engine.from_state_dict(read_state_dict(path), variant, threads, release=True)
