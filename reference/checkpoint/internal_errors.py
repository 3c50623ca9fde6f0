"""The errors the format readers raise. They do not know the file's path: the public functions
catch them and raise :class:`~parcnetv2.errors.CheckpointError` or
:class:`~parcnetv2.errors.UnsafeCheckpointError` with the path in front of the message."""

from __future__ import annotations

from typing import Any

from parcnetv2.errors import brief, one_line


class BadFile(Exception):
    """The file is malformed or unsupported; becomes a CheckpointError naming the file."""


class UnsafePickle(BadFile):
    """The pickle names a refused global; becomes an UnsafeCheckpointError naming the file."""


def shorten(x: Any, limit: int = 120) -> str:
    """``x`` as message text of at most ``limit`` characters on one line: a str as it is (its
    non-printable characters escaped), anything else as ``parcnetv2.errors.brief`` shows it. A
    crafted file must not be able to flood an error message or show an object's repr."""
    return one_line(x, limit) if isinstance(x, str) else brief(x, limit)
