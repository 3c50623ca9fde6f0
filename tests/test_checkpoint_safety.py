"""Malicious checkpoints are refused and nothing runs (spec clause 13, weights files).

Each payload would create a marker file if unpickled normally (checked by a positive control
in a subprocess); read_state_dict must raise UnsafeCheckpointError naming the global, and the
marker must not exist afterwards. Also: no framework is imported by reading or writing."""

from __future__ import annotations

import copyreg
import functools
import importlib.util
import io
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from parcnetv2.errors import CheckpointError, UnsafeCheckpointError
from parcnetv2.reference.checkpoint import read_state_dict, restricted_pickle, write_state_dict

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class Reduce:
    """Pickles as ``fn(*args)``: the classic payload."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def q(x: str) -> bytes:
    """A protocol-0 string literal."""
    return f"S'{x}'\n".encode()


def payloads(marker: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (pickle bytes, the global the error must name). All would create ``marker``."""
    m = str(marker)
    system = f"{os.system.__module__}.system"  # posix.system on Linux
    return {
        "os.system reduce p2": (pickle.dumps(Reduce(os.system, f"touch {m}"), protocol=2), system),
        "os.system reduce p4": (pickle.dumps(Reduce(os.system, f"touch {m}"), protocol=4), system),
        "os.system p0 text": (b"cos\nsystem\n(" + q(f"touch {m}") + b"tR.", "os.system"),
        "INST opcode": (b"(" + q(f"touch {m}") + b"ios\nsystem\n.", "os.system"),
        "OBJ opcode": (b"(cos\nsystem\n" + q(f"touch {m}") + b"o.", "os.system"),
        "builtins.exec": (pickle.dumps(Reduce(exec, f"open({m!r}, 'w').close()"), protocol=2), "builtins.exec"),
        "builtins.eval": (pickle.dumps(Reduce(eval, f"open({m!r}, 'w').close()"), protocol=2), "builtins.eval"),
        "__builtin__.getattr": (
            b"c__builtin__\ngetattr\n(c__builtin__\n__import__\n("
            + q("os")
            + b"tR"
            + q("system")
            + b"tR("
            + q(f"touch {m}")
            + b"tR.",
            "__builtin__.getattr",
        ),
        "subprocess.Popen": (pickle.dumps(Reduce(subprocess.Popen, ["touch", m]), protocol=2), "subprocess.Popen"),
        "functools.partial": (
            pickle.dumps(Reduce(functools.partial(os.system, f"touch {m}")), protocol=2),
            "functools.partial",
        ),
        "operator.attrgetter": (
            b"coperator\nattrgetter\n("
            + q("system")
            + b"tR(cbuiltins\n__import__\n("
            + q("os")
            + b"tRtR("
            + q(f"touch {m}")
            + b"tR.",
            "operator.attrgetter",
        ),
        "copyreg._reconstructor": (
            b"ccopyreg\n_reconstructor\n(cos\n_wrap_close\ncbuiltins\nobject\nNtR.",
            "copyreg._reconstructor",
        ),
        "torch.storage._load_from_bytes": (
            b"\x80\x02ctorch.storage\n_load_from_bytes\n(C\x00tR.",
            "torch.storage._load_from_bytes",
        ),
        "numpy reconstruct": (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n.", "numpy.core.multiarray._reconstruct"),
    }


def as_torch_zip(path: Path, data_pkl: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        zf.writestr("archive/byteorder", b"little")
        zf.writestr("archive/version", b"3\n")
    return path


def as_legacy(path: Path, evil: bytes, slot: int) -> Path:
    """A legacy stream with ``evil`` as pickle number ``slot`` (0 magic, 1 protocol,
    2 sys_info, 3 the object, 4 the key list)."""
    parts = [pickle.dumps(LEGACY_MAGIC, 2), pickle.dumps(1001, 2),
             pickle.dumps({"protocol_version": 1001, "little_endian": True}, 2),
             pickle.dumps({}, 2), pickle.dumps([], 2)]  # fmt: skip
    parts[slot] = evil
    path.write_bytes(b"".join(parts))
    return path


def assert_refused(path: Path, global_name: str, marker: Path) -> None:
    with pytest.raises(UnsafeCheckpointError) as e:
        read_state_dict(path)
    msg = str(e.value)
    assert str(path) in msg
    # the global as written, or (protocol < 3 pickles store Python 2 names such as
    # __builtin__.eval, commands.Popen) as the Python 3 name a default unpickler would import
    assert f"'{global_name}'" in msg or f"({global_name} in Python 3)" in msg, msg
    assert not marker.exists(), "the payload ran"


NAMES = list(payloads(Path("m")))


@pytest.mark.parametrize("name", NAMES)
def test_zip_payload_refused(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "MARKER"
    data, glob = payloads(marker)[name]
    assert_refused(as_torch_zip(tmp_path / "evil.pth", data), glob, marker)


@pytest.mark.parametrize("name", NAMES)
def test_plain_pickle_payload_refused(tmp_path: Path, name: str) -> None:
    """A bare pickle named .pt (what `torch.save(..., pickle_module=...)` or an attacker writes)."""
    marker = tmp_path / "MARKER"
    data, glob = payloads(marker)[name]
    (tmp_path / "evil.pt").write_bytes(data)
    assert_refused(tmp_path / "evil.pt", glob, marker)


@pytest.mark.parametrize("slot", range(5))
def test_legacy_payload_refused(tmp_path: Path, slot: int) -> None:
    marker = tmp_path / "MARKER"
    data, glob = payloads(marker)["os.system reduce p2"]
    assert_refused(as_legacy(tmp_path / "evil.pth", data, slot), glob, marker)


@pytest.mark.parametrize("name", ["os.system reduce p2", "builtins.exec", "subprocess.Popen"])
def test_positive_control_payloads_are_live(tmp_path: Path, name: str) -> None:
    """The same bytes do run under plain pickle (in a child process), so the refusals above
    are meaningful."""
    marker = tmp_path / "MARKER"
    data, _ = payloads(marker)[name]
    (tmp_path / "p.pkl").write_bytes(data)
    code = (
        "import pickle, sys; r = pickle.loads(open(sys.argv[1], 'rb').read()); "
        "getattr(r, 'wait', lambda: None)()"
    )  # Popen: wait for the child
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "p.pkl")], check=True, timeout=60)
    assert marker.exists()


