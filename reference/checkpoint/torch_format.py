"""What ``torch.save`` writes, read and written without torch.

Reading: the zip format (torch >= 1.6: ``<archive>/data.pkl``, a pickle whose tensors point at
storage records ``<archive>/data/<key>``) and the legacy stream (torch < 1.6: pickles followed by
raw storages). Pickles go through :mod:`~parcnetv2.reference.checkpoint.restricted_pickle`; the
tensor records it returns are checked against their storages here, all of them before any storage
is read, and then built one storage at a time (clause 13.5's memory bound).

Writing: the zip format, with a data.pkl emitted opcode by opcode.
"""

from __future__ import annotations

import io
import math
import struct
import sys
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from parcnetv2.errors import brief
from parcnetv2.reference.checkpoint.dtypes import DType, to_native
from parcnetv2.reference.checkpoint.internal_errors import BadFile, shorten
from parcnetv2.reference.checkpoint.limits import (
    EXPANSION_SLACK,
    MAX_EXPANSION,
    MAX_PICKLE_BYTES,
    MAX_PICKLE_OBJECT_BYTES,
    MAX_UNRETURNED_BYTES,
)
from parcnetv2.reference.checkpoint.restricted_pickle import (
    Storage,
    StorageType,
    TensorRecord,
    check_int,
    describe,
    unpickle,
)
from parcnetv2.reference.checkpoint.wrappers import find_state_dict, strip_prefix
from parcnetv2.reference.checkpoint.zip_archive import check_member, read_member, read_small_member

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_LEGACY_HEADER_BUDGET = 1 << 20  # the magic number, protocol and sys_info pickles: a few hundred bytes
_ZIP_ALIGN = 64


def _parse_pid(pid: Any, legacy: bool) -> tuple[StorageType, str, int, Any]:
    """Check a persistent id ``('storage', type, key, location, numel[, view])``."""
    n = 6 if legacy else 5
    if not isinstance(pid, tuple) or len(pid) != n:
        raise BadFile(f"malformed persistent id {brief(pid)} (expected a {n}-tuple)")
    tag, stype, key, _location, numel = pid[:5]
    if isinstance(tag, bytes):
        tag = tag.decode("ascii", "replace")
    if isinstance(key, bytes):
        key = key.decode("ascii", "replace")
    if tag != "storage":
        raise BadFile(f"persistent id of kind {shorten(tag)} (only 'storage' is supported)")
    if not isinstance(stype, StorageType):
        raise BadFile(f"persistent id names storage type {brief(stype)}")
    if not isinstance(key, str) or not key or len(key) > 256 or "/" in key or "\\" in key:
        raise BadFile(f"persistent id has a bad storage key {brief(key)}")
    return stype, key, check_int(numel, "storage size"), pid[5] if legacy else None


# ---------------------------------------------------------------------------------------------
# building arrays from tensor records


