"""The BLAS sgemm behind the engine's pointwise convolutions and its thread count (spec clause 15.5).

The engine's 1x1 convolutions, Linear layers and im2col convolutions are GEMMs that the C
library's ``pcn_gemm`` splits over the engine's OpenMP threads, each thread multiplying a block
of rows (or of columns) with one single-threaded BLAS ``sgemm`` call. One thread pool thus runs
everything: a BLAS thread pool beside the OpenMP one would busy-wait between calls and, on a
machine with two cores, make each pool wait for the other's spinning threads (measured: an order
of magnitude slower on a loaded host).

The sgemm is SciPy's (``scipy.linalg.cython_blas.sgemm``, SciPy being a runtime dependency), found
through its Cython C-API capsule (the way Numba finds BLAS). SciPy's wheels bundle an OpenBLAS;
this module finds it among the libraries the process mapped (``/proc/self/maps``) and, through
ctypes, sets its thread count to 1 for the duration of an engine call (``openblas_set_num_threads``
under whichever symbol name the build exports), restoring it after. Where that OpenBLAS cannot
be found (another BLAS, another OS), ``parallel`` is False: the engine then makes one sgemm call
per GEMM and the BLAS keeps its own threads. No new dependency: ctypes is in the standard library.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from typing import Any

__all__ = ["Blas", "OpenBlasThreads", "scipy_blas"]

_SET = (
    "openblas_set_num_threads",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads64_",
)
_GET = (
    "openblas_get_num_threads",
    "scipy_openblas_get_num_threads",
    "openblas_get_num_threads64_",
    "scipy_openblas_get_num_threads64_",
)


def _loaded_libraries() -> list[str]:
    """Paths of the shared objects mapped into this process (Linux; empty elsewhere)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = {line.split(None, 5)[5].strip() for line in maps if line.count(" ") >= 5 and "/" in line}
    except OSError:
        return []
    return sorted(p for p in paths if ".so" in os.path.basename(p))


def _symbol(lib: ctypes.CDLL, names: tuple[str, ...]) -> Any:
    for name in names:
        fn = getattr(lib, name, None)
        if fn is not None:
            return fn
    return None


class OpenBlasThreads:
    """Set and restore the thread count of one loaded OpenBLAS library."""

    def __init__(self, path: str):
        lib = ctypes.CDLL(path)  # already loaded: the same handle, nothing is initialised twice
        self.path = path
        self._set, self._get = _symbol(lib, _SET), _symbol(lib, _GET)
        if self._set is None or self._get is None:
            raise OSError(f"{path} exports no openblas_set_num_threads / openblas_get_num_threads")
        self._set.argtypes, self._set.restype = [ctypes.c_int], None
        self._get.argtypes, self._get.restype = [], ctypes.c_int

    def get(self) -> int:
        return int(self._get())

    @contextlib.contextmanager
    def limit(self, threads: int) -> Iterator[None]:
        """Within the block, the library uses ``threads`` threads."""
        before = self.get()
        if before != threads:
            self._set(int(threads))
        try:
            yield
        finally:
            if before != threads:
                self._set(before)


class Blas:
    """The sgemm for ``pcn_gemm`` and whether it can run single-threaded on several threads."""

    def __init__(self, sgemm: Any, threads: OpenBlasThreads | None):
        self.sgemm = sgemm
        self.control = threads

    @property
    def parallel(self) -> bool:
        """True when the engine may call sgemm from its threads (the BLAS is held to one thread)."""
        return self.control is not None

    @property
    def library(self) -> str | None:
        return self.control.path if self.control else None

    def single_threaded(self) -> contextlib.AbstractContextManager:
        """Hold the BLAS to one thread (when it can be) for the duration of an engine call."""
        return self.control.limit(1) if self.control else contextlib.nullcontext()


def _capsule_pointer(capsule: Any) -> int:
    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype, api.PyCapsule_GetName.argtypes = ctypes.c_char_p, [ctypes.py_object]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return int(api.PyCapsule_GetPointer(capsule, api.PyCapsule_GetName(capsule)))


_BLAS: Blas | None = None


def scipy_blas() -> Blas:
    """SciPy's sgemm as a ``pcn_sgemm_fn`` and the control of its OpenBLAS (found once)."""
    global _BLAS
    if _BLAS is None:
        from scipy.linalg import cython_blas

        from parcnetv2.cext._kernels import ffi

        sgemm = ffi.cast("pcn_sgemm_fn", _capsule_pointer(cython_blas.__pyx_capi__["sgemm"]))
        control = None
        candidates = [
            p
            for p in _loaded_libraries()
            if "openblas" in os.path.basename(p).lower() and f"{os.sep}numpy.libs{os.sep}" not in p
        ]  # NumPy's own copy is not SciPy's BLAS
        candidates.sort(key=lambda p: f"{os.sep}scipy.libs{os.sep}" not in p)  # SciPy's bundled copy first
        for path in candidates:
            try:
                control = OpenBlasThreads(path)
                break
            except OSError:
                continue
        _BLAS = Blas(sgemm, control)
    return _BLAS
