"""The errors the format readers raise. They do not know the file's path: the public functions
catch them and raise :class:`~parcnetv2.errors.CheckpointError` or
:class:`~parcnetv2.errors.UnsafeCheckpointError` with the path in front of the message."""

from __future__ import annotations

from typing import Any


class BadFile(Exception):
    """The file is malformed or unsupported; becomes a CheckpointError naming the file."""


class UnsafePickle(BadFile):
    """The pickle names a refused global; becomes an UnsafeCheckpointError naming the file."""


def shorten(x: Any, limit: int = 120) -> str:
    """``x`` (a str, else its repr) cut to ``limit`` characters: a crafted file must not be able
    to flood an error message."""
    s = x if isinstance(x, str) else repr(x)
    return s if len(s) <= limit else s[: limit - 3] + "..."