def _is_c_contiguous(size: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    expected = 1
    for n, s in zip(reversed(size), reversed(stride)):
        if n != 1 and s != expected:
            return False
        expected *= n
    return True


class _Plan:
    """One tensor, checked against its storage before anything is read: its element count, the
    bytes its array will hold, and whether it can take its storage's buffer as it is."""

    def __init__(self, name: str, rec: TensorRecord, byteorder: str, users: int) -> None:
        dt, st = rec.dtype, rec.storage
        if st.stype.dtype is not None and st.stype.dtype.itemsize != dt.itemsize:
            raise BadFile(f"tensor {brief(name)}: dtype {dt.name} does not match its storage")
        self.rec = rec
        self.numel = math.prod(rec.size)
        out_itemsize = 4 if dt.name == "bfloat16" else dt.itemsize
        if math.prod(max(n, 1) for n in rec.size) * out_itemsize >= 1 << 63:
            raise BadFile(f"tensor {brief(name)}: shape {shorten(rec.size)} is too large for NumPy")
        self.out_bytes = self.numel * out_itemsize
        if self.numel:
            last = rec.offset + sum((n - 1) * s for n, s in zip(rec.size, rec.stride))
            if last >= st.count:
                raise BadFile(
                    f"tensor {brief(name)}: view (offset {rec.offset}, size {shorten(rec.size)}, stride "
                    f"{shorten(rec.stride)}) reads element {last} of a storage of {st.count} elements"
                )
        native = dt.itemsize == 1 or byteorder == ("<" if sys.byteorder == "little" else ">")
        self.takes_buffer = (
            users == 1 and native and dt.name not in ("bfloat16", "bool") and st.start == 0
            and rec.offset == 0 and self.numel == st.count and _is_c_contiguous(rec.size, rec.stride)
        )  # fmt: skip

    def build(self, data: np.ndarray, byteorder: str) -> np.ndarray:
        """The array, from ``data`` (the storage's bytes, uint8, ours to keep)."""
        rec, dt, st = self.rec, self.rec.dtype, self.rec.storage
        if not self.numel:
            return to_native(np.zeros(rec.size, dt.stored_dtype("<")), dt, copy=False)
        size_b = dt.itemsize
        flat = data[st.start * size_b : (st.start + st.count) * size_b].view(dt.stored_dtype(byteorder))
        if self.takes_buffer:
            out = flat.reshape(rec.size)
            if rec.conj:
                np.conjugate(out, out=out)
            if rec.neg:
                np.negative(out, out=out)
            return out
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


def materialize(sd: Mapping[str, TensorRecord], stored_bytes: Mapping[str, int],
                fetch: Callable[[str], np.ndarray], byteorder: str) -> dict[str, np.ndarray]:  # fmt: skip
    """The arrays of the records ``sd``; ``stored_bytes[key]`` is what storage ``key`` holds in the
    file and ``fetch(key)`` reads it (a fresh uint8 array).

    Every record is checked first; then the totals are bounded (clause 13.5): the arrays may hold
    at most ``MAX_EXPANSION`` times the stored bytes they view (stride-0 views broadcast) plus a
    slack, and at most ``MAX_UNRETURNED_BYTES`` of the stored bytes read may go unreturned. Then
    each storage is read once, its tensors built, and its buffer dropped (or kept as the array
    of the one tensor that covers it exactly), so memory peaks near the arrays' own size.
    """
    users: dict[str, int] = {}
    for rec in sd.values():
        users[rec.storage.key] = users.get(rec.storage.key, 0) + 1
    plans = {name: _Plan(name, rec, byteorder, users[rec.storage.key]) for name, rec in sd.items()}
    needed = {p.rec.storage.key for p in plans.values() if p.numel}
    stored = sum(stored_bytes[k] for k in needed)
    returned = sum(p.out_bytes for p in plans.values())
    if returned > MAX_EXPANSION * stored + EXPANSION_SLACK:
        raise BadFile(f"the tensors' views add up to {returned} bytes, far more than the data stored "
                      f"({stored} bytes); refusing to expand the file")  # fmt: skip
    if stored > returned + MAX_UNRETURNED_BYTES:
        raise BadFile(f"the tensors view {returned} bytes of storages holding {stored} bytes; refusing to "
                      f"read more than {MAX_UNRETURNED_BYTES >> 20} MiB that would not be returned")  # fmt: skip
    by_storage: dict[str, list[str]] = {}
    for name, plan in plans.items():
        if plan.numel:
            by_storage.setdefault(plan.rec.storage.key, []).append(name)
    out: dict[str, np.ndarray] = {}
    for key, names in by_storage.items():
        data = fetch(key)
        for name in names:
            out[name] = plans[name].build(data, byteorder)
        del data
    empty = np.empty(0, np.uint8)
    return {name: out[name] if plan.numel else plan.build(empty, byteorder) for name, plan in plans.items()}


# ---------------------------------------------------------------------------------------------
# reading: zip archives


def read_torch_zip(zf: zipfile.ZipFile, key: str | None) -> dict[str, np.ndarray]:
    """The state_dict of a torch zip archive (``key`` picks a wrapper entry)."""
    names = zf.namelist()
    pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pkls) != 1:
        raise BadFile("zip archive has no <archive>/data.pkl record" if not pkls
                      else f"zip archive has several data.pkl records: {shorten(pkls[:4])}")  # fmt: skip
    prefix = pkls[0][: -len("data.pkl")]
    if prefix + "constants.pkl" in names or any(n.startswith(prefix + "code/") for n in names):
        raise BadFile("a TorchScript archive (torch.jit.save) is not a state_dict; save "
                      "model.state_dict() with torch.save instead")  # fmt: skip
    byteorder = "<"
    if prefix + "byteorder" in names:
        rec = read_small_member(zf, zf.getinfo(prefix + "byteorder"), 16, "the byteorder record")
        if rec not in (b"little", b"big"):
            raise BadFile(f"byteorder record is {shorten(rec)}, expected b'little' or b'big'")
        byteorder = "<" if rec == b"little" else ">"
    pkl = read_small_member(zf, zf.getinfo(pkls[0]), MAX_PICKLE_BYTES, "data.pkl")

    storages: dict[str, Storage] = {}
    members: dict[str, zipfile.ZipInfo] = {}

    def storage_for(pid: Any) -> Storage:
        """A persistent id -> its storage, checked against the record's size."""
        stype, skey, numel, _ = _parse_pid(pid, legacy=False)
        name = f"{prefix}data/{skey}"
        try:
            rinfo = zf.getinfo(name)
        except KeyError:
            raise BadFile(f"storage record {brief(name)} is missing from the archive") from None
        size_b = stype.dtype.itemsize if stype.dtype else 1
        if rinfo.file_size != numel * size_b:
            raise BadFile(f"storage record {brief(name)} is {rinfo.file_size} bytes, but the pickle "
                          f"declares {numel} x {size_b}-byte elements")  # fmt: skip
        members[skey] = rinfo
        return storages.setdefault(f"{skey}:{stype.name}", Storage(skey, stype, numel))

    obj, _, _ = unpickle(pkl, storage_for)
    del pkl
    sd = strip_prefix(find_state_dict(obj, key))
    del obj  # the rest of a training checkpoint (optimizer state ...) is freed before any storage is read

    def fetch(skey: str) -> np.ndarray:
        """The bytes of storage record ``skey``."""
        info = members[skey]
        check_member(info)
        data = np.empty(info.file_size, np.uint8)
        read_member(zf, info, data.data)
        return data

    return materialize(sd, {k: i.file_size for k, i in members.items()}, fetch, byteorder)


