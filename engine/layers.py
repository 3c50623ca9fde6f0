"""The engine's layers: weights packed once, steps built per input shape (spec clause 15.2-15.4).

Each layer takes its module's parameters under the official local names (float32), packs them
at construction, and for an input shape reports the buffer sizes it needs (``needs``) and
returns the steps of its forward pass on an ``Arena`` (``steps``). Buffer names (all NHWC
matrices of pixels x channels, see ``plan``):

    x  the residual stream (block input and output)     b  the normalised input of a layer
    h  1x1-conv / fc1 outputs, and im2col patches       g  GELU(x2), then the gated product
    s  spatial output, then pwconv2 / fc2 / conv output  m  the channel-BGU product
    image  the NCHW input of the stem                   ws the C library's spatial workspace

Shape legend: N, C, H, W, K; P = N*H*W pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from parcnetv2 import cext
from parcnetv2.cext._kernels import ffi, lib
from parcnetv2.engine.plan import Arena, Step, options
from parcnetv2.errors import InputError
from parcnetv2.reference.components import subtree
from parcnetv2.reference.oversized import instance_kernels

__all__ = ["Bgu", "Block", "Head", "PatchConv", "Spatial", "TokenMixer", "merge_sizes", "norm_step"]

Params = Mapping[str, np.ndarray]


def _f32(a: Any) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _null(a: np.ndarray | None):
    return a if a is not None else ffi.NULL


def norm_step(arena: Arena, opt, src: np.ndarray, weight: np.ndarray, dst: np.ndarray, eps: float) -> Step:
    """LayerNormGeneral (clause 4.1) of the rows of ``src`` (P, C) into ``dst`` (P, C)."""
    rows, c = src.shape
    return arena.call(lib.pcn_layer_norm_general, src, c, weight, dst, c, rows, c, eps, opt)


class PatchConv:
    """A strided dense convolution with bias (clause 3: the stem's 7x7/4 and the downsampling
    3x3/2) as im2col + one GEMM. ``layout`` is the layout of its input: "NCHW" (the stem reads
    the image) or "NHWC" (the downsampling layers); the output is always NHWC.

    Packed weight: (KH*KW*Cin + 1, Cout), rows in the im2col column order ((c, ky, kx) for NCHW,
    (ky, kx, c) for NHWC) followed by the bias row, which multiplies im2col's column of ones.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None, stride: int, padding: int, layout: str):
        weight = _f32(weight)
        if weight.ndim != 4:
            raise InputError(f"conv weight must be (Cout, Cin, KH, KW), got shape {weight.shape}")
        self.cout, self.cin, self.kh, self.kw = weight.shape
        self.stride, self.padding, self.layout = int(stride), int(padding), layout
        order = (
            weight.reshape(self.cout, -1) if layout == "NCHW" else weight.transpose(0, 2, 3, 1).reshape(self.cout, -1)
        )
        packed = np.empty((order.shape[1] + 1, self.cout), np.float32)
        packed[:-1] = order.T
        packed[-1] = 0.0 if bias is None else _f32(bias)
        self.packed = packed

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        s, p = self.stride, self.padding
        if h + 2 * p < self.kh or w + 2 * p < self.kw:
            raise InputError(f"a {h}x{w} input is smaller than the {self.kh}x{self.kw} kernel with padding {p}")
        return (h + 2 * p - self.kh) // s + 1, (w + 2 * p - self.kw) // s + 1

    def needs(self, n: int, h: int, w: int) -> dict[str, int]:
        oh, ow = self.out_size(h, w)
        return {"h": n * oh * ow * self.packed.shape[0]}

    def steps(self, arena: Arena, opt, src: np.ndarray, n: int, h: int, w: int, dst: np.ndarray) -> list[Step]:
        """``src``: (N, Cin, H, W) or (N, H, W, Cin) per the layout; ``dst``: (N*OH*OW, Cout)."""
        oh, ow = self.out_size(h, w)
        cols = arena.view("h", n * oh * ow, self.packed.shape[0])
        lay = lib.PCN_NCHW if self.layout == "NCHW" else lib.PCN_NHWC
        s, p = self.stride, self.padding
        return [
            arena.call(lib.pcn_im2col, src, cols, n, self.cin, h, w, self.kh, self.kw, s, s, p, p, lay, 1, opt),
            arena.gemm(cols, self.packed, dst),
        ]


