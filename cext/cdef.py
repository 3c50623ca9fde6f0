"""The cffi declarations of ``parcnetv2.cext._kernels``, generated from the public C headers
(spec clause 16.5): the headers are the one source of the C API, so the binding cannot drift from
them (a hand copy once lacked ``pcn_oversized_conv_workspace_size``).

The headers are plain C99 written for this: declarations, enums and structs, integer
``#define PCN_*`` constants, ``PCN_RESTRICT`` on pointer parameters and ``extern "C"`` guards.
``cdef_from_headers`` strips what cffi's parser does not take: comments, ``#include``, the
C++-only blocks, ``PCN_RESTRICT`` (it does not change a call), and substitutes the integer
constants where they size arrays. Standard library only: the build imports it before installing.
"""

from __future__ import annotations

import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
#: The public headers, in dependency order.
HEADERS = ("parcnetv2.h", "pcn_fused.h", "pcn_gemm.h", "pcn_model.h", "pcn_image.h")

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_INT_DEFINE = re.compile(r"^#\s*define\s+(PCN_[A-Z0-9_]+)\s+(-?\d+)\s*$")
_CPLUSPLUS = re.compile(r"^#\s*(ifdef\s+__cplusplus|if\s+defined\s*\(?\s*__cplusplus)")


def header_paths() -> list[str]:
    return [os.path.join(HERE, "include", name) for name in HEADERS]


def _strip(text: str, constants: dict[str, str]) -> list[str]:
    """Declarations of one header: lines outside C++-only blocks, without directives."""
    out: list[str] = []
    stack: list[bool] = []  # per open #if: does its current branch keep lines
    for raw in _COMMENT.sub(" ", text).splitlines():
        line = raw.strip()
        if line.startswith("#"):
            if _CPLUSPLUS.match(line):
                stack.append(False)
            elif re.match(r"^#\s*if", line):
                stack.append(True)
            elif re.match(r"^#\s*(else|elif)", line):
                stack[-1] = True
            elif re.match(r"^#\s*endif", line):
                stack.pop()
            elif all(stack):
                match = _INT_DEFINE.match(line)
                if match:
                    constants[match.group(1)] = match.group(2)
                    out.append(f"#define {match.group(1)} {match.group(2)}")
            continue
        if all(stack) and line:
            out.append(raw)
    return out


def cdef_from_headers(paths: list[str] | None = None) -> str:
    """The cdef text of the public headers (see the module docstring)."""
    constants: dict[str, str] = {}
    lines: list[str] = []
    for path in paths or header_paths():
        with open(path, encoding="utf-8") as fh:
            lines += _strip(fh.read(), constants)
    text = "\n".join(lines)
    text = re.sub(r"\bPCN_RESTRICT\b", "", text)
    for name, value in constants.items():  # array sizes: cffi wants literals
        text = re.sub(rf"\[\s*{name}\s*\]", f"[{value}]", text)
    return text + "\n"


def declared_functions(paths: list[str] | None = None) -> list[str]:
    """Names of the functions the public headers declare (for the binding's tests)."""
    text = cdef_from_headers(paths)
    return sorted(set(re.findall(r"\b(pcn_[a-z0-9_]+)\s*\(", text)))


if __name__ == "__main__":  # print the generated declarations
    print(cdef_from_headers(), end="")