# ---------------------------------------------------------------------------------------------
# reading: the legacy (torch < 1.6) stream of pickles


def _is_legacy_magic(head: bytes) -> bool:
    """Whether ``head`` starts with a pickle of the legacy magic number, checked without
    unpickling anything larger than that one small integer."""
    try:
        obj, _, _ = unpickle(head, None, budget=1024)
    except BadFile:
        return False
    return type(obj) is int and obj == _LEGACY_MAGIC


def read_torch_legacy(f: io.BufferedIOBase, size: int, key: str | None) -> dict[str, np.ndarray]:
    """The torch < 1.6 format: pickles of the magic number, the protocol version and sys_info,
    the object (storages as persistent ids), the list of storage keys; then for each key its
    element count (int64) and its elements, in the byte order sys_info gives.

    The pickles must fit in the file's first ``MAX_PICKLE_BYTES`` bytes; storages are read from the
    file one at a time, only those the state_dict's tensors use. A file that does not start with
    the magic number is a plain pickle: unpickled (within the same limits) only to say what it
    holds, or which global it would have run."""
    window = f.read(min(size, MAX_PICKLE_BYTES))
    if not _is_legacy_magic(window):
        if size > MAX_PICKLE_BYTES:
            raise BadFile(f"not a torch checkpoint: neither a zip archive nor a legacy torch file, and "
                          f"over the {MAX_PICKLE_BYTES >> 20} MiB a plain pickle may have")  # fmt: skip
        obj, _, _ = unpickle(window, None)
        raise BadFile(
            f"a plain pickle (it holds a {describe(obj)}), not a torch checkpoint: only "
            "torch.save files (zip, or the legacy format with its magic number) are read"
        )
    _, pos, _ = unpickle(window, None, budget=1024)
    protocol, pos, _ = unpickle(window, None, pos, budget=_LEGACY_HEADER_BUDGET)
    if protocol != _LEGACY_PROTOCOL:
        raise BadFile(f"legacy torch protocol version {brief(protocol)} "
                      f"(expected {_LEGACY_PROTOCOL})")  # fmt: skip
    sys_info, pos, _ = unpickle(window, None, pos, budget=_LEGACY_HEADER_BUDGET)
    if not isinstance(sys_info, dict):
        raise BadFile(f"legacy torch header holds a {describe(sys_info)}, expected a dict")
    little = sys_info.get("little_endian", True)
    if type(little) is not bool:
        raise BadFile(f"legacy torch header: little_endian is {brief(little)}")
    byteorder = "<" if little else ">"

    roots: dict[str, tuple[DType, int]] = {}  # storage key -> (element type, element count)

    def storage_for(pid: Any) -> Storage:
        """A legacy persistent id -> its storage (or storage view); sizes checked later."""
        stype, skey, numel, view = _parse_pid(pid, legacy=True)
        if stype.dtype is None:
            raise BadFile("legacy torch checkpoints have no untyped storages")
        known_dtype, known_numel = roots.setdefault(skey, (stype.dtype, numel))
        if known_numel != numel or known_dtype != stype.dtype:
            raise BadFile(f"storage {brief(skey)} is declared with two different types or sizes")
        if view is None:
            return Storage(skey, stype, numel)
        if not (isinstance(view, tuple) and len(view) == 3):
            raise BadFile(f"malformed storage view {brief(view)}")
        start = check_int(view[1], "storage view offset")
        count = check_int(view[2], "storage view size")
        if start + count > numel:
            raise BadFile(f"storage view [{start}, {start + count}) is outside storage {brief(skey)} "
                          f"of {numel} elements")  # fmt: skip
        return Storage(skey, stype, count, start)

    obj, pos, cost = unpickle(window, storage_for, pos)
    sd = strip_prefix(find_state_dict(obj, key))
    del obj
    keys, pos, _ = unpickle(window, None, pos, budget=MAX_PICKLE_OBJECT_BYTES - cost)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise BadFile("legacy torch checkpoint: the storage key list is malformed")
    del window
    needed = {rec.storage.key for rec in sd.values()}
    offsets: dict[str, int] = {}
    for skey in keys:
        if skey not in roots:
            raise BadFile(f"storage {brief(skey)} is listed but no tensor refers to it")
        dtype, numel = roots[skey]
        f.seek(pos)
        head = f.read(8)
        if len(head) != 8:
            raise BadFile(f"file ends before storage {brief(skey)}")
        stored = int.from_bytes(head, "little" if byteorder == "<" else "big")
        if stored != numel:
            raise BadFile(f"storage {brief(skey)} holds {stored} elements, the pickle declares {numel}")
        nbytes = numel * dtype.itemsize
        if nbytes > size - pos - 8:
            raise BadFile(f"file ends inside storage {brief(skey)} ({nbytes} bytes declared)")
        if skey in needed:
            offsets[skey] = pos + 8
        pos += 8 + nbytes
    missing = needed - set(offsets)
    if missing:
        raise BadFile(f"storages {shorten(sorted(missing)[:6])} are missing from the file")

    def fetch(skey: str) -> np.ndarray:
        dtype, numel = roots[skey]
        data = np.empty(numel * dtype.itemsize, np.uint8)
        f.seek(offsets[skey])
        _read_exactly(f, data.data, skey)
        return data

    sizes = {k: roots[k][1] * roots[k][0].itemsize for k in offsets}
    return materialize(sd, sizes, fetch, byteorder)


def _read_exactly(f: io.BufferedIOBase, out: memoryview, what: str) -> None:
    pos = 0
    while pos < len(out):
        n = f.readinto(out[pos:])
        if not n:
            raise BadFile(f"file ends inside storage {brief(what)}")
        pos += n


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
        if dt.storage is None:
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
            _zip_add(zf, f"archive/data/{i}", arr.reshape(-1).view(np.uint8).data, True)
        _zip_add(zf, "archive/version", b"3\n")
