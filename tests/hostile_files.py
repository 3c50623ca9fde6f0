"""Weights files built field by field, for the hostile-input tests (``test_hostile_input.py``,
``test_hostile_fuzz.py``): pickle opcodes, zip archives with any compression method, declared
size and CRC, legacy torch streams and .npy headers. Importable because pyproject.toml puts
``tests`` on the test path; not collected (no ``test_`` prefix)."""

from __future__ import annotations

import bz2
import functools
import io
import pickle
import struct
import zipfile
import zlib
from dataclasses import dataclass

MIB = 1 << 20


def text_op(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def global_op(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def state_dict_pickle(size: bytes = b"(K\x04t", stride: bytes = b"(K\x01t", numel: int = 4) -> bytes:
    """data.pkl of {'w': a float32 tensor on storage '0' of ``numel`` elements}; ``size`` and
    ``stride`` are the opcodes that push them."""
    pid = (b"(" + text_op("storage") + global_op("torch", "FloatStorage") + text_op("0") + text_op("cpu") + b"J"
           + struct.pack("<i", numel) + b"tQ")  # fmt: skip
    tensor = (global_op("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + b"K\x00" + size + stride + b"\x89"
              + global_op("collections", "OrderedDict") + b")RtR")  # fmt: skip
    return b"\x80\x02}(" + text_op("w") + tensor + b"u."


@dataclass
class Member:
    """One zip member as the archive records it (anything may be a lie)."""

    name: str
    payload: bytes  # as stored in the archive
    method: int = zipfile.ZIP_STORED
    crc: int = 0
    size: int = 0  # declared uncompressed size
    flags: int = 0  # general-purpose bits (bit 0: encrypted)


def compress(data: bytes, method: int) -> bytes:
    """``data`` as a member of ``method`` stores it (deflate, bzip2; anything else as it is)."""
    if method == zipfile.ZIP_DEFLATED:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        return c.compress(data) + c.flush()
    if method == zipfile.ZIP_BZIP2:
        return bz2.compress(data, 9)
    return data


def member(name: str, data: bytes, method: int = zipfile.ZIP_STORED, declared: int | None = None) -> Member:
    """A member holding ``data`` with its true CRC; its declared size is ``declared`` if given."""
    return Member(name, compress(data, method), method, zlib.crc32(data), len(data) if declared is None else declared)


def zip_bytes(members: list[Member]) -> bytes:
    """A zip archive written field by field, so that methods, sizes and CRCs are what we say."""
    out, central = io.BytesIO(), io.BytesIO()
    for m in members:
        name = m.name.encode()
        offset = out.tell()
        fields = (20, m.flags, m.method, 0, 0x21, m.crc, len(m.payload), m.size % 2**32, len(name))
        out.write(b"PK\x03\x04" + struct.pack("<HHHHHIIIHH", *fields, 0) + name + m.payload)
        central.write(b"PK\x01\x02" + struct.pack("<HHHHHHIIIHHHHHII", 20, *fields, 0, 0, 0, 0, 0, offset) + name)
    cd = central.getvalue()
    eocd = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, len(members), len(members), len(cd), out.tell(), 0)
    return out.getvalue() + cd + eocd


def torch_zip(data_pkl: Member, storages: list[Member] = ()) -> bytes:
    return zip_bytes([data_pkl, member("archive/byteorder", b"little"), *storages, member("archive/version", b"3\n")])


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def legacy_head() -> bytes:
    return b"".join(pickle.dumps(x, 2) for x in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}))


@functools.cache
def zeros_compressed(method: int, nbytes: int, prefix: bytes = b"") -> bytes:
    """``prefix`` then ``nbytes`` zeros, compressed in one stream (fed in 1 MiB pieces)."""
    c = bz2.BZ2Compressor(9) if method == zipfile.ZIP_BZIP2 else zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = bytes(MIB)
    return c.compress(prefix) + b"".join(c.compress(piece) for _ in range(nbytes // MIB)) + c.flush()


def npy_header(shape: tuple | str, dtype: str = "<f4") -> bytes:
    """An .npy header (version 1.0) for ``shape`` (a tuple, or its text)."""
    text = shape if isinstance(shape, str) else repr(shape)
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {text}, }}".encode()
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def with_storage(data_pkl: bytes, storage: Member | None = None) -> bytes:
    storage = storage if storage is not None else member("archive/data/0", bytes(16))
    return torch_zip(member("archive/data.pkl", data_pkl), [storage])


# Pickles of the costliest objects per byte, by how many repetitions ``n`` they hold.
COSTLY_PICKLES = {
    "set of distinct ints": lambda n: (
        b"\x80\x02\x8f(" + b"".join(b"J" + struct.pack("<i", 1000 + i) for i in range(n)) + b"\x90."
    ),
    "list of 4-byte-char strings": lambda n: (
        b"\x80\x02]" + (b"\x8c\xff" + b"a" * 251 + "\U0001f600".encode() + b"a") * n + b"."
    ),
    "empty sets": lambda n: b"\x80\x02" + b"\x8f" * n + b".",
}


def largest_admitted(make, limit: int = 1 << 23) -> bytes:
    """``make(n)`` for the largest n below ``limit`` that the pickle scan of clause 13.5 admits."""
    from parcnetv2.reference.checkpoint.internal_errors import BadFile
    from parcnetv2.reference.checkpoint.pickle_scan import scan

    lo, hi = 1, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            scan(make(mid))
            lo = mid
        except BadFile:
            hi = mid - 1
    return make(lo)
