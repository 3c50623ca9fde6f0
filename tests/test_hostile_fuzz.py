"""Structure-aware fuzzing of the four weights readers (issue 10; spec clause 13.5).

Valid files of each format (the torch zip, the legacy torch stream, .npz, .safetensors) are taken
apart into their structures (pickle opcodes, zip members with their method, declared size, CRC and
name, .npy header fields, the safetensors JSON header and length field) and mutated there:
integers made extreme or huge, globals swapped, opcodes inserted, dropped or repeated, compression
methods and declared sizes changed, names changed, headers rewritten, files cut. Every mutant is
read in this process; the only outcomes allowed are a state_dict of well-formed arrays (the
original one when nothing was mutated) or a CheckpointError with a one-line message that names
the file and shows no object repr; never another exception, never a hang (a watchdog), never
memory beyond clause 13.5's bound (tracemalloc's peak: NumPy reports its buffers to it) or CPU time
beyond its allowance.

Budget: the Hypothesis profile ``hostile-fuzz-ci`` (the default; about a minute in all on two
workers) or ``hostile-fuzz-long`` (PARCNETV2_FUZZ_PROFILE=hostile-fuzz-long). With
PARCNETV2_FUZZ_STATS=FILE each example's outcome, peak memory and CPU time are appended to FILE
as JSON lines.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import signal
import struct
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from hostile_files import LEGACY_MAGIC, Member, compress, zip_bytes  # tests/, on the test path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parcnetv2.errors import CheckpointError
from parcnetv2.reference.checkpoint import limits, read_state_dict, write_state_dict

_HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("hostile-fuzz-ci", max_examples=300, deadline=None, suppress_health_check=_HEALTH)
settings.register_profile("hostile-fuzz-long", max_examples=5000, deadline=None, suppress_health_check=_HEALTH)
FUZZ = settings.get_profile(os.environ.get("PARCNETV2_FUZZ_PROFILE", "hostile-fuzz-ci"))
WATCHDOG_S = 30  # a read that takes this long is a hang
OBJECT_REPR = ("object at 0x", " object>", "<class ")

# ---------------------------------------------------------------------------------------------
# the valid files the mutations start from


def original_state_dict() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "conv.bias": rng.standard_normal(4).astype(np.float32),
        "half": rng.standard_normal((2, 5)).astype(np.float16),
        "steps": np.array([3, -1], np.int64),
        "mask": np.array([True, False, True]),
        "scalar": np.array(0.5, np.float64),
        "empty": np.zeros((0, 3), np.float32),
        "module.wrapped": np.arange(6, dtype=np.uint8).reshape(2, 3),
    }


def expected_state_dict() -> dict[str, np.ndarray]:
    return {k.removeprefix("module."): v for k, v in original_state_dict().items()}


def valid_file(fmt: str, tmp: Path) -> bytes:
    path = tmp / f"valid.{fmt}"
    write_state_dict(path, original_state_dict())
    return path.read_bytes()


# ---------------------------------------------------------------------------------------------
# pickles as opcode tokens


def tokens(data: bytes) -> list[bytes]:
    """A valid pickle cut at its opcode boundaries."""
    starts = [pos for _, _, pos in pickletools.genops(data)]
    return [data[a:b] for a, b in zip(starts, starts[1:] + [len(data)])]


def int_op(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return (b"\x8a" + bytes([len(raw)]) if len(raw) < 256 else b"\x8b" + struct.pack("<i", len(raw))) + raw


EXTREME_INTS = [0, 1, -1, 7, 2**31 - 1, 2**31, 2**32, 2**62 - 1, 2**62, 2**63, 2**64, -(2**63), 10**30, 2**2000]
INT_OPS = [int_op(v) for v in EXTREME_INTS] + [
    b"I" + b"9" * 100 + b"\n",
    b"I01\n",
    b"L" + b"1" * 50 + b"L\n",
    b"\x8b" + struct.pack("<i", 4000) + bytes(4000),
    b"G" + struct.pack(">d", float("nan")),
]
GLOBALS = [
    (m, n)
    for m, n in [
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_tensor_v3"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch._tensor", "_rebuild_from_type_v2"),
        ("torch", "FloatStorage"),
        ("torch", "HalfStorage"),
        ("torch", "BFloat16Storage"),
        ("torch", "QInt8Storage"),
        ("torch", "UntypedStorage"),
        ("torch", "float8_e4m3fn"),
        ("torch", "uint16"),
        ("torch", "Tensor"),
        ("collections", "OrderedDict"),
        ("argparse", "Namespace"),
        ("posix", "system"),
        ("builtins", "eval"),
        ("__builtin__", "getattr"),
        ("numpy.core.multiarray", "_reconstruct"),
    ]
]
STRING_VALUES = ["0", "1", "", "storage", "cpu", "../../etc/passwd", "a/b", "x" * 300, "module.w", "\u00e9\U0001f600",
                 "state_dict", "model"]  # fmt: skip


def text_op(s: str) -> bytes:
    b = s.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(b)) + b


OPCODES = [
    b"(", b".", b"\x8f", b"}", b"]", b")", b"2", b"0", b"1", b"R", b"b", b"s", b"u", b"a", b"e", b"t", b"\x85",
    b"\x86", b"\x87", b"Q", b"\x81", b"\x92", b"\x90", b"\x91", b"N", b"\x88", b"\x89", b"\x94", b"q\x00", b"q\xff",
    b"r\xff\xff\xff\x7f", b"h\x00", b"h\x05", b"j\x00\x00\x01\x00", b"\x95" + struct.pack("<Q", 2**40),
    b"\x8e" + struct.pack("<Q", 2**40), b"\x8d" + struct.pack("<Q", 2**33) + b"x", b"X\x02\x00\x00\x00\xff\xfe",
    b"\x82\x01", b"\x83\x01\x00", b"\x84\x01\x00\x00\x00", b"\x97", b"\x98", b"\xff", b"\x80\x05", b"\x80\x09",
    b"P0\n", b"g0\n", b"p99999999\n", b"S'abc'\n", b"V\\u0041\n", b"F1e999\n", b"cos\nsystem\n",
    b"\x93", b"ios\nsystem\n",
]  # fmt: skip


@st.composite
def mutated_pickle(draw: Any, data: bytes) -> bytes:
    """``data`` (a valid pickle) with 0-3 structure-aware mutations of its opcodes."""
    toks = tokens(data)
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["int", "global", "string", "delete", "duplicate", "swap", "insert", "truncate"]))
        i = draw(st.integers(0, len(toks) - 1))
        if kind == "int":
            ints = [k for k, t in enumerate(toks) if t[:1] in (b"K", b"M", b"J", b"\x8a")]
            if ints:
                toks[draw(st.sampled_from(ints))] = draw(st.sampled_from(INT_OPS))
        elif kind == "global":
            globs = [k for k, t in enumerate(toks) if t[:1] == b"c"]
            if globs:
                module, name = draw(st.sampled_from(GLOBALS))
                toks[draw(st.sampled_from(globs))] = f"c{module}\n{name}\n".encode()
        elif kind == "string":
            strs = [k for k, t in enumerate(toks) if t[:1] in (b"X", b"\x8c")]
            if strs:
                toks[draw(st.sampled_from(strs))] = text_op(draw(st.sampled_from(STRING_VALUES)))
        elif kind == "delete" and len(toks) > 1:
            del toks[i]
        elif kind == "duplicate":
            toks.insert(i, toks[i] * draw(st.sampled_from([1, 2, 50])))
        elif kind == "swap":
            j = draw(st.integers(0, len(toks) - 1))
            toks[i], toks[j] = toks[j], toks[i]
        elif kind == "insert":
            toks.insert(i, draw(st.sampled_from(OPCODES)) * draw(st.sampled_from([1, 1, 3, 1000])))
        elif kind == "truncate":
            toks = toks[: max(1, i)]
    return b"".join(toks)


# ---------------------------------------------------------------------------------------------
# zip archives as members


def members_of(blob: bytes) -> list[Member]:
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        return [Member(i.filename, zf.read(i), zipfile.ZIP_STORED, i.CRC, i.file_size) for i in zf.infolist()]


NAMES = ["archive/data/9", "archive/data.pkl", "x/data.pkl", "w.npy", "a.txt", "../evil.npy", "archive/data/0",
         "module.w.npy", "", "archive/code/x"]  # fmt: skip


@st.composite
def mutated_zip(draw: Any, members: list[Member], data_mutation: Any, focus: str) -> bytes:
    """The archive of ``members``. Mostly (4 in 5) one member's data is mutated by
    ``data_mutation`` (a function member -> strategy of new bytes), preferring the member whose
    name ends in ``focus``; then 0-2 container mutations of a member's compression method,
    declared size, CRC, name, flags or presence; then, 1 in 10, the file is cut or padded."""
    out = [Member(m.name, m.payload, zipfile.ZIP_STORED, zlib.crc32(m.payload), len(m.payload)) for m in members]
    if draw(st.integers(0, 4)):
        focused = [k for k, m in enumerate(out) if m.name.endswith(focus)]
        k = (
            draw(st.sampled_from(focused))
            if focused and draw(st.integers(0, 3))
            else draw(st.integers(0, len(out) - 1))
        )
        new = draw(data_mutation(out[k]))
        out[k] = Member(out[k].name, new, zipfile.ZIP_STORED, zlib.crc32(new), len(new))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        k = draw(st.integers(0, len(out) - 1))
        m = out[k]
        kind = draw(
            st.sampled_from(["method", "method", "size", "crc", "name", "drop", "add", "encrypted", "duplicate"])
        )
        if kind == "method":
            m.method = draw(
                st.sampled_from([zipfile.ZIP_DEFLATED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA, 99])
            )
            m.payload = compress(m.payload, m.method)
        elif kind == "size":
            m.size = draw(st.sampled_from([0, 16, m.size - 1, m.size + 1, 2**31, 2**32 - 1, 1 << 30]))
        elif kind == "crc":
            m.crc ^= 1 << draw(st.integers(0, 31))
        elif kind == "name":
            m.name = draw(st.sampled_from(NAMES))
        elif kind == "drop" and len(out) > 1:
            del out[k]
        elif kind == "add":
            out.append(Member("archive/data/77", b"\0" * 8, zipfile.ZIP_STORED, zlib.crc32(b"\0" * 8), 8))
        elif kind == "encrypted":
            m.flags |= 1
        elif kind == "duplicate":
            out.insert(k, Member(m.name, m.payload, m.method, m.crc, m.size))
    blob = zip_bytes(out)
    end = draw(st.sampled_from([None] * 18 + ["cut", "pad"]))
    if end == "cut":
        blob = blob[: len(blob) * draw(st.integers(1, 99)) // 100]
    elif end == "pad":
        blob += draw(st.binary(min_size=1, max_size=64))
    return blob


# ---------------------------------------------------------------------------------------------
# the formats


@st.composite
def torch_zip_files(draw: Any, valid: bytes) -> bytes:
    def data_mutation(m: Member) -> Any:
        if m.name.endswith("data.pkl"):
            return mutated_pickle(m.payload)
        return st.sampled_from([m.payload[:-1], m.payload + b"\0", b"", b"big", m.payload[: len(m.payload) // 2]])

    return draw(mutated_zip(members_of(valid), data_mutation, "data.pkl"))


def legacy_parts() -> tuple[list[bytes], list[tuple[bytes, bytes]]]:
    """The legacy stream of ``tests/test_checkpoint_hypothesis.py``'s shape: five pickles, then
    (count, data) per storage: two views of one float storage and a half tensor."""

    def tensor(key: bytes, stype: bytes, numel: int, offset: int, size: bytes, stride: bytes) -> bytes:
        return (b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\n" + stype
                + b"\nX" + struct.pack("<I", len(key)) + key + b"X\x03\x00\x00\x00cpuK"
                + bytes([numel]) + b"NtQK" + bytes([offset]) + size + stride
                + b"\x89ccollections\nOrderedDict\n)RtR")  # fmt: skip

    a = tensor(b"7", b"FloatStorage", 6, 0, b"K\x02K\x03\x86", b"K\x03K\x01\x86")
    t = tensor(b"7", b"FloatStorage", 6, 1, b"K\x02\x85", b"K\x03\x85")
    h = tensor(b"9", b"HalfStorage", 2, 0, b"K\x02\x85", b"K\x01\x85")
    obj = b"\x80\x02}(X\x01\x00\x00\x00a" + a + b"X\x01\x00\x00\x00t" + t + b"X\x01\x00\x00\x00h" + h + b"u."
    pickles = [pickle.dumps(LEGACY_MAGIC, 2), pickle.dumps(1001, 2), pickle.dumps({"little_endian": True}, 2), obj,
               pickle.dumps(["7", "9"], 2)]  # fmt: skip
    storages = [(struct.pack("<q", 6), np.arange(6, dtype=np.float32).tobytes()),
                (struct.pack("<q", 2), np.ones(2, np.float16).tobytes())]  # fmt: skip
    return pickles, storages


LEGACY_EXPECTED = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "t": np.array([1, 4], np.float32),
                   "h": np.ones(2, np.float16)}  # fmt: skip


@st.composite
def legacy_files(draw: Any) -> bytes:
    pickles, storages = legacy_parts()
    for k in sorted(draw(st.sets(st.sampled_from([0, 1, 2, 3, 3, 3, 4]), max_size=2))):
        pickles[k] = draw(mutated_pickle(pickles[k]))
    if draw(st.booleans()):
        k = draw(st.integers(0, len(storages) - 1))
        count, data = storages[k]
        kind = draw(st.sampled_from(["count", "cut", "extend"]))
        if kind == "count":
            count = struct.pack("<q", draw(st.sampled_from([0, 1, 5, 7, 2**40, -1, 2**62])))
        elif kind == "cut":
            data = data[: len(data) // 2]
        else:
            data += bytes(8)
        storages[k] = (count, data)
    blob = b"".join(pickles) + b"".join(c + d for c, d in storages)
    if draw(st.integers(0, 9)) == 0:
        blob = blob[: len(blob) * draw(st.integers(1, 99)) // 100]
    return blob


SHAPES = ["()", "(0,)", "(-1,)", "(4,)", "(3, 4)", "(2**62,)", "(4611686018427387904,)", "(9223372036854775808,)",
          "(" + "1" * 100 + ",)", "(" + "1, " * 65 + ")", "((2,),)", "[3]", "(3.0,)",
          "(0, 4611686018427387904, 4)"]  # fmt: skip
DESCRS = ["'<f4'", "'>f8'", "'|b1'", "'<i8'", "'<U3'", "'|O'", "'<V8'", "[('a', '<f4')]", "'garbage'", "123",
          "'<c16'", "'|u1'", "'<f2'", "('<f4', (2,))", "[[[[[]]]]]"]  # fmt: skip


BROKEN_HEADERS = ["{}", "[]", "{'descr': '<f4'}", "not python", "{" * 100, "{'shape': (1,)" + "," * 2000]


@st.composite
def npy_member(draw: Any, m: Member) -> bytes:
    """An .npy member rebuilt with mutated header fields, version, header length or data."""
    arr = np.lib.format.read_array(io.BytesIO(m.payload))
    shape = draw(st.sampled_from([repr(arr.shape)] * 4 + SHAPES))
    descr = draw(st.sampled_from([repr(np.lib.format.dtype_to_descr(arr.dtype))] * 4 + DESCRS))
    fortran = draw(st.sampled_from(["False", "False", "True", "1", "None"]))
    text = f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}"
    if draw(st.integers(0, 9)) == 0:
        text = draw(
            st.sampled_from(["{}", "[]", "{'descr': '<f4'}", "not python", "{" * 100, "{'shape': (1,)" + "," * 2000])
        )
    header = text.encode("latin-1") + b"\n"
    version = draw(st.sampled_from([b"\x01\x00"] * 4 + [b"\x02\x00", b"\x03\x00", b"\x09\x09"]))
    length = struct.pack("<H" if version == b"\x01\x00" else "<I", len(header))
    if draw(st.integers(0, 9)) == 0:
        length = draw(st.sampled_from([b"\xff\xff", b"\x00\x00", b"\xff\xff\xff\x7f"]))
    data = arr.tobytes()
    tail = draw(st.sampled_from(["same", "same", "same", "cut", "extend"]))
    data = data[: len(data) // 2] if tail == "cut" else data + bytes(8) if tail == "extend" else data
    magic = b"\x93NUMPY" if draw(st.integers(0, 19)) else b"\x93NUMPZ"
    return magic + version + length + header + data


@st.composite
def npz_files(draw: Any, valid: bytes) -> bytes:
    return draw(mutated_zip(members_of(valid), npy_member, ".npy"))


@st.composite
def safetensors_files(draw: Any, valid: bytes) -> bytes:
    n = int.from_bytes(valid[:8], "little")
    header, data = json.loads(valid[8 : 8 + n]), valid[8 + n :]
    raw: dict[str, str] = {}  # marker -> raw JSON text (numbers JSON cannot hold as Python ints)
    for _ in range(draw(st.integers(0, 3))):
        name = draw(
            st.sampled_from(sorted(k for k, v in header.items() if isinstance(v, dict) and k != "__metadata__"))
        )
        entry = header[name]
        kind = draw(st.sampled_from(["dtype", "shape", "offsets", "keys", "meta", "entry"]))
        if kind == "dtype":
            entry["dtype"] = draw(st.sampled_from(["F32", "F64", "BF16", "F8_E4M3", "f32", "", 7, None, "BOOL", "C64"]))
        elif kind == "shape":
            entry["shape"] = draw(st.sampled_from([[], [0], [-1], [2**62], [2**63], [1.5], ["3"], [[2]], [1] * 70,
                                                   "@BIG@", [0, 2**62, 2**62], 5]))  # fmt: skip
        elif kind == "offsets":
            offsets = entry.get("data_offsets")
            a, b = offsets if isinstance(offsets, list) and len(offsets) == 2 else (0, 0)
            entry["data_offsets"] = draw(st.sampled_from([[b, a], [a, a], [a - 1, b], [a, b + 1], [0, 2**63], [-1, b],
                                                          "@BIG@", [a], None, [a, b, 0]]))  # fmt: skip
        elif kind == "keys":
            del entry[draw(st.sampled_from(sorted(entry)))]
        elif kind == "meta":
            header["__metadata__"] = draw(st.sampled_from([{"a": "b"}, {"a": 1}, [], "x", {"a": {"b": "c"}}]))
        else:
            header[draw(st.sampled_from(["", "module.conv.weight", "x" * 500, "\u0000"]))] = entry
    raw["@BIG@"] = "[" + "9" * draw(st.sampled_from([30, 5000])) + "]"
    text = json.dumps(header)
    for marker, value in raw.items():
        text = text.replace(json.dumps(marker), value)
    body = text.encode()
    if draw(st.integers(0, 9)) == 0:
        body = draw(st.sampled_from([body[:-1], body + b"}", b"[" * 5000, b'{"a": ' * 3000, body.replace(b":", b"")]))
    length = len(body)
    if draw(st.integers(0, 9)) == 0:
        length = draw(st.sampled_from([0, 1, length - 1, length + 1, 2**63, 100 << 20, len(body) + len(data) + 1]))
    blob = struct.pack("<Q", length % 2**64) + body + data
    if draw(st.integers(0, 9)) == 0:
        blob = blob[: len(blob) * draw(st.integers(1, 99)) // 100]
    return blob


# ---------------------------------------------------------------------------------------------
# the oracle


class Hang(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise Hang(f"a read took more than {WATCHDOG_S} s")


def read_and_check(path: Path, expected: dict[str, np.ndarray] | None, reader_name: str) -> None:
    """Read ``path``; assert the outcome is well-formed and within bounds (see the module doc)."""
    size = path.stat().st_size
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(WATCHDOG_S)
    tracemalloc.start()
    start = time.process_time()
    sd, message = None, None
    try:
        sd = read_state_dict(path)
    except CheckpointError as e:
        message = str(e)
    finally:
        cpu = time.process_time() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    returned = sum(v.nbytes for v in sd.values()) if sd else 0
    _record(reader_name, size, returned, peak, cpu, message)
    if message is not None:
        assert message.startswith(str(path)), message
        assert "\n" not in message and "\r" not in message and len(message) < 3000, message
        assert not any(r in message for r in OBJECT_REPR) and "set_int_max_str_digits" not in message, message
    else:
        for k, v in sd.items():
            assert isinstance(k, str) and isinstance(v, np.ndarray), k
            assert v.flags.c_contiguous and v.flags.writeable and v.dtype.isnative, k
        if expected is not None:
            assert list(sd) == list(expected)
            for k, v in expected.items():
                assert sd[k].dtype == v.dtype and sd[k].shape == v.shape, k
                assert sd[k].tobytes() == v.tobytes(), k
    assert peak <= limits.MEMORY_MULTIPLE * returned + limits.MEMORY_ALLOWANCE, (peak, returned)
    assert cpu <= limits.TIME_ALLOWANCE_S + limits.TIME_PER_BYTE_S * size, (cpu, size)


def _record(reader_name: str, size: int, returned: int, peak: int, cpu: float, message: str | None) -> None:
    target = os.environ.get("PARCNETV2_FUZZ_STATS")
    if target:
        with open(target, "a", encoding="utf-8") as fh:
            error = message.split(": ", 1)[1] if message else None
            record = {
                "reader": reader_name,
                "size": size,
                "returned": returned,
                "peak": peak,
                "cpu": cpu,
                "error": error,
            }
            fh.write(json.dumps(record) + "\n")


# ---------------------------------------------------------------------------------------------
# the fuzz tests, one per reader


@FUZZ
@given(data=st.data())
def test_fuzz_torch_zip(tmp_path: Path, data: st.DataObject) -> None:
    valid = valid_file("pth", tmp_path)
    blob = data.draw(torch_zip_files(valid))
    path = tmp_path / "fuzz.pth"
    path.write_bytes(blob)
    read_and_check(path, expected_state_dict() if blob == valid else None, "torch zip")


@FUZZ
@given(data=st.data())
def test_fuzz_torch_legacy(tmp_path: Path, data: st.DataObject) -> None:
    blob = data.draw(legacy_files())
    pickles, storages = legacy_parts()
    valid = b"".join(pickles) + b"".join(c + d for c, d in storages)
    path = tmp_path / "fuzz.pt"
    path.write_bytes(blob)
    read_and_check(path, LEGACY_EXPECTED if blob == valid else None, "torch legacy")


@FUZZ
@given(data=st.data())
def test_fuzz_npz(tmp_path: Path, data: st.DataObject) -> None:
    valid = valid_file("npz", tmp_path)
    blob = data.draw(npz_files(valid))
    path = tmp_path / "fuzz.npz"
    path.write_bytes(blob)
    read_and_check(path, expected_state_dict() if blob == valid else None, "npz")


@FUZZ
@given(data=st.data())
def test_fuzz_safetensors(tmp_path: Path, data: st.DataObject) -> None:
    valid = valid_file("safetensors", tmp_path)
    blob = data.draw(safetensors_files(valid))
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(blob)
    read_and_check(path, expected_state_dict() if blob == valid else None, "safetensors")
