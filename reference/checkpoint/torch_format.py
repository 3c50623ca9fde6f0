"""What ``torch.save`` writes, read and written without torch.

Reading: the zip format (torch >= 1.6: ``<archive>/data.pkl``, a pickle whose tensors point at
storage records ``<archive>/data/<key>``) and the legacy stream (torch < 1.6: pickles followed by
raw storages). Pickles go through :mod:`~parcnetv2.reference.checkpoint.restricted_pickle`; the
tensor records it returns are checked against their storages here and copied into arrays.

Writing: the zip format, with a data.pkl emitted opcode by opcode.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

from parcnetv2.reference.checkpoint.dtypes import DType, to_native
from parcnetv2.reference.checkpoint.internal_errors import BadFile, shorten
from parcnetv2.reference.checkpoint.restricted_pickle import (
    Storage,
    StorageType,
    TensorRecord,
    check_int,
    describe,
    unpickle,
)
from parcnetv2.reference.checkpoint.wrappers import find_state_dict, strip_prefix

_MAX_PICKLE_BYTES = 256 << 20  # a state_dict's data.pkl is kilobytes; bigger is abuse
# Tensor views may overlap or broadcast (stride 0), so the arrays built can be larger than the
# stored data; a file may not make us allocate more than this factor (plus slack) of what it stores.
_MAX_EXPANSION = 16
_EXPANSION_SLACK = 64 << 20
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_ZIP_ALIGN = 64


def _parse_pid(pid: Any, legacy: bool) -> tuple[StorageType, str, int, Any]:
    """Check a persistent id ``('storage', type, key, location, numel[, view])``."""
    n = 6 if legacy else 5
    if not isinstance(pid, tuple) or len(pid) != n:
        raise BadFile(f"malformed persistent id {shorten(pid)} (expected a {n}-tuple)")
    tag, stype, key, _location, numel = pid[:5]
    if isinstance(tag, bytes):
        tag = tag.decode("ascii", "replace")
    if isinstance(key, bytes):
        key = key.decode("ascii", "replace")
    if tag != "storage":
        raise BadFile(f"persistent id of kind {shorten(tag)} (only 'storage' is supported)")
    if not isinstance(stype, StorageType):
        raise BadFile(f"persistent id names storage type {shorten(stype)}")
    if not isinstance(key, str) or not key or len(key) > 256 or "/" in key or "\\" in key:
        raise BadFile(f"persistent id has a bad storage key {shorten(key)}")
    return stype, key, check_int(numel, "storage size"), pid[5] if legacy else None


class _Materializer:
    """Builds arrays from tensor records; ``fetch(key)`` returns a record's stored bytes.

    Checks each view against its storage and bounds the total size built (``_MAX_EXPANSION``).
    """

    def __init__(self, fetch: Callable[[str], np.ndarray], byteorder: str) -> None:
        self._fetch = fetch
        self._byteorder = byteorder
        self._stored: dict[str, int] = {}
        self._built = 0

    def build(self, name: str, rec: TensorRecord) -> np.ndarray:
        """The array of tensor ``name``."""
        dt, st = rec.dtype, rec.storage
        size_b = dt.itemsize
        if st.stype.dtype is not None and st.stype.dtype.itemsize != size_b:
            raise BadFile(f"tensor {name!r}: dtype {dt.name} does not match its storage")
        numel = math.prod(rec.size)
        if numel == 0:
            return to_native(np.zeros(rec.size, dt.stored_dtype("<")), dt, copy=False)
        last = rec.offset + sum((n - 1) * s for n, s in zip(rec.size, rec.stride))
        if last >= st.count:
            raise BadFile(
                f"tensor {name!r}: view (offset {rec.offset}, size {rec.size}, stride "
                f"{rec.stride}) reads element {last} of a storage of {st.count} elements"
            )
        data = self._fetch(st.key)
        declared = (st.start + st.count) * size_b
        if declared > data.nbytes:
            raise BadFile(f"tensor {name!r}: storage {st.key!r} holds {data.nbytes} bytes, "
                          f"fewer than the {declared} it declares")  # fmt: skip
        self._stored.setdefault(st.key, data.nbytes)
        self._built += numel * size_b
        if self._built > _MAX_EXPANSION * sum(self._stored.values()) + _EXPANSION_SLACK:
            raise BadFile(f"tensor {name!r}: the tensors' views add up to {self._built} bytes, "
                          "far more than the data stored; refusing to expand the file")  # fmt: skip
        flat = data[st.start * size_b : declared].view(dt.stored_dtype(self._byteorder))
        view = np.lib.stride_tricks.as_strided(
            flat[rec.offset :], shape=rec.size,
            strides=tuple(s * size_b for s in rec.stride), writeable=False,
        )  # fmt: skip
        out = to_native(view, dt, copy=True)
        if rec.conj:
            out = np.conj(out)
        if rec.neg:
            out = np.negative(out)
        return out


# ---------------------------------------------------------------------------------------------
# reading: zip archives


def read_torch_zip(zf: zipfile.ZipFile, key: str | None) -> dict[str, np.ndarray]:
    """The state_dict of a torch zip archive (``key`` picks a wrapper entry)."""
    names = zf.namelist()
    pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pkls) != 1:
        raise BadFile("zip archive has no <archive>/data.pkl record" if not pkls
                      else f"zip archive has several data.pkl records: {pkls[:4]}")  # fmt: skip
    prefix = pkls[0][: -len("data.pkl")]
    if prefix + "constants.pkl" in names or any(n.startswith(prefix + "code/") for n in names):
        raise BadFile("a TorchScript archive (torch.jit.save) is not a state_dict; save "
                      "model.state_dict() with torch.save instead")  # fmt: skip
    byteorder = "<"
    if prefix + "byteorder" in names:
        rec = zf.read(prefix + "byteorder")
        if rec not in (b"little", b"big"):
            raise BadFile(f"byteorder record is {shorten(rec)}, expected b'little' or b'big'")
        byteorder = "<" if rec == b"little" else ">"
    info = zf.getinfo(pkls[0])
    if info.file_size > _MAX_PICKLE_BYTES:
        raise BadFile(f"data.pkl is {info.file_size} bytes, over the {_MAX_PICKLE_BYTES} limit")

    storages: dict[str, Storage] = {}

    def storage_for(pid: Any) -> Storage:
        """A persistent id -> its storage, checked against the record's size."""
        stype, skey, numel, _ = _parse_pid(pid, legacy=False)
        name = f"{prefix}data/{skey}"
        try:
            rinfo = zf.getinfo(name)
        except KeyError:
            raise BadFile(f"storage record {name!r} is missing from the archive") from None
        size_b = stype.dtype.itemsize if stype.dtype else 1
        if rinfo.file_size != numel * size_b:
            raise BadFile(f"storage record {name!r} is {rinfo.file_size} bytes, but the pickle "
                          f"declares {numel} x {size_b}-byte elements")  # fmt: skip
        return storages.setdefault(f"{skey}:{stype.name}", Storage(skey, stype, numel))

    obj = unpickle(io.BytesIO(zf.read(info)), storage_for)
    sd = strip_prefix(find_state_dict(obj, key))

    cache: dict[str, np.ndarray] = {}

    def fetch(skey: str) -> np.ndarray:
        """The bytes of storage record ``skey`` (read once)."""
        if skey not in cache:
            cache[skey] = np.frombuffer(zf.read(f"{prefix}data/{skey}"), np.uint8)
        return cache[skey]

    m = _Materializer(fetch, byteorder)
    return {k: m.build(k, rec) for k, rec in sd.items()}


