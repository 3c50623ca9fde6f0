"""Weights files (spec clause 13): round-trips, torch archives built by hand, unwrapping,
byte order, and corrupt files. Runs without torch or safetensors (see test_checkpoint_torch.py
for interop with the real libraries, test_checkpoint_safety.py for malicious pickles)."""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from parcnetv2.errors import CheckpointError, UnsafeCheckpointError, WeightsError
from parcnetv2.reference import checkpoint as ck
from parcnetv2.reference.checkpoint import convert, read_state_dict, torch_format, write_state_dict

FORMATS = ("npz", "safetensors", "pth", "pt", "bin")

# ------------------------------------------------------------------------------------------
# A tiny pickle assembler: the opcodes torch's data.pkl uses, so tests can build any archive.


def glob(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def s(x: str) -> bytes:
    b = x.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def i(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def tup(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def call(fn: bytes, *args: bytes) -> bytes:
    return fn + tup(*args) + b"R"


def dct(**items: bytes) -> bytes:
    return b"}(" + b"".join(s(k) + v for k, v in items.items()) + b"u"


def pkl(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


def storage(key: str, numel: int, stype: str = "FloatStorage", legacy_view: bytes | bool | None = None
            ) -> bytes:  # fmt: skip
    """A persistent id: zip form (5 items) with legacy_view=False, else the legacy 6-item form
    whose last item is None or a storage view (view_key, offset, size)."""
    extra = b"" if legacy_view is False else (b"N" if legacy_view is None else legacy_view)
    return tup(s("storage"), glob("torch", stype), s(key), s("cpu"), i(numel), extra) + b"Q"


def tensor(st: bytes, offset: int, size: tuple, stride: tuple, fn: str = "_rebuild_tensor_v2") -> bytes:
    return call(glob("torch._utils", fn), st, i(offset), tup(*map(i, size)), tup(*map(i, stride)),
                b"\x89", call(glob("collections", "OrderedDict")))  # fmt: skip


def zip_storage(key: str, numel: int, stype: str = "FloatStorage") -> bytes:
    return storage(key, numel, stype, legacy_view=False)


def torch_zip(path: Path, data_pkl: bytes, storages: dict[str, bytes], byteorder: bytes | None = b"little",
              prefix: str = "archive") -> Path:  # fmt: skip
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{prefix}/data.pkl", data_pkl)
        if byteorder is not None:
            zf.writestr(f"{prefix}/byteorder", byteorder)
        for k, v in storages.items():
            zf.writestr(f"{prefix}/data/{k}", v)
        zf.writestr(f"{prefix}/version", b"3\n")
    return path


def legacy_file(path: Path, body: bytes, storages: dict[str, tuple[np.ndarray, int]],
                little: bool = True) -> Path:  # fmt: skip
    """torch < 1.6 layout: magic, protocol, sys_info, object, key list, then each storage."""
    order = "little" if little else "big"
    out = io.BytesIO()
    for obj in (torch_format._LEGACY_MAGIC, 1001,
                {"protocol_version": 1001, "little_endian": little,
                 "type_sizes": {"short": 2, "int": 4, "long": 8}}):  # fmt: skip
        pickle.dump(obj, out, protocol=2)
    out.write(pkl(body))
    pickle.dump(sorted(storages), out, protocol=2)
    for k in sorted(storages):
        arr, numel = storages[k]
        out.write(numel.to_bytes(8, order))
        out.write(arr.astype(arr.dtype.newbyteorder("<" if little else ">")).tobytes())
    path.write_bytes(out.getvalue())
    return path


BASE = np.arange(24, dtype=np.float32)


def views_pickle(stored: str = "FloatStorage") -> bytes:
    """Four tensors sharing storage '0' (24 floats): a (4, 6) view, its transpose, a view with
    a storage offset and a stride-0 (expanded) view; plus a scalar on storage '1'."""
    st = zip_storage("0", 24, stored)
    return pkl(dct(
        a=tensor(st, 0, (4, 6), (6, 1)),
        t=tensor(st, 0, (6, 4), (1, 6)),
        off=tensor(st, 7, (2, 3), (6, 2)),
        bc=tensor(st, 5, (3, 2), (0, 1)),
        scalar=tensor(zip_storage("1", 1), 0, (), ()),
    ))  # fmt: skip


def views_expected() -> dict[str, np.ndarray]:
    a = BASE.reshape(4, 6)
    return {"a": a, "t": a.T, "off": np.array([[7, 9, 11], [13, 15, 17]], np.float32),
            "bc": np.broadcast_to(BASE[5:7], (3, 2)), "scalar": np.float32(9.0)}  # fmt: skip


def assert_sd_equal(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for k, v in want.items():
        v = np.asarray(v)
        assert got[k].shape == v.shape, k
        assert got[k].dtype == v.dtype.newbyteorder("="), (k, got[k].dtype, v.dtype)
        np.testing.assert_array_equal(got[k], v, err_msg=k)


def sample_sd() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "stem.0.weight": rng.standard_normal((8, 3, 4, 4)).astype(np.float32),  # (C, C_in, K, K)
        "stem.0.bias": rng.standard_normal(8).astype(np.float32),
        "f64.transposed": rng.standard_normal((3, 5)).T,  # non-contiguous input
        "f16": rng.standard_normal((2, 3)).astype(np.float16),
        "i64": np.arange(6, dtype=np.int64).reshape(2, 3),
        "i32.big_endian": np.arange(4, dtype=">i4"),
        "i16": np.array([-3, 7], np.int16),
        "i8": np.array([-1, 1], np.int8),
        "u8": np.array([0, 255], np.uint8),
        "u16": np.array([1, 65535], np.uint16),
        "u32": np.array([2**32 - 1], np.uint32),
        "u64": np.array([2**64 - 1], np.uint64),
        "bool": np.array([True, False, True]),
        "c64": np.array([1 + 2j, -3j], np.complex64),
        "scalar": np.array(3.5, np.float32),
        "empty": np.zeros((0, 4), np.float32),
        "strided": rng.standard_normal((6, 6)).astype(np.float32)[::2, 1::3],
        "ünïcode name/with slash": np.ones(1, np.float32),
    }


# ------------------------------------------------------------------------------------------
# round-trips


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_all_dtypes(tmp_path: Path, fmt: str) -> None:
    sd = sample_sd()
    path = tmp_path / f"w.{fmt}"
    write_state_dict(path, sd)
    got = read_state_dict(path)
    assert_sd_equal(got, sd)
    for v in got.values():
        assert v.flags.c_contiguous and v.flags.writeable and v.dtype.isnative


def test_complex128_round_trips_except_safetensors(tmp_path: Path) -> None:
    sd = {"c": np.array([1 + 1e-300j])}
    for fmt in ("npz", "pth"):
        write_state_dict(tmp_path / f"c.{fmt}", sd)
        assert_sd_equal(read_state_dict(tmp_path / f"c.{fmt}"), sd)
    with pytest.raises(WeightsError, match="complex128"):
        write_state_dict(tmp_path / "c.safetensors", sd)
    assert not list(tmp_path.glob("*.safetensors*"))  # no partial or temporary file left


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_state_dict(tmp_path: Path, fmt: str) -> None:
    write_state_dict(tmp_path / f"e.{fmt}", {})
    assert read_state_dict(tmp_path / f"e.{fmt}") == {}


@pytest.mark.parametrize("src", FORMATS)
@pytest.mark.parametrize("dst", ("npz", "safetensors", "pth"))
def test_convert(tmp_path: Path, src: str, dst: str) -> None:
    sd = sample_sd()
    write_state_dict(tmp_path / f"a.{src}", sd)
    assert convert(tmp_path / f"a.{src}", tmp_path / f"b.{dst}") == len(sd)
    assert_sd_equal(read_state_dict(tmp_path / f"b.{dst}"), sd)


def test_content_decides_the_parser(tmp_path: Path) -> None:
    """A .bin that is safetensors, a .pt that is npz: read by what they hold."""
    sd = {"w": np.ones((2, 2), np.float32)}
    write_state_dict(tmp_path / "x.safetensors", sd)
    (tmp_path / "x.bin").write_bytes((tmp_path / "x.safetensors").read_bytes())
    assert_sd_equal(read_state_dict(tmp_path / "x.bin"), sd)
    write_state_dict(tmp_path / "y.npz", sd)
    (tmp_path / "y.pt").write_bytes((tmp_path / "y.npz").read_bytes())
    assert_sd_equal(read_state_dict(tmp_path / "y.pt"), sd)
    write_state_dict(tmp_path / "z.PTH", sd)  # extensions are case-insensitive
    assert_sd_equal(read_state_dict(tmp_path / "z.PTH"), sd)


def test_write_overwrites_atomically(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    write_state_dict(path, {"a": np.zeros(2)})
    write_state_dict(path, {"b": np.ones(3)})
    assert list(read_state_dict(path)) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pth"]


def test_bfloat16_read_as_float32(tmp_path: Path) -> None:
    vals = np.array([1.0, -2.5, 3.140625, 0.0], np.float32)  # exactly representable in bf16
    bits = (vals.view(np.uint32) >> 16).astype("<u2")
    # torch zip with a BFloat16Storage
    st = zip_storage("0", 4, "BFloat16Storage")
    torch_zip(tmp_path / "b.pth", pkl(dct(w=tensor(st, 0, (2, 2), (2, 1)))), {"0": bits.tobytes()})
    assert_sd_equal(read_state_dict(tmp_path / "b.pth"), {"w": vals.reshape(2, 2)})
    # safetensors BF16
    header = b'{"w":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}}'
    (tmp_path / "b.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bits.tobytes())
    assert_sd_equal(read_state_dict(tmp_path / "b.safetensors"), {"w": vals})


# ------------------------------------------------------------------------------------------
# torch archives built by hand: views, shared storages, legacy format, byte order


def test_views_of_one_storage(tmp_path: Path) -> None:
    torch_zip(tmp_path / "v.pth", views_pickle(),
              {"0": BASE.tobytes(), "1": np.float32(9).tobytes()})  # fmt: skip
    got = read_state_dict(tmp_path / "v.pth")
    assert_sd_equal(got, views_expected())
    got["a"][0, 0] = 100.0  # arrays are independent copies, not views of one buffer
    assert got["t"][0, 0] == 0.0


def test_big_endian_zip(tmp_path: Path) -> None:
    storages = {"0": BASE.astype(">f4").tobytes(), "1": np.array(9, ">f4").tobytes()}
    torch_zip(tmp_path / "be.pth", views_pickle(), storages, byteorder=b"big")
    assert_sd_equal(read_state_dict(tmp_path / "be.pth"), views_expected())


def test_zip_without_byteorder_record_is_little_endian(tmp_path: Path) -> None:
    storages = {"0": BASE.tobytes(), "1": np.float32(9).tobytes()}
    torch_zip(tmp_path / "old.pt", views_pickle(), storages, byteorder=None, prefix="old")
    assert_sd_equal(read_state_dict(tmp_path / "old.pt"), views_expected())


def test_untyped_storage_v3(tmp_path: Path) -> None:
    """torch >= 2.3 writes uint16/32/64 as _rebuild_tensor_v3(UntypedStorage, ..., dtype)."""
    vals = np.array([1, 2, 65535], "<u2")
    st = tup(s("storage"), glob("torch.storage", "UntypedStorage"), s("0"), s("cpu"), i(6)) + b"Q"
    body = dct(
        u=call(
            glob("torch._utils", "_rebuild_tensor_v3"),
            st,
            i(0),
            tup(i(3)),
            tup(i(1)),
            b"\x89",
            call(glob("collections", "OrderedDict")),
            glob("torch", "uint16"),
        )
    )
    torch_zip(tmp_path / "u.pt", pkl(body), {"0": vals.tobytes()})
    assert_sd_equal(read_state_dict(tmp_path / "u.pt"), {"u": vals})
    body_f8 = body.replace(glob("torch", "uint16"), glob("torch", "float8_e4m3fn"))
    torch_zip(tmp_path / "f8.pt", pkl(body_f8), {"0": vals.tobytes()})
    with pytest.raises(CheckpointError, match="float8_e4m3fn is not supported") as e:
        read_state_dict(tmp_path / "f8.pt")
    assert not isinstance(e.value, UnsafeCheckpointError)


@pytest.mark.parametrize("little", [True, False])
def test_legacy_format(tmp_path: Path, little: bool) -> None:
    def st(key: str, numel: int, stype: str = "FloatStorage", view: bytes | None = None) -> bytes:
        return storage(key, numel, stype, legacy_view=view)

    body = dct(
        a=tensor(st("100", 24), 0, (4, 6), (6, 1)),
        t=tensor(st("100", 24), 0, (6, 4), (1, 6)),
        # an old-style storage view: elements [6, 18) of storage 100
        view=tensor(st("100", 24, view=tup(s("v1"), i(6), i(12))), 2, (5,), (2,)),
        h=tensor(st("7", 3, "HalfStorage"), 0, (3,), (1,)),
        old=call(glob("torch._utils", "_rebuild_tensor"), st("100", 24), i(1), tup(i(2)), tup(i(1))),
    )  # fmt: skip
    storages = {"100": (BASE, 24), "7": (np.array([1, 2, 3], np.float16), 3)}
    legacy_file(tmp_path / "legacy.pt", body, storages, little=little)
    want = {"a": BASE.reshape(4, 6), "t": BASE.reshape(4, 6).T, "view": BASE[8:18:2],
            "h": np.array([1, 2, 3], np.float16), "old": BASE[1:3]}  # fmt: skip
    assert_sd_equal(read_state_dict(tmp_path / "legacy.pt"), want)


def test_legacy_storage_count_mismatch(tmp_path: Path) -> None:
    body = dct(a=tensor(storage("1", 4), 0, (4,), (1,)))
    legacy_file(tmp_path / "l.pt", body, {"1": (np.zeros(3, np.float32), 3)})
    with pytest.raises(CheckpointError, match="holds 3 elements, the pickle declares 4"):
        read_state_dict(tmp_path / "l.pt")


def test_legacy_truncated(tmp_path: Path) -> None:
    body = dct(a=tensor(storage("1", 4), 0, (4,), (1,)))
    data = legacy_file(tmp_path / "l.pt", body, {"1": (np.zeros(4, np.float32), 4)}).read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[:-3])
    with pytest.raises(CheckpointError, match="cut.pt: file ends inside storage"):
        read_state_dict(tmp_path / "cut.pt")


# ------------------------------------------------------------------------------------------
# unwrapping


def wrapped_zip(tmp_path: Path, body: bytes, name: str = "c.pth") -> Path:
    return torch_zip(tmp_path / name, pkl(body), {"0": np.arange(4, dtype=np.float32).tobytes()})


def w_tensor(offset: int = 0) -> bytes:
    return tensor(zip_storage("0", 4), offset, (2,), (1,))


def test_unwrap_training_checkpoint(tmp_path: Path) -> None:
    """timm style: state_dict + state_dict_ema + optimizer + args (argparse.Namespace) + epoch."""
    args = glob("argparse", "Namespace") + b")\x81" + dct(lr=b"G" + struct.pack(">d", 0.1)) + b"b"
    body = dct(
        epoch=i(7), arch=s("parcnetv2_tiny"), args=args,
        state_dict=dct(**{"module.w": w_tensor(0)}),
        state_dict_ema=dct(**{"module.w": w_tensor(2)}),
        optimizer=dct(state=dct(), param_groups=b"]" + dct(lr=i(1)) + b"a"),
    )  # fmt: skip
    path = wrapped_zip(tmp_path, body)
    assert_sd_equal(read_state_dict(path), {"w": np.array([0, 1], np.float32)})
    assert_sd_equal(read_state_dict(path, key="state_dict_ema"), {"w": np.array([2, 3], np.float32)})
    with pytest.raises(CheckpointError, match="no entry 'nope'.*'epoch'"):
        read_state_dict(path, key="nope")


@pytest.mark.parametrize("outer", ["model", "state_dict", "model_state_dict", "module", "model_ema"])
def test_unwrap_keys(tmp_path: Path, outer: str) -> None:
    path = wrapped_zip(tmp_path, dct(**{outer: dct(w=w_tensor()), "epoch": i(1)}))
    assert list(read_state_dict(path)) == ["w"]


def test_unwrap_prefers_plain_weights_over_ema(tmp_path: Path) -> None:
    path = wrapped_zip(tmp_path, dct(model_ema=dct(w=w_tensor(2)), model=dct(w=w_tensor(0))))
    np.testing.assert_array_equal(read_state_dict(path)["w"], [0, 1])


def test_unwrap_nested(tmp_path: Path) -> None:
    path = wrapped_zip(tmp_path, dct(model=dct(state_dict=dct(w=w_tensor()))))
    assert list(read_state_dict(path)) == ["w"]


def test_unknown_wrapper_is_named(tmp_path: Path) -> None:
    path = wrapped_zip(tmp_path, dct(weights=dct(w=w_tensor()), epoch=i(1)))
    with pytest.raises(CheckpointError, match=r"'weights' \(dict\).*under 'weights': pass key"):
        read_state_dict(path)
    assert list(read_state_dict(path, key="weights")) == ["w"]


def test_non_tensor_in_state_dict(tmp_path: Path) -> None:
    path = wrapped_zip(tmp_path, dct(w=w_tensor(), version=i(2)))
    with pytest.raises(CheckpointError, match=r"c.pth: not a state_dict: entries 'version' \(int\)"):
        read_state_dict(path)


def test_top_level_not_a_dict(tmp_path: Path) -> None:
    path = wrapped_zip(tmp_path, b"]" + w_tensor() + b"a")
    with pytest.raises(CheckpointError, match="holds a list, not a dict of tensors"):
        read_state_dict(path)


def test_module_prefix_stripped_in_every_format(tmp_path: Path) -> None:
    sd = {"module.a": np.zeros(1), "b": np.ones(1), "module.module.c": np.ones(2)}
    want = {"a": np.zeros(1), "b": np.ones(1), "module.c": np.ones(2)}
    for fmt in FORMATS:
        write_state_dict(tmp_path / f"p.{fmt}", sd)
        assert_sd_equal(read_state_dict(tmp_path / f"p.{fmt}"), want)
    write_state_dict(tmp_path / "clash.npz", {"module.a": np.zeros(1), "a": np.zeros(1)})
    with pytest.raises(CheckpointError, match="collide"):
        read_state_dict(tmp_path / "clash.npz")


def test_key_only_for_torch(tmp_path: Path) -> None:
    write_state_dict(tmp_path / "a.npz", {"w": np.zeros(1)})
    with pytest.raises(CheckpointError, match="key='model' applies to torch checkpoints"):
        read_state_dict(tmp_path / "a.npz", key="model")


# ------------------------------------------------------------------------------------------
# files that are missing, unknown, corrupt or malformed


def test_missing_file_and_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nope.pth: no such file"):
        read_state_dict(tmp_path / "nope.pth")
    with pytest.raises(
        CheckpointError,
        match=r"w.h5: unknown weights file extension '.h5'; "
        r"supported: .npz, .safetensors, .pth, .pt, .bin",
    ):
        read_state_dict(tmp_path / "w.h5")
    with pytest.raises(CheckpointError, match="unknown weights file extension"):
        write_state_dict(tmp_path / "w.onnx", {})
    (tmp_path / "dir.pth").mkdir()
    with pytest.raises(CheckpointError, match="dir.pth: is a directory"):
        read_state_dict(tmp_path / "dir.pth")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.safetensors: the file is empty"):
        read_state_dict(tmp_path / "empty.safetensors")
    with pytest.raises(CheckpointError, match="cannot write"):
        write_state_dict(tmp_path / "no" / "such" / "dir.npz", {})


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_files(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"w.{fmt}"
    write_state_dict(path, sample_sd())
    data = path.read_bytes()
    for cut in (1, 7, 9, 40, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.{fmt}"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=f"cut{cut}.{fmt}: "):
            read_state_dict(bad)


@pytest.mark.parametrize("fmt", ["npz", "pth"])
def test_flipped_data_byte_fails_crc(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"w.{fmt}"
    write_state_dict(path, {"w": np.arange(64, dtype=np.float32)})
    data = bytearray(path.read_bytes())
    pos = data.index(np.arange(64, dtype=np.float32)[10:12].tobytes())
    data[pos] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="CRC"):
        read_state_dict(path)


def st_file(tmp_path: Path, header: bytes, data: bytes = b"", length: int | None = None) -> Path:
    path = tmp_path / "t.safetensors"
    path.write_bytes(struct.pack("<Q", len(header) if length is None else length) + header + data)
    return path


@pytest.mark.parametrize(
    "header, data, length, message",
    [
        (b"{}", b"", 10**12, "header length 1000000000000 is over"),
        (b"{}", b"", 50, "runs past the end of the file"),
        (b"[1, 2]", b"", None, "not a JSON object"),
        (b'{"a": ', b"", None, "not valid JSON"),
        (b"{\xff}", b"", None, "not UTF-8"),
        (b'{"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}', b"\0", None, "dtype F8_E4M3 is not supported"),
        (b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', b"\0" * 4, None, "4 data bytes for shape"),
        (b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 3, None, "run past"),
        (b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8, None, "leave a gap"),
        (
            b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
            b'"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
            b"\0" * 4,
            None,
            "overlap",
        ),
        (b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 6, None, "cover 4"),
        (
            b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
            b'"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
            b"\0" * 4,
            None,
            "twice",
        ),
        (b'{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', b"\0" * 4, None, "shape"),
        (b'{"a":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}}', b"\0" * 4, None, "shape"),
        (b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}', b"\0" * 4, None, "data_offsets"),
        (b'{"a":{"dtype":"F32","shape":[1]}}', b"\0" * 4, None, "lacks"),
        (b'{"a":[]}', b"", None, "lacks"),
        (b'{"__metadata__":{"x":1}}', b"", None, "__metadata__"),
    ],
)
def test_bad_safetensors(tmp_path: Path, header: bytes, data: bytes, length: int | None,
                         message: str) -> None:  # fmt: skip
    with pytest.raises(CheckpointError, match=f"t.safetensors: .*{message}"):
        read_state_dict(st_file(tmp_path, header, data, length))


def test_safetensors_metadata_and_padding_accepted(tmp_path: Path) -> None:
    header = b'{"__metadata__":{"format":"pt"},"a":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}}   '
    assert_sd_equal(read_state_dict(st_file(tmp_path, header, b"\x01\xff")),
                    {"a": np.array([1, -1], np.int8)})  # fmt: skip


def test_npz_object_array_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "o.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="o.npz: array 'a' is an object array"):
        read_state_dict(tmp_path / "o.npz")


def test_npz_bad_members(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "m.npz", "w") as zf:
        zf.writestr("a.txt", b"hello")
    with pytest.raises(CheckpointError, match="neither a torch checkpoint"):
        read_state_dict(tmp_path / "m.npz")
    with zipfile.ZipFile(tmp_path / "h.npz", "w") as zf:
        zf.writestr("a.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}    \n")
    with pytest.raises(CheckpointError, match="array 'a': bad .npy header"):
        read_state_dict(tmp_path / "h.npz")
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.zeros(4, np.float32))
    with zipfile.ZipFile(tmp_path / "s.npz", "w") as zf:
        zf.writestr("a.npy", buf.getvalue()[:-4])  # header says 16 data bytes, 12 present
    with pytest.raises(CheckpointError, match="holds 12 data bytes"):
        read_state_dict(tmp_path / "s.npz")
    with zipfile.ZipFile(tmp_path / "u.npz", "w") as zf:
        b2 = io.BytesIO()
        np.lib.format.write_array(b2, np.array(["x"]))
        zf.writestr("a.npy", b2.getvalue())
    with pytest.raises(CheckpointError, match="dtype <U1, not one of"):
        read_state_dict(tmp_path / "u.npz")
    (tmp_path / "n.npz").write_bytes(b"not a zip at all")
    with pytest.raises(CheckpointError, match="not an .npz file"):
        read_state_dict(tmp_path / "n.npz")


def test_compressed_npz(tmp_path: Path) -> None:
    sd = {"w": np.arange(1000, dtype=np.float32).reshape(10, 100), "b": np.zeros(3, np.int8)}
    np.savez_compressed(tmp_path / "c.npz", **sd)
    assert_sd_equal(read_state_dict(tmp_path / "c.npz"), sd)


def test_non_string_names(tmp_path: Path) -> None:
    body = b"}(K\x01" + w_tensor() + b"u"
    with pytest.raises(CheckpointError, match="names 1 are not strings"):
        read_state_dict(wrapped_zip(tmp_path, body))


def test_fortran_order_npz(tmp_path: Path) -> None:
    a = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    np.savez(tmp_path / "f.npz", a=a)
    got = read_state_dict(tmp_path / "f.npz")["a"]
    np.testing.assert_array_equal(got, a)
    assert got.flags.c_contiguous


@pytest.mark.parametrize(
    "body, storages, message",
    [
        (dct(w=tensor(zip_storage("0", 4), 0, (2,), (1,))), {}, "storage record 'archive/data/0' is missing"),
        (
            dct(w=tensor(zip_storage("0", 4), 0, (2,), (1,))),
            {"0": b"\0" * 12},
            "is 12 bytes, but the pickle declares 4 x 4-byte elements",
        ),
        (
            dct(w=tensor(zip_storage("0", 4), 3, (2,), (1,))),
            {"0": b"\0" * 16},
            r"reads element 4 of a storage of 4 elements",
        ),
        (dct(w=tensor(zip_storage("0", 4), 0, (2, 2), (3, 1))), {"0": b"\0" * 16}, r"reads element 4 of a storage"),
        (dct(w=tensor(zip_storage("0", 4), 0, (2,), (-1,))), {"0": b"\0" * 16}, "stride is -1, expected an int >= 0"),
        (dct(w=tensor(zip_storage("0", 4), 0, (2,), (1, 1))), {"0": b"\0" * 16}, "differ in length"),
        (
            dct(w=tensor(zip_storage("0", 4, "QInt8Storage"), 0, (2,), (1,))),
            {"0": b"\0" * 4},
            "quantized storage torch.QInt8Storage is not supported",
        ),
        (
            dct(
                w=call(
                    glob("torch._utils", "_rebuild_tensor_v2"),
                    s("no storage"),
                    i(0),
                    tup(),
                    tup(),
                    b"\x89",
                    call(glob("collections", "OrderedDict")),
                )
            ),
            {},
            "storage argument is",
        ),
        (dct(w=tup(s("storage")) + b"Q"), {}, "malformed persistent id"),
        (dct(w=tup(s("module"), s("x"), s("0"), s("cpu"), i(1)) + b"Q"), {}, "kind module"),
        (
            dct(w=tup(s("storage"), glob("torch", "FloatStorage"), s("../../etc/passwd"), s("cpu"), i(1)) + b"Q"),
            {},
            "bad storage key",
        ),
        (
            dct(
                w=call(
                    glob("torch._utils", "_rebuild_tensor_v2"),
                    zip_storage("0", 1),
                    i(0),
                    tup(),
                    tup(),
                    b"\x89",
                    call(glob("collections", "OrderedDict")),
                    dct(funny=b"\x88"),
                )
            ),
            {"0": b"\0" * 4},
            "unsupported tensor metadata funny=True",
        ),
        (b"K\x01", {}, "holds a int"),
    ],
)
def test_malformed_torch_zip(tmp_path: Path, body: bytes, storages: dict, message: str) -> None:
    path = torch_zip(tmp_path / "m.pth", pkl(body), storages)
    with pytest.raises(CheckpointError, match=f"m.pth: .*{message}") as e:
        read_state_dict(path)
    assert not isinstance(e.value, UnsafeCheckpointError)


def test_bad_byteorder_record(tmp_path: Path) -> None:
    path = torch_zip(tmp_path / "b.pth", pkl(dct()), {}, byteorder=b"middle")
    with pytest.raises(CheckpointError, match="byteorder record is b'middle'"):
        read_state_dict(path)


def test_expansion_bomb_refused(tmp_path: Path) -> None:
    """A stride-0 view may not turn 4 stored bytes into gigabytes."""
    body = dct(w=tensor(zip_storage("0", 1), 0, (1 << 20, 1 << 10), (0, 0)))
    path = torch_zip(tmp_path / "bomb.pth", pkl(body), {"0": b"\0" * 4})
    with pytest.raises(CheckpointError, match="far more than the data stored"):
        read_state_dict(path)


def test_stride_zero_within_limit(tmp_path: Path) -> None:
    body = dct(w=tensor(zip_storage("0", 1), 0, (3, 2), (0, 0)))
    path = torch_zip(tmp_path / "b.pth", pkl(body), {"0": np.float32(7).tobytes()})
    assert_sd_equal(read_state_dict(path), {"w": np.full((3, 2), 7, np.float32)})


def test_zip_that_is_neither(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "x.pth", "w") as zf:
        zf.writestr("hello.txt", b"hi")
    with pytest.raises(CheckpointError, match="x.pth: zip archive is neither"):
        read_state_dict(tmp_path / "x.pth")


def test_torchscript_archive_refused(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "ts.pt", "w") as zf:
        zf.writestr("ts/data.pkl", pkl(dct()))
        zf.writestr("ts/code/__torch__.py", b"")
        zf.writestr("ts/constants.pkl", pkl(b")"))
    with pytest.raises(CheckpointError, match="TorchScript archive"):
        read_state_dict(tmp_path / "ts.pt")


def test_tar_legacy_refused(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "old.pt", "w") as tf:
        info = tarfile.TarInfo("pickle")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(CheckpointError, match="tar archive"):
        read_state_dict(tmp_path / "old.pt")


def test_plain_pickle_refused(tmp_path: Path) -> None:
    (tmp_path / "p.pth").write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
    with pytest.raises(CheckpointError, match="p.pth: a plain pickle .*dict.*not a torch checkpoint"):
        read_state_dict(tmp_path / "p.pth")
    (tmp_path / "g.pt").write_bytes(b"garbage that is no format at all")
    with pytest.raises(CheckpointError, match="g.pt: malformed pickle"):
        read_state_dict(tmp_path / "g.pt")


# ------------------------------------------------------------------------------------------
# writing


def test_write_rejects_bad_content(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not a string"):
        write_state_dict(tmp_path / "a.pth", {1: np.zeros(1)})
    with pytest.raises(WeightsError, match="dtype object cannot be stored"):
        write_state_dict(tmp_path / "a.pth", {"a": np.array([None])})
    with pytest.raises(WeightsError, match="dtype <U2 cannot be stored"):
        write_state_dict(tmp_path / "a.safetensors", {"a": np.array(["ab"])})
    with pytest.raises(WeightsError, match="__metadata__"):
        write_state_dict(tmp_path / "a.safetensors", {"__metadata__": np.zeros(1)})
    with pytest.raises(WeightsError, match="NUL"):
        write_state_dict(tmp_path / "a.npz", {"a\0b": np.zeros(1)})
    with pytest.raises(WeightsError, match="maps names to arrays; got a list"):
        write_state_dict(tmp_path / "a.npz", [("a", np.zeros(1))])  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_write_accepts_array_likes(tmp_path: Path) -> None:
    write_state_dict(tmp_path / "a.pth", {"a": [[1.0, 2.0]], "b": 3})
    assert_sd_equal(read_state_dict(tmp_path / "a.pth"), {"a": np.array([[1.0, 2.0]]), "b": np.array(3)})


def test_torch_zip_layout(tmp_path: Path) -> None:
    """What we write: archive/data.pkl, byteorder, data/<i> 64-byte aligned, version."""
    write_state_dict(tmp_path / "w.pth", {"a": np.ones(3, np.float32), "b": np.zeros((2, 2))})
    with zipfile.ZipFile(tmp_path / "w.pth") as zf:
        names = zf.namelist()
        assert names == ["archive/data.pkl", "archive/byteorder", "archive/data/0",
                         "archive/data/1", "archive/version"]  # fmt: skip
        assert zf.read("archive/byteorder") == b"little"
        raw = (tmp_path / "w.pth").read_bytes()
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            if "/data/" in info.filename:
                start = info.header_offset + 30 + len(info.filename) + len(info.extra)
                assert start % 64 == 0
                assert raw[start : start + info.file_size] == zf.read(info)
        ops = [op.name for op, _, _ in __import__("pickletools").genops(zf.read("archive/data.pkl"))]
        assert "BINPERSID" in ops


def test_allowlist_is_small_and_documented() -> None:
    allowed = ck.ALLOWED_GLOBALS
    assert all(isinstance(v, str) and v for v in allowed.values())
    modules = {name.rsplit(".", 1)[0] for name in allowed}
    assert modules <= {"collections", "torch", "torch._utils", "torch._tensor", "torch.tensor",
                       "torch.storage", "torch.cuda", "argparse"}  # fmt: skip
    for bad in (
        "builtins.eval",
        "os.system",
        "posix.system",
        "torch.load",
        "numpy.load",
        "torch.storage._load_from_bytes",
        "functools.partial",
        "copyreg._reconstructor",
    ):
        assert bad not in allowed
