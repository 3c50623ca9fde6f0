"""Zip archives (torch's zip checkpoints and ``.npz``) read within the limits of clause 13.5.

``zipfile`` alone trusts what an archive declares: it reads a central directory of any size,
builds one record per entry, and inflates a bzip2 or LZMA member in one call, whatever its
declared size (a 1 KB member can inflate to gigabytes before any check). Here:

- no single read of the file exceeds ``MAX_ZIP_READ`` (the central directory is one read), and an
  archive has at most ``MAX_ZIP_MEMBERS`` members;
- the members' compressed sizes add up to no more than the file (overlapping members, the
  "quoted overlap" zip bomb, are refused);
- a member is stored or deflated (what ``torch.save``, ``np.savez`` and ``np.savez_compressed``
  write), not encrypted, and declares at most ``MAX_DEFLATE_RATIO`` times its compressed size (plus
  ``DEFLATE_SLACK``): deflate cannot expand more, so a larger declaration is a lie, refused before
  anything is inflated;
- members are read in ``CHUNK`` pieces into a buffer of exactly the declared size; zipfile stops
  inflating at the declared size and checks the CRC.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

from parcnetv2.errors import brief
from parcnetv2.reference.checkpoint.internal_errors import BadFile, shorten
from parcnetv2.reference.checkpoint.limits import (
    CHUNK,
    DEFLATE_SLACK,
    MAX_DEFLATE_RATIO,
    MAX_ZIP_MEMBERS,
    MAX_ZIP_READ,
)

__all__ = ["check_member", "open_zip", "read_member", "read_small_member"]

_METHODS = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "LZMA"}


class _BoundedReads(io.RawIOBase):
    """A read-only file whose every read is at most ``MAX_ZIP_READ`` bytes (BadFile beyond)."""

    def __init__(self, f: io.BufferedIOBase, size: int) -> None:
        super().__init__()
        self._f, self._size = f, size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            n = max(0, self._size - self._f.tell())
        if n > MAX_ZIP_READ:
            raise BadFile(f"zip archive: a record of {n} bytes (its central directory?) is over the "
                          f"{MAX_ZIP_READ >> 20} MiB limit")  # fmt: skip
        return self._f.read(n)

    def readinto(self, b: Any) -> int:
        data = self.read(len(memoryview(b)))
        memoryview(b).cast("B")[: len(data)] = data
        return len(data)


def open_zip(f: io.BufferedIOBase, size: int) -> zipfile.ZipFile:
    """The archive in the open file ``f`` of ``size`` bytes, its directory checked (see above)."""
    try:
        zf = zipfile.ZipFile(_BoundedReads(f, size))
    except zipfile.BadZipFile as e:
        raise BadFile(f"corrupt or truncated zip archive ({shorten(str(e))})") from None
    infos = zf.infolist()
    if len(infos) > MAX_ZIP_MEMBERS:
        zf.close()
        raise BadFile(f"zip archive has {len(infos)} members, over the limit of {MAX_ZIP_MEMBERS}")
    if sum(i.compress_size for i in infos) > size or len({i.header_offset for i in infos}) < len(infos):
        zf.close()
        raise BadFile("zip archive members overlap (their data adds up to more than the file)")
    return zf


def check_member(info: zipfile.ZipInfo) -> None:
    """BadFile unless ``info`` is a stored or deflated, unencrypted member whose declared size
    deflate could produce from its compressed size."""
    name = brief(info.filename)
    if info.flag_bits & 0x1:
        raise BadFile(f"zip member {name} is encrypted")
    if info.compress_type == zipfile.ZIP_STORED:
        if info.compress_size != info.file_size:
            raise BadFile(f"zip member {name} is stored but declares {info.file_size} bytes in "
                          f"{info.compress_size}")  # fmt: skip
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        if info.file_size > MAX_DEFLATE_RATIO * info.compress_size + DEFLATE_SLACK:
            raise BadFile(f"zip member {name} declares {info.file_size} bytes from {info.compress_size} "
                          f"deflated bytes; deflate expands at most {MAX_DEFLATE_RATIO}:1")  # fmt: skip
    else:
        method = _METHODS.get(info.compress_type, f"method {info.compress_type}")
        raise BadFile(f"zip member {name} is compressed with {method}; weights files are read only "
                      "when stored or deflated (what torch.save and numpy write)")  # fmt: skip


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: memoryview, start: int = 0) -> None:
    """Fill ``out`` with the member's bytes from offset ``start`` on (``len(out)`` of them), reading
    and inflating ``CHUNK`` bytes at a time; ``check_member`` must have accepted ``info``."""
    out = out.cast("B")
    name = brief(info.filename)
    try:
        with zf.open(info) as m:
            _skip(m, start)
            pos = 0
            while pos < len(out):
                piece = m.read(min(CHUNK, len(out) - pos))
                if not piece:
                    raise BadFile(f"zip member {name} ends after {start + pos} of its {info.file_size} bytes")
                out[pos : pos + len(piece)] = piece
                pos += len(piece)
    except zipfile.BadZipFile as e:
        raise BadFile(f"zip member {name}: {shorten(str(e))}") from None
    except (EOFError, ValueError, OSError) as e:  # zlib.error is an Exception: see below
        raise BadFile(f"zip member {name} is corrupt ({type(e).__name__}: {shorten(str(e))})") from None
    except Exception as e:
        if type(e).__module__ == "zlib":
            raise BadFile(f"zip member {name} is corrupt (zlib: {shorten(str(e))})") from None
        raise


def _skip(m: Any, count: int) -> None:
    while count > 0:
        piece = m.read(min(CHUNK, count))
        if not piece:
            return
        count -= len(piece)


def read_small_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, what: str) -> bytes:
    """The whole member, which must hold at most ``limit`` bytes (``what`` names it in errors)."""
    check_member(info)
    if info.file_size > limit:
        raise BadFile(f"{what} is {info.file_size} bytes, over the limit of {limit}")
    buf = bytearray(info.file_size)
    read_member(zf, info, memoryview(buf))
    return bytes(buf)