# ---------------------------------------------------------------------------------------------
# reading: the legacy (torch < 1.6) stream of pickles


def read_torch_legacy(raw: bytes, key: str | None) -> dict[str, np.ndarray]:
    """The torch < 1.6 format: pickles of the magic number, the protocol version and sys_info,
    the object (storages as persistent ids), the list of storage keys; then for each key its
    element count (int64) and its elements, in the byte order sys_info gives."""
    f = io.BytesIO(raw)
    size = len(raw)
    magic = unpickle(f, None)
    if type(magic) is not int or magic != _LEGACY_MAGIC:
        raise BadFile(
            f"a plain pickle (it holds a {describe(magic)}), not a torch checkpoint: only "
            "torch.save files (zip, or the legacy format with its magic number) are read"
        )
    protocol = unpickle(f, None)
    if protocol != _LEGACY_PROTOCOL:
        raise BadFile(f"legacy torch protocol version {shorten(protocol)} "
                      f"(expected {_LEGACY_PROTOCOL})")  # fmt: skip
    sys_info = unpickle(f, None)
    if not isinstance(sys_info, dict):
        raise BadFile(f"legacy torch header holds a {describe(sys_info)}, expected a dict")
    little = sys_info.get("little_endian", True)
    if type(little) is not bool:
        raise BadFile(f"legacy torch header: little_endian is {shorten(little)}")
    byteorder = "<" if little else ">"

    roots: dict[str, tuple[StorageType, int]] = {}

    def storage_for(pid: Any) -> Storage:
        """A legacy persistent id -> its storage (or storage view); sizes checked later."""
        stype, skey, numel, view = _parse_pid(pid, legacy=True)
        if stype.dtype is None:
            raise BadFile("legacy torch checkpoints have no untyped storages")
        known_type, known_numel = roots.setdefault(skey, (stype, numel))
        if known_numel != numel or known_type.dtype != stype.dtype:
            raise BadFile(f"storage {skey!r} is declared with two different types or sizes")
        if view is None:
            return Storage(skey, stype, numel)
        if not (isinstance(view, tuple) and len(view) == 3):
            raise BadFile(f"malformed storage view {shorten(view)}")
        start = check_int(view[1], "storage view offset")
        count = check_int(view[2], "storage view size")
        if start + count > numel:
            raise BadFile(f"storage view [{start}, {start + count}) is outside storage {skey!r} "
                          f"of {numel} elements")  # fmt: skip
        return Storage(skey, stype, count, start)

    obj = unpickle(f, storage_for)
    sd = strip_prefix(find_state_dict(obj, key))
    keys = unpickle(f, None)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise BadFile("legacy torch checkpoint: the storage key list is malformed")
    needed = {rec.storage.key for rec in sd.values()}
    data: dict[str, np.ndarray] = {}
    for skey in keys:
        if skey not in roots:
            raise BadFile(f"storage {skey!r} is listed but no tensor refers to it")
        stype, numel = roots[skey]
        head = f.read(8)
        if len(head) != 8:
            raise BadFile(f"file ends before storage {skey!r}")
        stored = int.from_bytes(head, "little" if byteorder == "<" else "big")
        if stored != numel:
            raise BadFile(f"storage {skey!r} holds {stored} elements, the pickle declares {numel}")
        nbytes = numel * stype.dtype.itemsize
        if nbytes > size - f.tell():
            raise BadFile(f"file ends inside storage {skey!r} ({nbytes} bytes declared)")
        if skey in needed:
            data[skey] = np.frombuffer(raw, np.uint8, nbytes, f.tell())
        f.seek(nbytes, os.SEEK_CUR)
    missing = needed - set(data)
    if missing:
        raise BadFile(f"storages {sorted(missing)[:6]} are missing from the file")
    m = _Materializer(data.__getitem__, byteorder)
    return {k: m.build(k, rec) for k, rec in sd.items()}


