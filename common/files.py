"""Opening files a user names, without being stalled or flooded by what the name points at.

A FIFO named ``x.pth`` would block an ordinary ``open`` until a writer appears, and ``/dev/zero``
or a symlink to it would be read until memory runs out. Every reader of user files (weights,
``.npy`` inputs, images, label lists) opens them here: without blocking, and only when the path,
symlinks resolved, is a regular file (spec clause 13.5).
"""

from __future__ import annotations

import errno
import io
import os
import stat

__all__ = ["NotRegularFileError", "open_regular"]

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotRegularFileError(OSError):
    """The path names something other than a regular file (a FIFO, a device, a socket)."""


def open_regular(path: str | os.PathLike[str]) -> io.BufferedReader:
    """``path`` opened for binary reading; the file's size is ``os.fstat(f.fileno()).st_size``.

    Raises FileNotFoundError, IsADirectoryError (``strerror`` "is a directory"),
    NotRegularFileError (``strerror`` names the kind, e.g. "a FIFO (named pipe), not a regular
    file") or another OSError. The open never blocks: O_NONBLOCK is set for the open and cleared
    once the descriptor is known to be a regular file.
    """
    nonblock = getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, os.O_RDONLY | nonblock | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", os.fspath(path))
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "a special file")
            raise NotRegularFileError(errno.EINVAL, f"{kind}, not a regular file", os.fspath(path))
        if nonblock:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
