"""Property tests of the weights-file I/O (spec clause 13, weights files): random state_dicts
round-trip bit-exactly through every format, and mutated files (bytes flipped, cut, inserted;
pickles and headers corrupted inside otherwise valid containers) either read as a dict of
arrays or raise CheckpointError, never anything else. Needs no torch."""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parcnetv2.errors import CheckpointError
from parcnetv2.reference.checkpoint import read_state_dict, write_state_dict

DTYPES = ["float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint64", "uint32",
          "uint16", "uint8", "bool", "complex64", "complex128"]  # fmt: skip
FIXTURE_OK = [HealthCheck.function_scoped_fixture]

names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
names = names.filter(lambda n: not n.startswith("module.") and n != "__metadata__")


@st.composite
def arrays(draw) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
    n = int(np.prod(shape)) * dtype.itemsize
    raw = np.frombuffer(draw(st.binary(min_size=n, max_size=n)), np.uint8)
    if dtype == np.bool_:
        return (raw != 0).reshape(shape)
    arr = raw.view(dtype).reshape(shape)  # any bit pattern: NaN payloads, -0.0, subnormals
    if draw(st.booleans()):
        arr = arr.astype(dtype.newbyteorder(">"))
    if arr.ndim >= 2 and draw(st.booleans()):
        arr = arr.swapaxes(0, 1)  # non-contiguous
    return arr


state_dicts = st.dictionaries(names, arrays(), max_size=5)


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE_OK)
@given(sd=state_dicts, fmt=st.sampled_from(["npz", "safetensors", "pth"]))
def test_round_trip_bit_exact(tmp_path: Path, sd: dict, fmt: str) -> None:
    if fmt == "safetensors":
        sd = {k: v for k, v in sd.items() if v.dtype.kind != "c" or v.dtype.itemsize == 8}
    path = tmp_path / f"r.{fmt}"
    write_state_dict(path, sd)
    got = read_state_dict(path)
    assert set(got) == set(sd)
    if fmt != "safetensors":
        assert list(got) == list(sd)
    for k, v in sd.items():
        want = np.asarray(v, dtype=v.dtype.newbyteorder("="), order="C")
        assert got[k].dtype == want.dtype and got[k].shape == want.shape, k
        assert got[k].tobytes() == want.tobytes(), k


# ------------------------------------------------------------------------------------------
# mutation fuzzing


_SAMPLES: dict[str, bytes] = {}


def sample_files(tmp: Path) -> dict[str, bytes]:
    """Valid files of each format (made once per session)."""
    if _SAMPLES:
        return _SAMPLES
    sd = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.array([1, -1], np.int8),
          "c": np.ones((2, 2), np.float16).T, "module.d": np.array(True)}  # fmt: skip
    out = {}
    for fmt in ("npz", "safetensors", "pth"):
        write_state_dict(tmp / f"s.{fmt}", sd)
        out[fmt] = (tmp / f"s.{fmt}").read_bytes()
    _SAMPLES.update(out)
    return out


def legacy_bytes() -> bytes:
    """A torch < 1.6 file: two views of one storage and a half tensor."""

    def tensor(key: bytes, stype: bytes, numel: int, offset: int, size: bytes, stride: bytes) -> bytes:
        return (b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\n" + stype
                + b"\nX" + struct.pack("<I", len(key)) + key + b"X\x03\x00\x00\x00cpuK"
                + bytes([numel]) + b"NtQK" + bytes([offset]) + size + stride
                + b"\x89ccollections\nOrderedDict\n)RtR")  # fmt: skip

    body = (b"\x80\x02}(X\x01\x00\x00\x00a" + tensor(b"7", b"FloatStorage", 6, 0, b"K\x02K\x03\x86", b"K\x03K\x01\x86")
            + b"X\x01\x00\x00\x00t" + tensor(b"7", b"FloatStorage", 6, 1, b"K\x02\x85", b"K\x03\x85")
            + b"X\x01\x00\x00\x00h" + tensor(b"9", b"HalfStorage", 2, 0, b"K\x02\x85", b"K\x01\x85")
            + b"u.")  # fmt: skip
    head = b"".join(pickle.dumps(x, 2) for x in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))
    tail = pickle.dumps(["7", "9"], 2) + struct.pack("<q", 6) + np.arange(6, dtype=np.float32).tobytes()
    tail += struct.pack("<q", 2) + np.ones(2, np.float16).tobytes()
    return head + body + tail


def rezip_with_pickle(pth: bytes, data_pkl: bytes) -> bytes:
    """The same torch archive with data.pkl replaced (valid CRCs: the pickle parser is fuzzed,
    not zipfile's checksum)."""
    src = zipfile.ZipFile(io.BytesIO(pth))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, data_pkl if info.filename.endswith("data.pkl") else src.read(info))
    return out.getvalue()


def mutate(data: bytes, draw) -> bytes:
    kind = draw(st.sampled_from(["flip", "cut", "insert", "overwrite"]))
    buf = bytearray(data)
    if kind == "cut":
        return bytes(buf[: draw(st.integers(0, len(buf) - 1))])
    if kind == "insert":
        pos = draw(st.integers(0, len(buf)))
        return bytes(buf[:pos] + draw(st.binary(min_size=1, max_size=8)) + buf[pos:])
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(buf) - 1))
        if kind == "flip":
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        else:
            buf[pos] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, ord("("), ord("R"), ord("b")]))
    return bytes(buf)


def check_read(path: Path) -> None:
    try:
        sd = read_state_dict(path)
    except CheckpointError as e:
        assert str(path) in str(e)
        return
    assert all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in sd.items())


@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=st.data(), target=st.sampled_from(["npz", "safetensors", "pth", "data.pkl", "legacy",
                                                "st-header"]))  # fmt: skip
def test_mutated_files_fail_cleanly(tmp_path: Path, data: st.DataObject, target: str) -> None:
    files = sample_files(tmp_path)
    if target == "data.pkl":
        pkl = zipfile.ZipFile(io.BytesIO(files["pth"])).read("archive/data.pkl")
        blob, ext = rezip_with_pickle(files["pth"], mutate(pkl, data.draw)), "pth"
    elif target == "legacy":
        blob, ext = mutate(legacy_bytes(), data.draw), "pt"
    elif target == "st-header":  # mutate only the JSON header, keep the length consistent
        raw = files["safetensors"]
        n = int.from_bytes(raw[:8], "little")
        header = mutate(raw[8 : 8 + n], data.draw)
        blob, ext = len(header).to_bytes(8, "little") + header + raw[8 + n :], "safetensors"
    else:
        blob, ext = mutate(files[target], data.draw), target
    path = tmp_path / f"fuzz.{ext}"
    path.write_bytes(blob)
    check_read(path)


def test_legacy_sample_is_valid(tmp_path: Path) -> None:
    (tmp_path / "l.pt").write_bytes(legacy_bytes())
    got = read_state_dict(tmp_path / "l.pt")
    np.testing.assert_array_equal(got["a"], np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(got["t"], [1, 4])
    np.testing.assert_array_equal(got["h"], np.ones(2, np.float16))
