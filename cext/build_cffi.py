"""cffi builder of ``parcnetv2.cext._kernels`` (spec clause 12), used by the root setup.py.

Out-of-line API mode: the package build compiles the library's C sources (every ``cext/src/*.c``,
the same list the Makefile uses) together with the cffi wrapper into one extension module.
Nothing is compiled at import time. OpenMP flags are added only when a probe compile and link
with them succeeds.
"""

from __future__ import annotations

import glob
import os
import tempfile

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_cdef():
    """``cdef.py`` beside this file (the build runs this file by path, not as a package module)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_pcn_cdef", os.path.join(HERE, "cdef.py"))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {HERE}/cdef.py, the generator of the cffi declarations")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The declarations come from the public headers themselves (cdef.py), never from a copy.
_cdef = _load_cdef()
CDEF = _cdef.cdef_from_headers()
INCLUDES = "".join(f'#include "{name}"\n' for name in _cdef.HEADERS)


def _rel(path: str) -> str:
    """setuptools wants source paths relative to the project root (the current directory)."""
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path


def sources() -> list[str]:
    return sorted(_rel(p) for p in glob.glob(os.path.join(HERE, "src", "*.c")))


def _probe_openmp() -> tuple[list[str], list[str]]:
    """(compile args, link args) for OpenMP when the build compiler accepts them, else ([], [])."""
    try:
        from setuptools._distutils.ccompiler import new_compiler
        from setuptools._distutils.sysconfig import customize_compiler
    except ImportError:  # pragma: no cover - very old setuptools
        return [], []
    candidates = [(["-fopenmp"], ["-fopenmp"]), (["/openmp"], [])]
    code = "#include <omp.h>\nint main(void){int n=0;\n#pragma omp parallel\n{n=omp_get_num_threads();}\nreturn n<1;}\n"
    for cflags, lflags in candidates:
        try:
            cc = new_compiler()
            customize_compiler(cc)
            with tempfile.TemporaryDirectory() as tmp:
                src = os.path.join(tmp, "omp_probe.c")
                with open(src, "w") as fh:
                    fh.write(code)
                objs = cc.compile([src], output_dir=tmp, extra_postargs=cflags)
                cc.link_executable(objs, os.path.join(tmp, "omp_probe"), extra_postargs=lflags)
            return cflags, lflags
        except Exception:
            continue
    return [], []


def _compile_args() -> list[str]:
    if os.name == "nt":
        return []
    return ["-std=c99", "-O3", "-ffp-contract=off"]


omp_cflags, omp_lflags = _probe_openmp()

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "parcnetv2.cext._kernels",
    INCLUDES,
    sources=sources(),
    include_dirs=[_rel(os.path.join(HERE, "include"))],
    extra_compile_args=_compile_args() + omp_cflags,
    extra_link_args=omp_lflags,
)

if __name__ == "__main__":  # manual build for development: python cext/build_cffi.py
    ffibuilder.compile(verbose=True)