TENSOR = (  # _rebuild_tensor_v2(('storage', torch.FloatStorage, '0', 'cpu', 1), 0, (), (), False, OrderedDict())
    b"ctorch._utils\n_rebuild_tensor_v2\n("
    b"(X\x07\x00\x00\x00storage"
    b"ctorch\nFloatStorage\n"
    b"X\x01\x00\x00\x000"
    b"X\x03\x00\x00\x00cpu"
    b"K\x01"
    b"tQ"
    b"K\x00"
    b"))"
    b"\x89"
    b"ccollections\nOrderedDict\n)R"
    b"tR"
)


def sd_with(evil: bytes, where: str) -> bytes:
    """A state_dict pickle with one real tensor 'w' and ``evil`` (an expression) placed as another
    entry, as a training checkpoint's optimizer, or as the storage type of the tensor."""
    if where == "storage type":
        return b"\x80\x02}(X\x01\x00\x00\x00w" + TENSOR.replace(b"ctorch\nFloatStorage\n", evil) + b"u."
    if where == "optimizer":
        return (b"\x80\x02}(X\x05\x00\x00\x00model}(X\x01\x00\x00\x00w" + TENSOR
                + b"uX\t\x00\x00\x00optimizer" + evil + b"u.")  # fmt: skip
    return b"\x80\x02}(X\x01\x00\x00\x00w" + TENSOR + b"X\x04\x00\x00\x00evil" + evil + b"u."


def sd_zip(path: Path, data_pkl: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        zf.writestr("archive/data/0", np.float32(1).tobytes())
    return path


@pytest.mark.parametrize("where", ["entry", "optimizer", "storage type"])
def test_payload_hidden_in_a_real_state_dict(tmp_path: Path, where: str) -> None:
    marker = tmp_path / "MARKER"
    cmd = f"touch {marker}".encode()
    evil = b"cposix\nsystem\n(X" + struct.pack("<I", len(cmd)) + cmd + b"tR"
    assert_refused(sd_zip(tmp_path / "sd.pth", sd_with(evil, where)), "posix.system", marker)
    if where == "optimizer":  # the same checkpoint with a harmless optimizer entry reads fine
        ok = sd_zip(tmp_path / "ok.pth", sd_with(b"}", where))
        np.testing.assert_array_equal(read_state_dict(ok)["w"], np.float32(1))


def test_extension_registry_opcode_refused(tmp_path: Path) -> None:
    """EXT1 names a global through copyreg's registry; the C unpickler's cache of it would skip
    find_class, so the opcode itself is refused."""
    code = 0x7F
    copyreg.add_extension("os", "system", code)
    try:
        pickle.loads(b"\x80\x02\x82\x7f.")  # populate the unpickler's extension cache
        marker = tmp_path / "MARKER"
        cmd = f"touch {marker}".encode()
        data = b"\x80\x02\x82\x7f(X" + struct.pack("<I", len(cmd)) + cmd + b"tR."
        (tmp_path / "ext.pt").write_bytes(data)
        with pytest.raises(UnsafeCheckpointError, match="ext.pt: refusing pickle opcode EXT1"):
            read_state_dict(tmp_path / "ext.pt")
        assert not marker.exists()
    finally:
        copyreg.remove_extension("os", "system", code)


def test_build_cannot_tamper_with_the_stand_ins(tmp_path: Path) -> None:
    """BUILD on an allowed global (e.g. setting __defaults__ of a rebuild function, or attributes
    of the Namespace placeholder) is refused and changes nothing for later files."""
    before = restricted_pickle._rebuild_tensor_v2.__defaults__
    for glob in (b"ctorch._utils\n_rebuild_tensor_v2\n", b"ccollections\nOrderedDict\n",
                 b"cargparse\nNamespace\n", b"ctorch\nFloatStorage\n", b"ctorch\nuint16\n"):  # fmt: skip
        data = (b"\x80\x02" + glob + b"N}X\x0c\x00\x00\x00__defaults__(K\x00K\x01tsX\x0b\x00\x00\x00"
                b"__setstate__K\x01s\x86b.")  # fmt: skip
        path = as_torch_zip(tmp_path / "build.pth", data)
        with pytest.raises(CheckpointError):
            read_state_dict(path)
    assert restricted_pickle._rebuild_tensor_v2.__defaults__ == before
    assert "__defaults__" not in vars(restricted_pickle._Ignored)
    write_state_dict(tmp_path / "ok.pth", {"w": np.arange(3.0)})
    np.testing.assert_array_equal(read_state_dict(tmp_path / "ok.pth")["w"], np.arange(3.0))


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x80\x02K\x01r\xff\xff\xff\x7f.", "memo index 2147483647"),  # would zero-fill ~16 GB
        (b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"x.", "malformed pickle"),  # BINBYTES8
        (b"\x80\x02\x8b" + struct.pack("<i", 1 << 30) + b"x.", "malformed pickle"),  # LONG4
        (b"\x80\x02(" * 3, "malformed pickle"),
    ],
)
def test_allocation_bombs_refused_cheaply(tmp_path: Path, data: bytes, message: str) -> None:
    as_torch_zip(tmp_path / "bomb.pth", data)
    with pytest.raises(CheckpointError, match=message):
        read_state_dict(tmp_path / "bomb.pth")