class Spatial:
    """OC + DW7 (clauses 5, 6, 7), NHWC, by the C library. The kernels are prepared per input size
    (``prepare``): those of the oversized-conv mode (clause 5; resized for ``interpolate``),
    cropped to the 2H-1 / 2W-1 taps that can reach the map (the others only ever multiply zero
    padding, so the result is unchanged), and the path chosen by the C library's cost model
    (``cext.choose_path``) unless forced: separable OC + DW7, or one dense depthwise convolution
    with the kernel reparameterized then (clause 7)."""

    def __init__(
        self,
        k_h: np.ndarray,
        k_w: np.ndarray,
        k7: np.ndarray,
        interpolate: bool | int,
        local_padding: int,
        path: str = "auto",
    ):
        self.k_h, self.k_w, self.k7 = _f32(k_h), _f32(k_w), _f32(k7)
        if self.k7.shape[2:] != (7, 7) or local_padding != 3:
            raise InputError(f"the engine's spatial operation has the 7x7 local kernel only, got {self.k7.shape[2:]}")
        self.c, self.interpolate, self.path = self.k_h.shape[0], interpolate, path
        self._prepared: dict[tuple[int, int, int, int | None], dict[str, Any]] = {}

    def prepare(self, n: int, h: int, w: int, threads: int | None) -> dict[str, Any]:
        """Kernels, path and workspace size for (N, H, W, C), cached per size."""
        key = (n, h, w, threads)
        if key in self._prepared:
            return self._prepared[key]
        kh, kw, _, _ = instance_kernels(self.k_h, self.k_w, h, w, self.interpolate)
        kh, kw = _crop(kh, 2 * h - 1), _crop(kw, 2 * w - 1)
        for name, k in (("vertical", kh), ("horizontal", kw)):
            if k.shape[1] > cext.MAX_KERNEL:
                raise InputError(
                    f"the {name} oversized kernel has {k.shape[1]} taps on a {h}x{w} map; the C library takes "
                    f"at most {cext.MAX_KERNEL} (interpolate={self.interpolate!r} needs a smaller input)"
                )
        c, kv, kwl = self.c, kh.shape[1], kw.shape[1]
        path = cext.choose_path(n, c, h, w, kv, kwl, "NHWC")["path"] if self.path == "auto" else self.path
        opt, err = options(threads), ffi.new("pcn_error *")
        entry: dict[str, Any] = {"path": path, "k_h": _f32(kh[:, None, :, None]), "k_w": _f32(kw[:, None, None, :])}
        if path == "dense":
            dense = cext.reparameterize(entry["k_h"], entry["k_w"], self.k7)
            entry["dense"] = dense
            rh, rw = dense.shape[2:]
            size = lib.pcn_dwconv2d_workspace_size(n, c, h, w, rh, rw, rh // 2, rw // 2, lib.PCN_NHWC, opt, err)
        else:
            size = lib.pcn_parc_spatial_workspace_size(n, c, h, w, kv, kwl, lib.PCN_NHWC, opt, err)
        if size == 0:
            raise InputError(f"engine: {ffi.string(err.message).decode(errors='replace')}")
        entry["workspace_floats"] = -(-int(size) // 4)
        self._prepared[key] = entry
        return entry

    def step(self, arena: Arena, threads: int | None, n: int, h: int, w: int, src: np.ndarray, dst: np.ndarray) -> Step:
        """src -> dst, both (N*H*W, C); the workspace is buffer "ws"."""
        sp = self.prepare(n, h, w, threads)
        ws = arena.view("ws", sp["workspace_floats"])
        opt = arena.keep(options(threads, lib.PCN_PATH_SEPARABLE))
        opt.workspace, opt.workspace_bytes = arena.pointer(ws), ws.nbytes
        c = self.c
        if sp["path"] == "dense":
            rh, rw = sp["dense"].shape[2:]
            return arena.call(
                lib.pcn_dwconv2d,
                src,
                sp["dense"],
                ffi.NULL,
                dst,
                n,
                c,
                h,
                w,
                rh,
                rw,
                rh // 2,
                rw // 2,
                lib.PCN_NHWC,
                opt,
            )
        kv, kwl = sp["k_h"].shape[2], sp["k_w"].shape[3]
        return arena.call(
            lib.pcn_parc_spatial, src, sp["k_h"], sp["k_w"], self.k7, dst, n, c, h, w, kv, kwl, lib.PCN_NHWC, opt
        )


class TokenMixer:
    """The token mixer (clause 8.1) on buffer b -> s, NHWC: pwconv1 (GEMM), GELU of the second
    half plus its bias, OC + DW7 (``Spatial``), gate by the first half plus its bias, pwconv2
    (GEMM, no bias). The 1x1-conv weights are used as transposed views: C-contiguous (Cout, Cin)
    read by BLAS with its transpose flag, no copy."""

    def __init__(self, params: Params, *, interpolate: bool | int, local_padding: int, path: str = "auto"):
        p = {k: _f32(v) for k, v in params.items()}
        self.pw1_t = p["pwconv1.weight"][:, :, 0, 0].T  # (C, 2C') view
        self.pw1_b = p["pwconv1.bias"]
        self.pw2_t = p["pwconv2.weight"][:, :, 0, 0].T  # (C', C)
        self.c, self.med = self.pw1_t.shape[0], self.pw1_t.shape[1] // 2
        self.spatial = Spatial(
            p["dwconv1.conv_h.weight"],
            p["dwconv1.conv_w.weight"],
            p["dwconv2.weight"],
            interpolate,
            local_padding,
            path,
        )

    def needs(self, n: int, h: int, w: int, threads: int | None) -> dict[str, int]:
        p = n * h * w
        return {
            "b": p * self.c,
            "h": p * 2 * self.med,
            "g": p * self.med,
            "s": p * max(self.c, self.med),
            "ws": self.spatial.prepare(n, h, w, threads)["workspace_floats"],
        }

    def steps(self, arena: Arena, threads: int | None, n: int, h: int, w: int) -> list[Step]:
        p, c, med = n * h * w, self.c, self.med
        opt = arena.keep(options(threads))
        b, hh = arena.view("b", p, c), arena.view("h", p, 2 * med)
        g, s, out = arena.view("g", p, med), arena.view("s", p, med), arena.view("s", p, c)
        return [
            arena.gemm(b, self.pw1_t, hh),
            arena.call(lib.pcn_bias_gelu, arena.pointer(hh) + med, 2 * med, self.pw1_b[med:], g, med, p, med, opt),
            self.spatial.step(arena, threads, n, h, w, g, s),
            arena.call(lib.pcn_gate, hh, 2 * med, self.pw1_b[:med], s, med, g, med, p, med, opt),
            arena.gemm(g, self.pw2_t, out),
        ]


class Bgu:
    """The channel BGU (clause 8.2) of p rows, buffer b -> s: fc1 (GEMM), x1 * GELU(x2) with the
    bias (one C call), fc2 (GEMM, no bias); Linear weights as transposed views."""

    def __init__(self, params: Params):
        self.fc1_t, self.fc1_b = _f32(params["fc1.weight"]).T, _f32(params["fc1.bias"])  # (C, 5C)
        self.fc2_t = _f32(params["fc2.weight"]).T  # (5C/2, C)
        self.c, self.hidden = self.fc1_t.shape[0], self.fc2_t.shape[0]

    def needs(self, p: int) -> dict[str, int]:
        return {"b": p * self.c, "h": p * 2 * self.hidden, "m": p * self.hidden, "s": p * self.c}

    def steps(self, arena: Arena, threads: int | None, p: int) -> list[Step]:
        c, hidden = self.c, self.hidden
        opt = arena.keep(options(threads))
        b, hh = arena.view("b", p, c), arena.view("h", p, 2 * hidden)
        m, s = arena.view("m", p, hidden), arena.view("s", p, c)
        return [
            arena.gemm(b, self.fc1_t, hh),
            arena.call(lib.pcn_gelu_gate, hh, 2 * hidden, self.fc1_b, m, hidden, p, hidden, opt),
            arena.gemm(m, self.fc2_t, s),
        ]


class Block:
    """A ParCNetV2 block (clause 8.4), NHWC, on the residual stream x whose norm1 is already in
    b: token mixer, residual (res_scale1) fused with norm2, BGU, residual (res_scale2) fused with
    the next layer's input norm. ``path`` forces the spatial path ("auto": the cost model)."""

    def __init__(
        self,
        params: Params,
        *,
        res_scale: bool,
        eps: float,
        interpolate: bool | int,
        local_padding: int,
        path: str = "auto",
    ):
        self.mixer = TokenMixer(
            subtree(params, "token_mixer"), interpolate=interpolate, local_padding=local_padding, path=path
        )
        self.mlp = Bgu(subtree(params, "mlp"))
        self.norm1, self.norm2 = _f32(params["norm1.weight"]), _f32(params["norm2.weight"])
        self.scale1 = _f32(params["res_scale1.scale"]) if res_scale else None
        self.scale2 = _f32(params["res_scale2.scale"]) if res_scale else None
        self.c, self.eps = self.norm1.shape[0], float(eps)

    def needs(self, n: int, h: int, w: int, threads: int | None) -> dict[str, int]:
        p = n * h * w
        return merge_sizes(self.mixer.needs(n, h, w, threads), self.mlp.needs(p), {"x": p * self.c})

    def residual_step(self, arena: Arena, threads: int | None, p: int, scale, norm) -> Step:
        """x = x * scale + s (clauses 8.3, 8.4), then b = LayerNormGeneral(x) * norm if given."""
        c = self.c
        x, s, b = arena.view("x", p, c), arena.view("s", p, c), arena.view("b", p, c)
        return arena.call(
            lib.pcn_residual_norm,
            x,
            c,
            _null(scale),
            s,
            c,
            _null(norm),
            b if norm is not None else ffi.NULL,
            c,
            p,
            c,
            self.eps,
            arena.keep(options(threads)),
        )

    def steps(
        self, arena: Arena, threads: int | None, n: int, h: int, w: int, next_norm: np.ndarray | None
    ) -> list[Step]:
        """Leaves x updated and, when ``next_norm`` is given, b = LayerNormGeneral(x) * next_norm."""
        p = n * h * w
        return (
            self.mixer.steps(arena, threads, n, h, w)
            + [self.residual_step(arena, threads, p, self.scale1, self.norm2)]
            + self.mlp.steps(arena, threads, p)
            + [self.residual_step(arena, threads, p, self.scale2, next_norm)]
        )


def merge_sizes(*sizes: dict[str, int]) -> dict[str, int]:
    """Buffer sizes of several layers sharing an arena: the largest need of each buffer."""
    out: dict[str, int] = {}
    for more in sizes:
        for k, v in more.items():
            out[k] = max(out.get(k, 0), int(v))
    return out


def _crop(kernel: np.ndarray, length: int) -> np.ndarray:
    """The centred ``length`` taps of odd 1-D kernels (C, K) when K is longer."""
    k = kernel.shape[1]
    if k <= length:
        return kernel
    start = (k - length) // 2
    return kernel[:, start : start + length]


class Head:
    """Mean over H and W, LayerNorm, Linear (clause 8.5), one C call. The classifier is packed
    as its transpose (C, K)."""

    def __init__(self, params: Params, eps: float):
        self.norm_w, self.norm_b = _f32(params["norm.weight"]), _f32(params["norm.bias"])
        self.fc_wt = np.ascontiguousarray(_f32(params["head.weight"]).T)
        self.fc_b = _f32(params["head.bias"])
        self.eps = float(eps)
        self.c, self.k = self.fc_wt.shape

    def needs(self, n: int) -> dict[str, int]:
        return {"features": n * self.c, "logits": n * self.k}

    def steps(self, arena: Arena, threads: int | None, n: int, hw: int) -> list[Step]:
        """x (N*H*W, C) -> logits (N, K) in buffer "logits", features (N, C) in "features"."""
        x = arena.view("x", n * hw, self.c)
        features, logits = arena.view("features", n, self.c), arena.view("logits", n, self.k)
        return [
            arena.call(
                lib.pcn_head,
                x,
                n,
                hw,
                self.c,
                self.norm_w,
                self.norm_b,
                self.eps,
                self.fc_wt,
                self.fc_b,
                self.k,
                features,
                logits,
                arena.keep(options(threads)),
            )
        ]