# ---------------------------------------------------------------------------------------------
# writing


class _PickleWriter:
    """Emits protocol-2 pickle opcodes for torch's data.pkl without importing torch."""

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")  # PROTO 2
        self._memo: dict[Any, int] = {}

    def _memoized(self, key: Any, emit: Callable[[], None]) -> None:
        if key in self._memo:
            i = self._memo[key]
            self.out += b"h" + bytes([i]) if i < 256 else b"j" + struct.pack("<I", i)  # BINGET
            return
        emit()
        i = self._memo[key] = len(self._memo)
        self.out += b"q" + bytes([i]) if i < 256 else b"r" + struct.pack("<I", i)  # BINPUT

    def global_(self, module: str, name: str) -> None:
        """GLOBAL ``module.name`` (memoized)."""
        self._memoized(("g", module, name),
                       lambda: self.out.extend(f"c{module}\n{name}\n".encode("ascii")))  # fmt: skip

    def str_(self, s: str, memo: bool = False) -> None:
        """A str as BINUNICODE (memoized on request)."""

        def emit() -> None:
            b = s.encode("utf-8")
            self.out += b"X" + struct.pack("<I", len(b)) + b  # BINUNICODE

        self._memoized(("s", s), emit) if memo else emit()

    def int_(self, n: int) -> None:
        """An int in the shortest opcode that holds it."""
        if 0 <= n < 256:
            self.out += b"K" + bytes([n])  # BININT1
        elif 0 <= n < 65536:
            self.out += b"M" + struct.pack("<H", n)  # BININT2
        elif -(2**31) <= n < 2**31:
            self.out += b"J" + struct.pack("<i", n)  # BININT
        else:
            b = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
            self.out += b"\x8a" + bytes([len(b)]) + b  # LONG1

    def int_tuple(self, xs: tuple[int, ...]) -> None:
        """A tuple of ints (a size or a stride)."""
        if not xs:
            self.out += b")"  # EMPTY_TUPLE
            return
        if len(xs) > 3:
            self.out += b"("  # MARK
        for x in xs:
            self.int_(x)
        self.out += {1: b"\x85", 2: b"\x86", 3: b"\x87"}.get(len(xs), b"t")  # TUPLE1/2/3, TUPLE

    def empty_ordered_dict(self) -> None:
        """``collections.OrderedDict()``."""
        self.global_("collections", "OrderedDict")
        self.out += b")R"  # EMPTY_TUPLE REDUCE

    def tensor(self, skey: str, arr: np.ndarray, dt: DType) -> None:
        """``_rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())`` as torch
        writes it, or ``_rebuild_tensor_v3`` with an untyped storage for uint16/32/64."""
        v3 = dt.storage is None
        self.global_("torch._utils", "_rebuild_tensor_v3" if v3 else "_rebuild_tensor_v2")
        self.out += b"(("  # MARK (args) MARK (persistent id)
        self.str_("storage", memo=True)
        if v3:
            self.global_("torch.storage", "UntypedStorage")
        else:
            self.global_("torch", dt.storage)
        self.str_(skey)
        self.str_("cpu", memo=True)
        self.int_(arr.nbytes if v3 else arr.size)
        self.out += b"tQ"  # TUPLE BINPERSID
        self.int_(0)
        self.int_tuple(tuple(arr.shape))
        self.int_tuple(tuple(math.prod(arr.shape[i + 1 :]) for i in range(arr.ndim)))
        self.out += b"\x89"  # NEWFALSE
        self.empty_ordered_dict()
        if v3:
            self.global_("torch", dt.name)
        self.out += b"tR"  # TUPLE REDUCE


