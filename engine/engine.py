"""The inference engine: a reference Model's weights packed into layers, one plan per input shape
(spec clause 15).

Shape legend: N, C, H, W, K. The engine takes NCHW images (N, 3, H, W), runs NHWC inside, and
returns logits (N, num_classes) in float32.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from parcnetv2 import cext
from parcnetv2.engine.blas import scipy_blas
from parcnetv2.engine.layers import Block, Head, PatchConv, merge_sizes, norm_step
from parcnetv2.engine.plan import Arena, Plan, options
from parcnetv2.errors import InputError
from parcnetv2.reference import Model
from parcnetv2.reference.architecture import Config, components
from parcnetv2.reference.components import subtree
from parcnetv2.reference.loading import resolve_config
from parcnetv2.reference.model import check_image_shape

__all__ = ["PLAN_CACHE_SIZE", "Engine", "check_threads"]

# Plans (buffers and bound steps) kept for this many input shapes, least recently used first out.
PLAN_CACHE_SIZE = 4


def check_threads(threads: Any) -> int | None:
    """None (the libraries' defaults) or a positive int; InputError otherwise."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise InputError(f"threads must be None or an int >= 1, got {threads!r}")
    return int(threads)


class Engine:
    """ParCNetV2 inference on CPU with SciPy's BLAS sgemm and the C kernel library (clause 15).

    ``engine(x)``: x (N, 3, H, W) NCHW images, H, W >= 3, any N (float32; other float dtypes are
    converted to float32) -> logits (N, num_classes) float32, a new array. Build one with
    ``from_model``, ``from_state_dict`` or ``parcnetv2.engine.load``.

    ``threads``: the OpenMP threads of the C library, which run everything, the GEMMs included
    (each thread calls SciPy's sgemm, held to one thread, on its block; see ``blas``); None is
    OpenMP's default (OMP_NUM_THREADS, else all CPUs). Results do not depend on the thread count.
    Calls on one Engine are serialised (the plans' buffers are shared).
    """

    def __init__(self, config: Config, weights: Mapping[str, np.ndarray], threads: int | None = None):
        """``weights``: float32 arrays under the official names of ``config``, already validated
        (``from_model``, ``from_state_dict``); they are used in place, not copied."""
        self.config: Config = config
        self.threads = check_threads(threads)
        parts = {c.name: c for c in components(self.config)}
        self._stem = PatchConv(
            weights["downsample_layers.0.conv.weight"],
            weights["downsample_layers.0.conv.bias"],
            layout="NCHW",
            **parts["downsample_layers.0.conv"].settings,
        )
        self._post_norm = weights["downsample_layers.0.post_norm.weight"]
        self._downs: list[tuple[np.ndarray, PatchConv]] = []
        self._stages: list[list[Block]] = []
        for i, depth in enumerate(self.config.depths):
            if i > 0:
                name = f"downsample_layers.{i}"
                conv = PatchConv(
                    weights[f"{name}.conv.weight"],
                    weights[f"{name}.conv.bias"],
                    layout="NHWC",
                    **parts[f"{name}.conv"].settings,
                )
                self._downs.append((weights[f"{name}.pre_norm.weight"], conv))
            settings = {k: v for k, v in parts[f"stages.{i}"].settings.items() if k != "depth"}
            self._stages.append([Block(subtree(weights, f"stages.{i}.{j}"), **settings) for j in range(depth)])
        self._head = Head(weights, self.config.eps)
        self._plans: OrderedDict[tuple[int, ...], tuple[Plan, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self._blas = scipy_blas()

    @classmethod
    def from_model(cls, model: Model, threads: int | None = None) -> Engine:
        """An Engine with a reference Model's weights (shared when they are float32)."""
        if not isinstance(model, Model):
            raise InputError(f"expected a parcnetv2.reference.Model, got {type(model).__name__}")
        return cls(model.config, model.weights_as(np.float32), threads)

    @classmethod
    def from_state_dict(
        cls, state_dict: Mapping[str, Any], variant: str | None = None, threads: int | None = None
    ) -> Engine:
        """An Engine from a state_dict with the official names, validated by the reference's own
        checks and messages (``parcnetv2.reference.loading.resolve_config``)
        without the copy a reference Model would make: float32 arrays are used in place, so
        loading a file holds the weights once."""
        config = resolve_config(state_dict, variant)
        return cls(config, {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state_dict.items()}, threads)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def info(self) -> dict[str, Any]:
        """Facts for reports: ISA, threads, BLAS control, cached plans and their spatial paths."""
        return {
            "config": self.config.name,
            "threads": self.threads,
            "c_kernels": cext.build_info(),
            "isa": cext.best_isa(),
            "gemm_on_engine_threads": self._blas.parallel,
            "blas_library": self._blas.library,
            "plans": [list(shape) for shape in self._plans],
            "spatial_paths": {
                f"stage {i} {key[1]}x{key[2]}": entry["path"]
                for i, blocks in enumerate(self._stages)
                if blocks
                for key, entry in blocks[0].mixer.spatial._prepared.items()
            },
        }

    # ---- calls

    def _check_image(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype.kind != "f":
            raise InputError(f"input must be a floating-point array, got dtype {x.dtype}")
        check_image_shape(x, self.config)
        return x

    def __call__(self, x: Any) -> np.ndarray:
        """Logits (N, num_classes) float32 of NCHW images x (N, 3, H, W)."""
        x = self._check_image(x)
        if x.shape[0] == 0:
            return np.zeros((0, self.num_classes), np.float32)
        with self._lock:
            plan, image = self._plan(tuple(x.shape))
            np.copyto(image, x, casting="unsafe")
            with self._blas.single_threaded():
                return plan.run().copy()

    # ---- plans

    def _plan(self, shape: tuple[int, ...]) -> tuple[Plan, np.ndarray]:
        if shape in self._plans:
            self._plans.move_to_end(shape)
            return self._plans[shape]
        built = self._build(shape)
        self._plans[shape] = built
        while len(self._plans) > PLAN_CACHE_SIZE:
            self._plans.popitem(last=False)
        return built

    def _layout(self, shape: tuple[int, ...]) -> list[tuple[str, Any, tuple[int, int]]]:
        """The layers in forward order with their input sizes: ("stem" | "down" | "block", layer, (H, W))."""
        _, _, h, w = shape
        order: list[tuple[str, Any, tuple[int, int]]] = [("stem", self._stem, (h, w))]
        h, w = self._stem.out_size(h, w)
        for i, blocks in enumerate(self._stages):
            if i > 0:
                order.append(("down", self._downs[i - 1], (h, w)))
                h, w = self._downs[i - 1][1].out_size(h, w)
            order += [("block", b, (h, w)) for b in blocks]
        order.append(("head", self._head, (h, w)))
        return order

    def _build(self, shape: tuple[int, ...]) -> tuple[Plan, np.ndarray]:
        n = shape[0]
        t = self.threads
        order = self._layout(shape)
        needs: list[dict[str, int]] = [{"image": int(np.prod(shape))}]
        for kind, layer, (h, w) in order:
            if kind in ("stem", "down"):
                conv = layer if kind == "stem" else layer[1]
                oh, ow = conv.out_size(h, w)
                p = n * oh * ow * conv.cout
                needs += [conv.needs(n, h, w), {"s": p, "x": p, "b": p}]
            elif kind == "block":
                needs.append(layer.needs(n, h, w, t))
            else:
                needs.append(layer.needs(n))
        arena = Arena(merge_sizes(*needs), t)
        opt = arena.keep(options(t))
        image = arena.view("image", *shape)
        steps = []
        for index, (kind, layer, (h, w)) in enumerate(order):
            next_norm = _input_norm(order[index + 1]) if index + 1 < len(order) else None
            if kind == "stem":
                oh, ow = layer.out_size(h, w)
                p, c = n * oh * ow, layer.cout
                steps += layer.steps(arena, opt, image, n, h, w, arena.view("s", p, c))
                steps.append(
                    norm_step(
                        arena, opt, arena.view("s", p, c), self._post_norm, arena.view("x", p, c), self.config.eps
                    )
                )
            elif kind == "down":
                conv = layer[1]
                oh, ow = conv.out_size(h, w)
                p, c = n * oh * ow, conv.cout
                steps += conv.steps(arena, opt, arena.view("b", n, h, w, conv.cin), n, h, w, arena.view("x", p, c))
            elif kind == "block":
                steps += layer.steps(arena, t, n, h, w, next_norm)
                continue
            else:
                steps += layer.steps(arena, t, n, h * w)
                continue
            if next_norm is not None:  # after the stem or a downsampling: the next layer's input norm
                steps.append(
                    norm_step(arena, opt, arena.view("x", p, c), next_norm, arena.view("b", p, c), self.config.eps)
                )
        logits = arena.view("logits", n, self._head.k)
        plan = Plan(arena, steps, lambda: logits)
        return plan, image


def _input_norm(entry: tuple[str, Any, tuple[int, int]]) -> np.ndarray | None:
    """The LayerNormGeneral weight a layer applies to its input: a block's norm1, a downsampling
    layer's pre_norm; None for the head (it pools the raw features)."""
    kind, layer, _ = entry
    if kind == "block":
        return layer.norm1
    if kind == "down":
        return layer[0]
    return None
