"""Execution plans of the engine: preallocated buffers and a flat list of steps (clause 15.4).

A ``Plan`` belongs to one input shape. Its ``Arena`` holds the named float32 buffers every
layer writes (sized once, for the largest use over all layers), and its steps are zero-argument
callables made when the plan is built: C calls of the kernel library with their pointers,
sizes and options already bound (``Arena.call``), among them the GEMMs (``Arena.gemm``: the C
library's ``pcn_gemm`` on the engine's threads around SciPy's single-threaded sgemm, see
``blas``). Running a plan allocates nothing; each C call validates its sizes (cheaply) and
reports errors through the arena's ``pcn_error``.

Layout: activations are NHWC, i.e. matrices of N*H*W rows (pixels) by C columns (channels).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from parcnetv2.cext._kernels import ffi, lib
from parcnetv2.engine.blas import scipy_blas
from parcnetv2.errors import InputError

__all__ = ["Arena", "Plan", "options"]

Step = Callable[[], Any]


def options(threads: int | None, path: int | None = None):
    """A ``pcn_options`` for the C calls of a plan: ``threads`` (None: OpenMP's default) and, for
    the spatial operation, a ``pcn_path``."""
    opt = ffi.new("pcn_options *")
    opt.threads = 0 if threads is None else int(threads)
    opt.isa = lib.PCN_ISA_AUTO
    opt.path = lib.PCN_PATH_AUTO if path is None else path
    return opt


class Arena:
    """Named float32 buffers (flat), sized from ``sizes`` (name -> element count), the pcn_error
    every C step of the plan reports into, and the GEMM settings for ``threads`` (None: OpenMP's
    default)."""

    def __init__(self, sizes: Mapping[str, int], threads: int | None = None):
        self._buffers = {name: np.empty(max(int(n), 1), np.float32) for name, n in sizes.items()}
        self.err = ffi.new("pcn_error *")
        self._keep: list[Any] = []  # arrays and cffi objects the bound steps point into
        self.blas = scipy_blas()
        self._gemm_opt = options(threads if self.blas.parallel else 1)

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self._buffers.values())

    def view(self, name: str, *shape: int) -> np.ndarray:
        """The first prod(shape) elements of buffer ``name`` as a C-contiguous array."""
        count = int(np.prod(shape, dtype=np.int64))
        buf = self._buffers[name]
        if count > buf.size:
            raise AssertionError(f"buffer {name} holds {buf.size} floats, a step needs {count}")  # a sizing bug
        return buf[:count].reshape(shape)

    def pointer(self, array: np.ndarray):
        """A ``float *`` to a C-contiguous float32 array (kept alive by the arena)."""
        if array.dtype != np.float32 or not array.flags.c_contiguous:
            raise AssertionError(f"C steps need C-contiguous float32 arrays, got {array.dtype} {array.strides}")
        self._keep.append(array)
        return ffi.cast("float *", ffi.from_buffer(array))

    def keep(self, obj: Any) -> Any:
        self._keep.append(obj)
        return obj

    def call(self, function: Callable[..., int], *args: Any) -> Step:
        """A step calling the C ``function`` with ``args`` then the plan's error report; arrays
        among ``args`` become pointers."""
        bound = [self.pointer(a) if isinstance(a, np.ndarray) else a for a in args]
        return functools.partial(function, *bound, self.err)

    def gemm(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> Step:
        """A step ``out = a @ b``, all 2-D float32: ``a`` (M, K) and ``out`` (M, N) C-contiguous;
        ``b`` (K, N) C-contiguous, or the transposed view of a C-contiguous (N, K) weight (a PyTorch
        Linear / 1x1-conv weight as is), which BLAS reads with its transpose flag: no copy."""
        (m, k), n = a.shape, b.shape[1]
        transposed = not b.flags.c_contiguous
        weight = b.T if transposed else b
        return self.call(
            lib.pcn_gemm,
            self.blas.sgemm,
            a,
            k,
            weight,
            weight.shape[1],
            int(transposed),
            out,
            n,
            m,
            n,
            k,
            self._gemm_opt,
        )


class Plan:
    """The steps of one forward pass for one input shape, on one arena."""

    def __init__(self, arena: Arena, steps: list[Step], output: Callable[[], Any]):
        self.arena = arena
        self.steps = steps
        self._output = output

    def run(self) -> Any:
        """Run every step; a C step that reports an error raises InputError with its message."""
        for step in self.steps:
            if step():
                message = ffi.string(self.arena.err.message).decode(errors="replace")
                raise InputError(f"engine: {message}")
        return self._output()