def _torch_pickle(arrays: list[tuple[str, np.ndarray, DType]]) -> bytes:
    """data.pkl: an OrderedDict of the tensors, whose storage keys are their indices."""
    w = _PickleWriter()
    w.empty_ordered_dict()
    for start in range(0, len(arrays), 1000):  # SETITEMS batches of 1000, as pickle does
        w.out += b"("  # MARK
        for i, (k, arr, dt) in enumerate(arrays[start : start + 1000], start):
            w.str_(k)
            w.tensor(str(i), arr, dt)
        w.out += b"u"  # SETITEMS
    w.out += b"."  # STOP
    return bytes(w.out)


def _zip_add(zf: zipfile.ZipFile, name: str, data: Any, align: bool = False) -> None:
    """Store one record uncompressed; with ``align`` its data starts at a multiple of 64 bytes
    (padding in an extra field, as torch does), so readers may map storages in place."""
    nbytes = memoryview(data).nbytes
    zi = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    zi.compress_type = zipfile.ZIP_STORED
    zi.file_size = nbytes
    if align:
        zip64_extra = 20 if nbytes * 1.05 > zipfile.ZIP64_LIMIT else 0
        fixed = 30 + len(name.encode("utf-8")) + 4 + zip64_extra  # local header + extra id/len
        pad = -(zf.start_dir + fixed) % _ZIP_ALIGN
        zi.extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad
    with zf.open(zi, "w") as w:
        w.write(data)


def write_torch(f: Any, arrays: list[tuple[str, np.ndarray, DType]]) -> None:
    """The zip format of ``torch.save`` for prepared (name, little-endian array, dtype) entries."""
    pkl = _torch_pickle(arrays)
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        _zip_add(zf, "archive/data.pkl", pkl)
        _zip_add(zf, "archive/byteorder", b"little")
        for i, (_, arr, _) in enumerate(arrays):
            _zip_add(zf, f"archive/data/{i}", memoryview(arr.reshape(-1).view(np.uint8)), True)
        _zip_add(zf, "archive/version", b"3\n")
