"""The ``engine`` conformance backend (spec clauses 14.2, 15): the engine's own code, in float32.

Registered as ``parcnetv2.backends: engine``. Whole models run through ``Engine``; the
components a model is made of run through the engine's layers (``parcnetv2.engine.layers``) on a
one-off plan, so each is checked on its own exactly as the engine computes it: the stem and the
downsampling layers (im2col + GEMM, bias inside the GEMM), the spatial operation (C library,
cost-model path; ``parc_spatial_reparameterized`` forces the dense path), the token mixer, the
channel BGU and the block (GEMMs and the fused C kernels; ``reparameterized=True`` forces the
dense spatial path), and the fused operations on their own: GELU, LayerNormGeneral, LayerNorm
and the strided convolution. Operations the engine does not have as such (a lone depthwise or
1x1 convolution, Linear, the kernel resize and merge) are not provided. Layouts follow the
protocol: NCHW for convolutions and the stem, NHWC for the others. Shape legend: N, C, H, W, K.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from parcnetv2 import __version__, cext
from parcnetv2.engine.engine import Engine
from parcnetv2.engine.layers import Bgu, Block, PatchConv, Spatial, TokenMixer, merge_sizes, norm_step
from parcnetv2.engine.plan import Arena, Plan, options
from parcnetv2.reference import Model
from parcnetv2.reference.architecture import Config

__all__ = ["EngineBackend", "backend"]


def _pair_value(value: Any, name: str) -> int:
    """An int from an int or an equal pair (the engine's convolutions are square)."""
    from parcnetv2.conformance.protocol import Unsupported

    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or pair[0] != pair[1]:
        raise Unsupported(f"the engine's convolutions have one {name} for both axes, got {value!r}")
    return int(pair[0])


def _run(
    sizes: Mapping[str, int],
    fill: Mapping[str, np.ndarray],
    build: Callable[[Arena], list],
    out: tuple[str, tuple[int, ...]],
    threads: int | None,
) -> np.ndarray:
    """Run the steps ``build`` makes on a fresh arena after copying ``fill`` into its buffers;
    returns a copy of buffer ``out[0]`` viewed as ``out[1]``."""
    arena = Arena(merge_sizes(sizes, {k: v.size for k, v in fill.items()}), threads)
    for name, value in fill.items():
        np.copyto(arena.view(name, *value.shape), value, casting="unsafe")
    result = arena.view(*((out[0],) + out[1]))
    with arena.blas.single_threaded():
        Plan(arena, build(arena), lambda: result).run()
    return result.copy()


class EngineBackend:
    """``parcnetv2.engine`` as a conformance backend (float32)."""

    name = "engine"
    dtype = np.dtype(np.float32)

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def info(self) -> dict[str, Any]:
        return {
            "implementation": "parcnetv2.engine (NumPy BLAS + C kernels)",
            "parcnetv2": __version__,
            "c_kernels": cext.build_info(),
            "isa": cext.best_isa(),
        }

    # ---- fused operations

    def gelu(self, x):
        return cext.bias_gelu(x, threads=self.threads)

    def layer_norm_general(self, x, weight, eps=1e-6):
        return cext.layer_norm_general(x, weight, eps, threads=self.threads)

    def layer_norm(self, x, weight, bias, eps=1e-6):
        return cext.layer_norm(x, weight, bias, eps, threads=self.threads)

    def conv2d(self, x, weight, bias=None, stride=1, padding=0):
        """x (N, Cin, H, W) -> (N, Cout, OH, OW) by the engine's im2col + GEMM."""
        x = np.asarray(x, np.float32)
        conv = PatchConv(weight, bias, _pair_value(stride, "stride"), _pair_value(padding, "padding"), "NCHW")
        n, _, h, w = x.shape
        oh, ow = conv.out_size(h, w)
        t = self.threads
        sizes = merge_sizes(conv.needs(n, h, w), {"s": n * oh * ow * conv.cout})
        y = _run(
            sizes,
            {"image": x},
            lambda a: conv.steps(
                a, a.keep(options(t)), a.view("image", *x.shape), n, h, w, a.view("s", n * oh * ow, conv.cout)
            ),
            ("s", (n, oh, ow, conv.cout)),
            t,
        )
        return y.transpose(0, 3, 1, 2)

    # ---- components

    def _spatial(self, params, x, interpolate, local_padding, path):
        x = np.asarray(x, np.float32)
        n, c, h, w = x.shape
        sp = Spatial(
            params["dwconv1.conv_h.weight"],
            params["dwconv1.conv_w.weight"],
            params["dwconv2.weight"],
            interpolate,
            local_padding,
            path,
        )
        t = self.threads
        nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        sizes = {"s": nhwc.size, "ws": sp.prepare(n, h, w, t)["workspace_floats"]}
        y = _run(
            sizes,
            {"g": nhwc},
            lambda a: [sp.step(a, t, n, h, w, a.view("g", n * h * w, c), a.view("s", n * h * w, c))],
            ("s", (n, h, w, c)),
            t,
        )
        return y.transpose(0, 3, 1, 2)

    def parc_spatial(self, params, x, *, interpolate, local_padding):
        return self._spatial(params, x, interpolate, local_padding, "auto")

    def parc_spatial_reparameterized(self, params, x, *, interpolate, local_padding):
        return self._spatial(params, x, interpolate, local_padding, "dense")

    def token_mixer(self, params, x, *, interpolate, local_padding, reparameterized=False):
        x = np.asarray(x, np.float32)
        n, h, w, _ = x.shape
        mixer = TokenMixer(
            params, interpolate=interpolate, local_padding=local_padding, path="dense" if reparameterized else "auto"
        )
        t = self.threads
        return _run(
            mixer.needs(n, h, w, t), {"b": x}, lambda a: mixer.steps(a, t, n, h, w), ("s", (n, h, w, mixer.c)), t
        )

    def bgu(self, params, x):
        x = np.asarray(x, np.float32)
        mlp = Bgu(params)
        p = x.size // x.shape[-1]
        return _run(mlp.needs(p), {"b": x}, lambda a: mlp.steps(a, self.threads, p), ("s", x.shape), self.threads)

    def block(self, params, x, *, res_scale, eps, interpolate, local_padding, reparameterized=False):
        x = np.asarray(x, np.float32)
        n, h, w, c = x.shape
        blk = Block(
            params,
            res_scale=res_scale,
            eps=eps,
            interpolate=interpolate,
            local_padding=local_padding,
            path="dense" if reparameterized else "auto",
        )
        t, p = self.threads, n * h * w

        def build(a: Arena) -> list:
            norm1 = norm_step(a, a.keep(options(t)), a.view("x", p, c), blk.norm1, a.view("b", p, c), blk.eps)
            return [norm1] + blk.steps(a, t, n, h, w, None)

        return _run(blk.needs(n, h, w, t), {"x": x}, build, ("x", x.shape), t)

    def downsampling(self, params, x, *, stride, padding, stem, eps):
        """The stem (NCHW in) or a downsampling layer (NHWC in); NHWC out (clause 3)."""
        x = np.asarray(x, np.float32)
        conv = PatchConv(params["conv.weight"], params["conv.bias"], stride, padding, "NCHW" if stem else "NHWC")
        n, h, w = (x.shape[0], x.shape[2], x.shape[3]) if stem else x.shape[:3]
        oh, ow = conv.out_size(h, w)
        p, t = n * oh * ow, self.threads

        def build(a: Arena) -> list:
            opt = a.keep(options(t))
            if stem:
                return conv.steps(a, opt, a.view("image", *x.shape), n, h, w, a.view("s", p, conv.cout)) + [
                    norm_step(
                        a,
                        opt,
                        a.view("s", p, conv.cout),
                        params["post_norm.weight"].astype(np.float32),
                        a.view("x", p, conv.cout),
                        eps,
                    )
                ]
            rows = n * h * w
            return [
                norm_step(
                    a,
                    opt,
                    a.view("image", rows, conv.cin),
                    params["pre_norm.weight"].astype(np.float32),
                    a.view("b", rows, conv.cin),
                    eps,
                )
            ] + conv.steps(a, opt, a.view("b", n, h, w, conv.cin), n, h, w, a.view("x", p, conv.cout))

        sizes = merge_sizes(conv.needs(n, h, w), {"s": p * conv.cout, "x": p * conv.cout, "b": x.size})
        return _run(sizes, {"image": x}, build, ("x", (n, oh, ow, conv.cout)), t)

    # ---- whole models

    def model(self, config: Config, state_dict: Mapping[str, np.ndarray]) -> Engine:
        return Engine.from_model(Model(config, state_dict), self.threads)


def backend() -> EngineBackend:
    """Entry point of the ``engine`` backend."""
    return EngineBackend()