def test_deep_nesting_is_an_error(tmp_path: Path) -> None:
    data = b"\x80\x02" + b"]" * 100_000 + b"a" * 99_999 + b"."
    as_torch_zip(tmp_path / "deep.pth", data)
    with pytest.raises(CheckpointError, match="deep.pth: "):
        read_state_dict(tmp_path / "deep.pth")


def test_pickle_in_other_extensions_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    data, _ = payloads(marker)["os.system reduce p2"]
    for name in ("evil.safetensors", "evil.npz"):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError) as e:
            read_state_dict(tmp_path / name)
        assert not isinstance(e.value, UnsafeCheckpointError)
    # an npz whose member is a pickled object array
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.array([Reduce(os.system, f"touch {marker}")], dtype=object))
    with zipfile.ZipFile(tmp_path / "obj.npz", "w") as zf:
        zf.writestr("w.npy", buf.getvalue())
    with pytest.raises(CheckpointError, match="object array"):
        read_state_dict(tmp_path / "obj.npz")
    assert not marker.exists()


LEGACY_ONE_TENSOR = (
    # magic, protocol 1001, sys_info, {'a': tensor of 2 floats on storage '1'}, ['1'], storage
    pickle.dumps(LEGACY_MAGIC, 2) + pickle.dumps(1001, 2)
    + pickle.dumps({"protocol_version": 1001, "little_endian": True}, 2)
    + b"\x80\x02}(X\x01\x00\x00\x00actorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage"
    b"ctorch\nFloatStorage\nX\x01\x00\x00\x001X\x03\x00\x00\x00cpuK\x02NtQK\x00K\x02\x85K\x01\x85"
    b"\x89ccollections\nOrderedDict\n)RtRu."
    + pickle.dumps(["1"], 2) + struct.pack("<q", 2) + np.array([1.5, -2], np.float32).tobytes()
)  # fmt: skip


def test_reading_and_writing_import_no_framework(tmp_path: Path) -> None:
    """In a fresh interpreter, reading every format (and writing) imports neither torch nor
    safetensors."""
    sd = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(2, np.float16)}
    files = []
    for ext in ("npz", "safetensors", "pth"):
        write_state_dict(tmp_path / f"w.{ext}", sd)
        files.append(tmp_path / f"w.{ext}")
    (tmp_path / "legacy.pt").write_bytes(LEGACY_ONE_TENSOR)
    files.append(tmp_path / "legacy.pt")
    np.testing.assert_array_equal(read_state_dict(tmp_path / "legacy.pt")["a"], [1.5, -2])
    if importlib.util.find_spec("torch") is not None:  # a real torch file too (parent only)
        import torch

        torch.save({"state_dict": {"w": torch.ones(2)}}, tmp_path / "real.pth")
        files.append(tmp_path / "real.pth")
    code = (
        "import sys, numpy as np\n"
        "from parcnetv2.reference.checkpoint import read_state_dict, write_state_dict, convert\n"
        "for p in sys.argv[2:]:\n"
        "    sd = read_state_dict(p)\n"
        "    assert sd and all(isinstance(v, np.ndarray) for v in sd.values()), p\n"
        "    for ext in ('npz', 'safetensors', 'pth'):\n"
        "        convert(p, sys.argv[1] + '/out.' + ext)\n"
        "bad = [m for m in ('torch', 'safetensors') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('clean')\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path), *map(str, files)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean"
