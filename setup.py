"""Build hook for the C kernels: compiles ``parcnetv2.cext._kernels`` with cffi (spec clause 12).

All metadata lives in pyproject.toml; this file only adds the cffi extension module and turns a
missing or failing C compiler into one clear error message.
"""

from setuptools import setup
from setuptools.command.build_ext import build_ext

NO_COMPILER = (
    "parcnetv2 could not compile its C kernels (parcnetv2.cext). Installing parcnetv2 needs a "
    "working C99 compiler, because the package build compiles cext/src/*.c into the extension "
    "module parcnetv2.cext._kernels with cffi; nothing is compiled at import time. Install one "
    "(Debian/Ubuntu: apt-get install gcc; Fedora: dnf install gcc; macOS: xcode-select --install; "
    "Windows: the MSVC Build Tools) and run pip install again. The compiler's own error follows."
)


class BuildExtClearError(build_ext):
    """build_ext that reports a missing or broken C compiler in one paragraph."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # CompileError, LinkError, PlatformError, missing executable...
            raise SystemExit(f"error: {NO_COMPILER}\n  ({type(exc).__name__}: {exc})") from exc


setup(
    cffi_modules=["cext/build_cffi.py:ffibuilder"],
    cmdclass={"build_ext": BuildExtClearError},
)
