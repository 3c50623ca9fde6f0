"""Hostile and careless input (issue 10; spec clauses 1.4, 13.5 and 15.6).

Each case builds its input in tmp_path (nothing binary is committed) and runs the weights reader,
``parcnetv2.engine.load`` or the command line in a child process under an address-space and a CPU
limit (``limited_child.py``), then asserts the exit code, one clear line on stderr (no traceback,
no object repr, no advice to raise Python's integer digit limit), the child's peak memory against
clause 13.5's bound (the baseline of the same command on a small valid input, plus twice the bytes
returned, plus the fixed allowance) and its CPU time against the stated allowance. On the code
before issue 10 every case here fails: by memory, time, a hang, a traceback or a wrong message.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hostile_files import (  # tests/, on the test path (pyproject.toml)
    COSTLY_PICKLES,
    MIB,
    Member,
    global_op,
    largest_admitted,
    legacy_head,
    member,
    npy_header,
    state_dict_pickle,
    text_op,
    torch_zip,
    with_storage,
    zeros_compressed,
    zip_bytes,
)

from parcnetv2 import reference
from parcnetv2.errors import CheckpointError
from parcnetv2.reference.architecture import Config
from parcnetv2.reference.checkpoint import limits, read_state_dict, write_state_dict
from parcnetv2.reference.initialization import random_state_dict
from parcnetv2.spec.tolerance import assert_relative

HELPER = Path(__file__).with_name("limited_child.py")
ZEROS = 256 * MIB  # a scaled-down "GiB of zeros": refused the same way, and quicker to build
ADDRESS_SPACE = 4 << 30  # far above every bound below: the assertions, not the limit, decide
CPU_SECONDS = 60
WALL_TIMEOUT = 60.0
# A refusal must come fast: the child's CPU time beyond its baseline run stays within clause
# 13.5's fixed time allowance plus its rate per byte of file.
TIME_ALLOWANCE_S = limits.TIME_ALLOWANCE_S
TIME_PER_BYTE_S = limits.TIME_PER_BYTE_S
MEMORY_ALLOWANCE_MIB = limits.MEMORY_ALLOWANCE >> 20
MEMORY_MULTIPLE = limits.MEMORY_MULTIPLE

READ = """
import sys
from parcnetv2.errors import CheckpointError
from parcnetv2.reference.checkpoint import read_state_dict
try:
    sd = read_state_dict(sys.argv[1])
except CheckpointError as e:
    print(e, file=sys.stderr)
    raise SystemExit(2)
print(sum(v.nbytes for v in sd.values()))
"""
ENGINE = """
import sys
from parcnetv2 import engine
from parcnetv2.errors import ParcnetError
try:
    model = engine.load(sys.argv[1])
except ParcnetError as e:
    print(e, file=sys.stderr)
    raise SystemExit(2)
print(model.num_classes)
"""
OBJECT_REPR = ("object at 0x", " object>", "<class ")


@dataclass
class Outcome:
    code: int
    timed_out: bool
    cpu_s: float
    peak_mib: float
    wall_s: float
    stdout: str
    stderr: str


def run_limited(argv: list[str], cwd: Path, timeout: float = WALL_TIMEOUT) -> Outcome:
    """``argv`` in a child under the limits above (see limited_child.py)."""
    spec = {
        "argv": argv,
        "cwd": str(cwd),
        "stdout": str(cwd / ".child_out"),
        "stderr": str(cwd / ".child_err"),
        "address_space": ADDRESS_SPACE,
        "cpu_seconds": CPU_SECONDS,
        "timeout": timeout,
    }
    done = subprocess.run(
        [sys.executable, str(HELPER), json.dumps(spec)], capture_output=True, text=True, timeout=timeout + 30
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    read = lambda p: Path(p).read_text(errors="replace")  # noqa: E731
    return Outcome(**report, stdout=read(spec["stdout"]), stderr=read(spec["stderr"]))


def reader(path: Path) -> list[str]:
    return [sys.executable, "-c", READ, str(path)]


def engine_loader(path: Path) -> list[str]:
    return [sys.executable, "-c", ENGINE, str(path)]


def cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "parcnetv2", *map(str, args)]


_BASELINES: dict[str, Outcome] = {}


def baseline(key: str, argv: list[str], cwd: Path) -> Outcome:
    """The same kind of command on a small valid input (measured once per session)."""
    if key not in _BASELINES:
        outcome = run_limited(argv, cwd)
        assert outcome.code == 0, outcome.stderr
        _BASELINES[key] = outcome
    return _BASELINES[key]


def assert_refused(outcome: Outcome, base: Outcome, *fragments: str, file_bytes: int = 0, returned: int = 0) -> None:
    """Exit code 2, one clear line naming ``fragments``, memory and time within clause 13.5."""
    assert not outcome.timed_out, f"still running after {WALL_TIMEOUT} s (blocked or too slow)"
    lines = outcome.stderr.strip().splitlines()
    assert outcome.code == 2 and len(lines) == 1, (outcome.code, outcome.stderr[-3000:])
    line = lines[0]
    assert "Traceback" not in outcome.stderr and "set_int_max_str_digits" not in line, line
    assert not any(r in line for r in OBJECT_REPR), line
    for fragment in fragments:
        assert fragment in line, line
    assert_bounded(outcome, base, file_bytes, returned)


def assert_bounded(outcome: Outcome, base: Outcome, file_bytes: int, returned: int = 0) -> None:
    memory = base.peak_mib + MEMORY_MULTIPLE * returned / MIB + MEMORY_ALLOWANCE_MIB
    assert outcome.peak_mib <= memory, f"peak {outcome.peak_mib:.0f} MiB > bound {memory:.0f} MiB"
    cpu = base.cpu_s + TIME_ALLOWANCE_S + TIME_PER_BYTE_S * file_bytes
    assert outcome.cpu_s <= cpu, f"CPU {outcome.cpu_s:.2f} s > bound {cpu:.2f} s"


# Pickles that create one object per opcode or two: 8 MiB of each would make gigabytes.
BOMB_BYTES = 8 * MIB
# fmt: off
BOMBS = {
    "set": b"\x80\x02" + b"\x8f" * BOMB_BYTES + b".",  # EMPTY_SET
    "dict": b"\x80\x02" + b"}" * BOMB_BYTES + b".",  # EMPTY_DICT
    "list": b"\x80\x02" + b"]" * BOMB_BYTES + b".",  # EMPTY_LIST
    "ordered_dict_calls": b"\x80\x02" + global_op("collections", "OrderedDict") + b"q\x00"
    + b"h\x00)R" * (BOMB_BYTES // 4) + b".",  # OrderedDict() again and again
    "one_tuple_per_int": b"\x80\x02" + b"M\x01\x01\x85" * (BOMB_BYTES // 4) + b".",  # (257,) each
    "strings": b"\x80\x02" + b"\x8c\x01a" * (BOMB_BYTES // 3) + b".",  # 'a' each (one object)
    "dup": b"\x80\x02]" + b"2" * BOMB_BYTES + b".",  # the same list pushed 8 Mi times
    "marks": b"\x80\x02" + b"(" * BOMB_BYTES + b".",
}
# fmt: on


def hostile_weights(kind: str, tmp: Path) -> tuple[Path, tuple[str, ...]]:
    """(a hostile weights file built in ``tmp``, fragments its error must name)."""
    if kind.startswith("bomb_"):  # object-creation bombs: a torch zip with an 8 MiB data.pkl deflated to 8 KB
        path = tmp / "bomb.pth"
        path.write_bytes(torch_zip(member("archive/data.pkl", BOMBS[kind[5:]], zipfile.ZIP_DEFLATED)))
        return path, ("bomb.pth", "pickle would create more than 64 MiB of objects")
    if kind == "bzip2_bomb_pth":  # the 191-byte file: the same pickle, bzip2-compressed
        path = tmp / "b.pth"
        path.write_bytes(torch_zip(member("archive/data.pkl", BOMBS["set"], zipfile.ZIP_BZIP2)))
        return path, ("b.pth", "compressed with bzip2")
    if kind == "legacy_bomb":  # 8 MiB legacy file: magic, protocol, sys_info, then the bomb
        path = tmp / "legacy.pt"
        path.write_bytes(legacy_head() + BOMBS["set"])
        return path, ("legacy.pt", "pickle would create more than")
    if kind == "plain_pickle_bomb":  # 8 MiB plain pickle: its first pickle is the magic-number slot
        path = tmp / "plain.pt"
        path.write_bytes(BOMBS["set"])
        return path, ("plain.pt", "pickle would create more than")
    if kind.startswith("bzip2_storage"):  # zeros compressed to a few KB, declared in full or as 16 bytes
        numel = ZEROS // 4 if kind.endswith("full") else 4
        stream = zeros_compressed(zipfile.ZIP_BZIP2, ZEROS)
        storage = Member("archive/data/0", stream, zipfile.ZIP_BZIP2, 0, numel * 4)
        size = b"(J" + struct.pack("<i", numel) + b"t"
        path = tmp / "z.pth"
        path.write_bytes(with_storage(state_dict_pickle(size, numel=numel), storage))
        return path, ("z.pth", "compressed with bzip2")
    if kind == "bzip2_npz":  # a 1 KB .npz whose member inflates to the zeros
        head = npy_header((ZEROS // 4,))
        stream = zeros_compressed(zipfile.ZIP_BZIP2, ZEROS, head)
        path = tmp / "z.npz"
        path.write_bytes(zip_bytes([Member("w.npy", stream, zipfile.ZIP_BZIP2, 0, len(head) + ZEROS)]))
        return path, ("z.npz", "compressed with bzip2")
    if kind == "huge_int_size":  # the size (4,) written as a 2 MiB LONG4 integer
        digits = b"\x04" + bytes(2 * MIB - 1)
        path = tmp / "i.pth"
        path.write_bytes(with_storage(state_dict_pickle(b"(\x8b" + struct.pack("<i", len(digits)) + digits + b"t")))
        return path, ("i.pth", "an integer of 2097152 bytes")
    if kind == "huge_int_text":  # the stride as a protocol-0 INT of 2 Mi digits
        path = tmp / "t.pth"
        path.write_bytes(with_storage(state_dict_pickle(stride=b"(I" + b"1" * (2 * MIB) + b"\nt")))
        return path, ("t.pth", "not a number of at most 78 characters")
    if kind == "huge_int_safetensors":
        header = b'{"w":{"dtype":"F32","shape":[' + b"7" * (2 * MIB) + b'],"data_offsets":[0,4]}}'
        path = tmp / "s.safetensors"
        path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
        return path, ("s.safetensors", "a number of 2097152 digits")
    if kind == "huge_int_npy_header":
        path = tmp / "h.npz"
        path.write_bytes(zip_bytes([member("w.npy", npy_header("(" + "9" * 9000 + ",)"))]))
        return path, ("h.npz", "more than 78 digits")
    if kind == "fifo":
        path = tmp / "x.pth"
        os.mkfifo(path)
        return path, ("x.pth", "FIFO")
    if kind == "dev_zero":
        path = tmp / "zero.pth"
        path.symlink_to("/dev/zero")
        return path, ("zero.pth", "character device")
    if kind == "empty_zip":  # end-of-central-directory only, named .pth
        path = tmp / "empty.pth"
        path.write_bytes(zip_bytes([]))
        return path, ("empty.pth", "empty zip archive")
    if kind == "json_bomb":  # 12 MiB safetensors header of empty lists
        header = b'{"a":[' + b"[]," * (4 * MIB) + b"[]]}"
        path = tmp / "j.safetensors"
        path.write_bytes(struct.pack("<Q", len(header)) + header)
        return path, ("j.safetensors", "would build about")
    raise AssertionError(kind)


WEIGHTS_CASES = [f"bomb_{k}" for k in BOMBS] + [
    "bzip2_bomb_pth",
    "legacy_bomb",
    "plain_pickle_bomb",
    "bzip2_storage_full",
    "bzip2_storage_16_bytes",
    "bzip2_npz",
    "huge_int_size",
    "huge_int_text",
    "huge_int_safetensors",
    "huge_int_npy_header",
    "fifo",
    "dev_zero",
    "empty_zip",
    "json_bomb",
]


def small_weights(tmp: Path) -> Path:
    """A valid .pth of a small custom model (7 classes): the baseline runs read it."""
    path = tmp / "small.pth"
    if not path.exists():
        config = Config(depths=(1, 1, 1, 1), dims=(8, 12, 16, 20), global_kernel_sizes=(111, 55, 27, 13),
                        num_classes=7)  # fmt: skip
        write_state_dict(path, random_state_dict(config, 3, np.float32))
    return path


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile_shared")


def file_size(path: Path) -> int:
    st = os.stat(path)
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


# ---------------------------------------------------------------------------------------------
# weights files (clause 13.5): the reader and engine.load


@pytest.mark.parametrize("kind", WEIGHTS_CASES)
def test_hostile_weights_file_is_refused_within_bounds(tmp_path: Path, shared: Path, kind: str) -> None:
    path, fragments = hostile_weights(kind, tmp_path)
    base = baseline("read", reader(small_weights(shared)), shared)
    outcome = run_limited(reader(path), tmp_path)
    assert_refused(outcome, base, *fragments, file_bytes=file_size(path))


@pytest.mark.parametrize("kind", ["bomb_set", "legacy_bomb", "huge_int_size", "fifo", "bzip2_npz"])
def test_engine_load_refuses_within_bounds(tmp_path: Path, shared: Path, kind: str) -> None:
    path, fragments = hostile_weights(kind, tmp_path)
    base = baseline("engine", engine_loader(small_weights(shared)), shared)
    outcome = run_limited(engine_loader(path), tmp_path)
    assert_refused(outcome, base, *fragments, file_bytes=file_size(path))


def test_pickles_just_under_the_budget_stay_within_the_allowance(tmp_path: Path, shared: Path) -> None:
    """The scan's estimate bounds what unpickling really allocates: the largest accepted pickle
    of the most expensive objects per byte (sets of distinct ints, strings of the widest
    characters) stays within the fixed allowance."""
    base = baseline("read", reader(small_weights(shared)), shared)
    for name in ("set of distinct ints", "list of 4-byte-char strings"):
        largest = largest_admitted(COSTLY_PICKLES[name], limit=1 << 22)
        path = tmp_path / f"{name.replace(' ', '_')}.pth"
        path.write_bytes(torch_zip(member("archive/data.pkl", largest, zipfile.ZIP_DEFLATED)))
        outcome = run_limited(reader(path), tmp_path)
        assert_refused(outcome, base, "not a dict of tensors", file_bytes=file_size(path))


# ---------------------------------------------------------------------------------------------
# the command line (clause 15.6): one line on stderr, exit code 2, bounded


def tall_png(tmp: Path, height: int) -> Path:
    from PIL import Image

    path = tmp / f"tall{height}.png"
    Image.new("RGB", (1, height)).save(path, optimize=True)
    return path


@pytest.fixture(scope="module")
def cli_files(shared: Path) -> Path:
    """Small weights (7 classes), a valid image and input, for the baselines and the cases."""
    from PIL import Image

    config = Config(depths=(1, 1, 1, 1), dims=(8, 12, 16, 20), global_kernel_sizes=(111, 55, 27, 13), num_classes=7)
    np.savez(shared / "w.npz", **random_state_dict(config, 3, np.float32))
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(shared / "a.png")
    np.save(shared / "x.npy", np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32))
    return shared


def run_baseline(files: Path) -> Outcome:
    argv = cli("run", "--variant", "parcnetv2_xt", "--random-seed", 0, "--input", files / "x.npy",
               "--output", files / "base_out.npy")  # fmt: skip
    return baseline("cli run", argv, files)


def predict_baseline(files: Path) -> Outcome:
    return baseline("cli predict", cli("predict", "--weights", files / "w.npz", files / "a.png"), files)


RUN = ("run", "--variant", "parcnetv2_xt", "--random-seed", "0")


def cli_case(kind: str, tmp: Path, files: Path) -> tuple[list[str], tuple[str, ...], str]:
    """(argv, fragments of the error line, which baseline) of a command-line case."""
    if kind == "npz_as_input":
        np.savez(tmp / "arrays.npz", x=np.zeros((1, 3, 8, 8), np.float32))
        return cli(*RUN, "--input", tmp / "arrays.npz"), ("zip archive", "single .npy"), "run"
    if kind == "npy_declaring_120_GB":  # 192 bytes whose header declares (1, 3, 100000, 100000) float32
        (tmp / "big.npy").write_bytes(npy_header((1, 3, 100000, 100000)) + bytes(64))
        return cli(*RUN, "--input", tmp / "big.npy"), ("(1, 3, 100000, 100000)", "holds 64 data bytes"), "run"
    if kind == "strings_with_dtype":
        np.save(tmp / "s.npy", np.array([["a", "b"]]))
        return cli(*RUN, "--input", tmp / "s.npy", "--dtype", "float32"), ("dtype <U1",), "run"
    if kind == "negative_seed":
        return cli("run", "--variant", "parcnetv2_xt", "--random-seed", "-1"), ("--random-seed", "from 0 to"), "run"
    if kind == "threads_2_pow_31":
        argv = cli("predict", "--weights", files / "w.npz", "--threads", 2**31, files / "a.png")
        return argv, ("--threads", "from 1 to 1024"), "predict"
    if kind in ("png_1x20000", "png_1x5000"):
        png = tall_png(tmp, int(kind.split("x")[1]))
        return cli("predict", "--weights", files / "w.npz", png), ("pixels", "over the limit"), "predict"
    if kind == "output_dev_full":
        return cli(*RUN, "--input", files / "x.npy", "--output", "/dev/full"), ("/dev/full", "No space left"), "run"
    if kind == "output_directory":
        return cli(*RUN, "--input", files / "x.npy", "--output", tmp), (str(tmp), "Is a directory"), "run"
    if kind == "bench_no_frameworks":
        return cli("bench", "--variant", "parcnetv2_xt", "--frameworks", ""), ("--frameworks",), "run"
    if kind == "bench_negative_warmup":
        argv = cli("bench", "--variant", "parcnetv2_xt", "--warmup", -3, "--frameworks", "engine", "--runs", 1,
                   "--resolution", 32)  # fmt: skip
        return argv, ("--warmup", "from 0 to"), "run"
    if kind == "nan_input":
        x = np.zeros((1, 3, 32, 32), np.float32)
        x[0, 1, 2, 3], x[0, 2, 0, 0] = np.nan, -np.inf
        np.save(tmp / "nan.npy", x)
        return cli(*RUN, "--input", tmp / "nan.npy"), ("2 non-finite values", "index (0, 1, 2, 3)"), "run"
    if kind == "nan_weights":  # finite input, a NaN bias: the logits are NaN
        weights = dict(np.load(files / "w.npz"))
        weights["head.bias"] = np.full_like(weights["head.bias"], np.nan)
        np.savez(tmp / "nan_w.npz", **weights)
        return cli("predict", "--weights", tmp / "nan_w.npz", files / "a.png"), ("non-finite", "weights"), "predict"
    if kind.startswith("fifo_"):
        names = {"fifo_input": "in.npy", "fifo_weights": "w.pth", "fifo_image": "i.png", "fifo_labels": "l.txt"}
        fifo = tmp / names[kind]
        os.mkfifo(fifo)
        argv = {
            "fifo_input": cli(*RUN, "--input", fifo),
            "fifo_weights": cli("run", "--variant", "parcnetv2_xt", "--weights", fifo),
            "fifo_image": cli("predict", "--weights", files / "w.npz", fifo),
            "fifo_labels": cli("predict", "--weights", files / "w.npz", "--labels", fifo, files / "a.png"),
        }[kind]
        return argv, ("FIFO",), "predict"
    raise AssertionError(kind)


CLI_CASES = [
    "npz_as_input",
    "npy_declaring_120_GB",
    "strings_with_dtype",
    "negative_seed",
    "threads_2_pow_31",
    "png_1x20000",
    "png_1x5000",
    "output_dev_full",
    "output_directory",
    "bench_no_frameworks",
    "bench_negative_warmup",
    "nan_input",
    "nan_weights",
    "fifo_input",
    "fifo_weights",
    "fifo_image",
    "fifo_labels",
]


@pytest.mark.parametrize("kind", CLI_CASES)
def test_command_line_refuses_in_one_line(tmp_path: Path, cli_files: Path, kind: str) -> None:
    if kind == "output_dev_full" and not (os.path.exists("/dev/full") and stat.S_ISCHR(os.stat("/dev/full").st_mode)):
        pytest.skip("no /dev/full here")
    argv, fragments, which = cli_case(kind, tmp_path, cli_files)
    base = run_baseline(cli_files) if which == "run" else predict_baseline(cli_files)
    outcome = run_limited(argv, tmp_path)
    assert_refused(outcome, base, "parcnetv2 ", *fragments)


def test_empty_batch_gives_empty_logits(tmp_path: Path, cli_files: Path) -> None:
    """N = 0: the reference, like the engine, returns (0, num_classes)."""
    np.save(tmp_path / "empty.npy", np.zeros((0, 3, 32, 32), np.float32))
    outcome = run_limited(cli(*RUN, "--input", tmp_path / "empty.npy", "--output", tmp_path / "y.npy"), tmp_path)
    assert outcome.code == 0, outcome.stderr
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (0, 1000) and y.dtype == np.float32
    assert_bounded(outcome, run_baseline(cli_files), 0)


def test_output_is_written_where_reported(tmp_path: Path, cli_files: Path) -> None:
    """``--output outnoext`` writes and reports exactly that path (np.save would add .npy)."""
    outcome = run_limited(cli(*RUN, "--input", cli_files / "x.npy", "--output", "outnoext"), tmp_path)
    assert outcome.code == 0, outcome.stderr
    assert outcome.stdout.strip().endswith("to outnoext")
    assert (tmp_path / "outnoext").is_file() and not (tmp_path / "outnoext.npy").exists()
    logits = np.load(tmp_path / "outnoext")
    x = np.load(cli_files / "x.npy").astype(np.float64)
    assert logits.shape == (1, 1000) and logits.dtype == np.float32
    assert_relative(logits, reference.create("parcnetv2_xt", seed=0)(x), dtype=np.float32, op="run --output")
    assert_bounded(outcome, run_baseline(cli_files), 0)


# ---------------------------------------------------------------------------------------------
# every subcommand's arguments: negative, zero, huge, not numbers, empty, missing, directories


AUDIT = [
    (["params", "parcnetv2_xt", "--resolution", "0"], "--resolution"),
    (["params", "parcnetv2_xt", "--resolution", "-5"], "--resolution"),
    (["params", "parcnetv2_xt", "--resolution", "99999999"], "--resolution"),
    (["params", "parcnetv2_xt", "--resolution", "nan"], "--resolution"),
    (["params", "parcnetv2_xt", "--num-classes", "0"], "--num-classes"),
    (["params", "parcnetv2_xt", "--num-classes", str(10**12)], "--num-classes"),
    (["run", "--variant", "parcnetv2_xt", "--random-seed", "0", "--num-classes", "0"], "--num-classes"),
    (["run", "--variant", "parcnetv2_xt", "--random-seed", "0", "--num-classes", str(10**9)], "--num-classes"),
    (["run", "--variant", "parcnetv2_xt", "--random-seed", "nan"], "--random-seed"),
    (["run", "--variant", "parcnetv2_xt", "--random-seed", str(2**64)], "--random-seed"),
    (["run", "--variant", "parcnetv2_xt", "--random-seed", "0", "--input", "{dir}"], "{dir}"),
    (["run", "--variant", "parcnetv2_xt", "--weights", "{wdir}"], "is a directory"),
    (["convert", "{wdir}", "{tmp}/out.npz"], "is a directory"),
    (["convert", "{w}", "{odir}"], "cannot write"),
    (["predict", "--weights", "{w}", "--top", "0", "{png}"], "--top"),
    (["predict", "--weights", "{w}", "--threads", "0", "{png}"], "--threads"),
    (["predict", "--weights", "{w}", "--threads", "-1", "{png}"], "--threads"),
    (["predict", "--weights", "{w}", "--threads", "nan", "{png}"], "--threads"),
    (["predict", "--weights", "{w}", "{dir}"], "{dir}"),
    (["predict", "--weights", "{w}", "--labels", "{dir}", "{png}"], "{dir}"),
    (["predict", "--weights", "{wdir}", "{png}"], "is a directory"),
    (["bench", "--variant", "parcnetv2_xt", "--batch", "100000"], "--batch"),
    (["bench", "--variant", "parcnetv2_xt", "--runs", "0"], "--runs"),
    (["bench", "--variant", "parcnetv2_xt", "--resolution", "2"], "--resolution"),
    (["bench", "--variant", "parcnetv2_xt", "--resolution", "100000"], "--resolution"),
    (["bench", "--variant", "parcnetv2_xt", "--frameworks", ","], "--frameworks"),
    (["bench", "--variant", "parcnetv2_xt", "--threads", "0"], "--threads"),
    (["plot-kernels", "{w}", "--stage", "-1", "--block", "0", "--out", "{tmp}/f.png"], "--stage -1"),
    (["plot-kernels", "{w}", "--stage", "0", "--block", "-1", "--out", "{tmp}/f.png"], "--block -1"),
    (["plot-kernels", "{w}", "--stage", "0", "--block", "0", "--channels", "99999", "--out", "{tmp}/f"], "--channels"),
    (["plot-kernels", "{w}", "--stage", "0", "--block", "0", "--out", "{tmp}/no/such/dir/f.png"], "f.png"),
]


@pytest.mark.parametrize("argv, fragment", AUDIT, ids=[" ".join(a[:3]) + f" {i}" for i, (a, _) in enumerate(AUDIT)])
def test_argument_audit(cli, assert_usage_error, cli_files: Path, tmp_path: Path, argv: list[str], fragment: str
                        ) -> None:  # fmt: skip
    names = {"dir": tmp_path / "adir", "wdir": tmp_path / "wdir.pth", "odir": tmp_path / "odir.npz"}
    for directory in names.values():
        directory.mkdir()
    names.update(tmp=tmp_path, w=cli_files / "w.npz", png=cli_files / "a.png")
    code, _, err = cli(*(a.format(**names) for a in argv))
    assert_usage_error(code, err, fragment.format(**names))
    assert not any(r in err for r in OBJECT_REPR), err


def test_plot_without_extension_is_written_where_reported(cli, cli_files: Path, tmp_path: Path) -> None:
    code, out, err = cli("plot-kernels", cli_files / "w.npz", "--stage", "0", "--block", "0", "--out", tmp_path / "fig")
    assert code == 0, err
    assert out.startswith(f"wrote {tmp_path / 'fig'}:")
    assert (tmp_path / "fig").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not (tmp_path / "fig.png").exists()


# ---------------------------------------------------------------------------------------------
# messages: one line, no object reprs, whatever the pickle holds (in-process: they are quick)


# fmt: off
REPR_BAITS = {
    # a persistent id whose storage type is another allowed global
    "storage type": b"\x80\x02}(" + text_op("w") + b"(" + text_op("storage") + global_op("collections", "OrderedDict")
    + text_op("0") + text_op("cpu") + b"K\x04tQu.",
    # a rebuild whose size is a tensor-record stand-in
    "size": state_dict_pickle(size=b"(" + global_op("torch", "FloatStorage") + b"t"),
    # a rebuild whose storage argument is a dtype stand-in
    "storage arg": b"\x80\x02}(" + text_op("w") + global_op("torch._utils", "_rebuild_tensor_v2") + b"("
    + global_op("torch", "float32") + b"K\x00(t(t\x89" + global_op("collections", "OrderedDict") + b")RtRu.",
    # a Parameter of a non-tensor
    "parameter": b"\x80\x02}(" + text_op("w") + global_op("torch._utils", "_rebuild_parameter") + b"("
    + global_op("torch", "Tensor") + b"\x89" + global_op("collections", "OrderedDict") + b")RtRu.",
    # a persistent id that is not a tuple
    "pid": b"\x80\x02}(" + text_op("w") + global_op("torch", "UntypedStorage") + b"Qu.",
    # metadata holding globals
    "metadata": state_dict_pickle().replace(b"\x89" + global_op("collections", "OrderedDict") + b")RtR",
                                            b"\x89" + global_op("collections", "OrderedDict") + b")R}("
                                            + global_op("torch", "Tensor") + global_op("torch", "Tensor") + b"utR"),
}
# fmt: on


@pytest.mark.parametrize("bait", REPR_BAITS)
def test_error_messages_show_no_object_reprs(tmp_path: Path, bait: str) -> None:
    path = tmp_path / "bait.pth"
    path.write_bytes(with_storage(REPR_BAITS[bait]))
    with pytest.raises(CheckpointError) as e:
        read_state_dict(path)
    message = str(e.value)
    assert "\n" not in message and "\x1b" not in message and len(message) < 1000, message
    assert not any(r in message for r in OBJECT_REPR) and " at 0x" not in message, message


# ---------------------------------------------------------------------------------------------
# N = 0 and non-finite values in the Python APIs (clause 1.4)


def test_reference_ops_and_model_take_an_empty_batch() -> None:
    model = reference.create("parcnetv2_xt", seed=0, depths=(1, 1, 1, 1))
    d = model.config.dims
    for dtype in (np.float32, np.float64):
        x = np.zeros((0, 3, 32, 24), dtype)
        for m in (model, model.with_reparameterized_mixers()):
            y = m(x)
            assert y.shape == (0, 1000) and y.dtype == dtype
        shapes = {"NCHW": lambda c: (0, c, 8, 6), "NHWC": lambda c: (0, 8, 6, c), "NC": lambda c: (0, c)}
        for name in model.component_names():
            shape = shapes[model.component_info(name).layout](_input_channels(name, d))
            out = model.component(name)(np.zeros(shape, dtype))
            assert out.shape[0] == 0 and out.dtype == dtype, name


def _input_channels(name: str, dims: tuple[int, ...]) -> int:
    """The channels of a component's input, from its official name."""
    parts = name.split(".")
    if parts[0] == "downsample_layers":
        i = int(parts[1])
        if i == 0:
            return dims[0] if name.endswith("post_norm") else 3
        return dims[i - 1]
    if parts[0] in ("norm", "head"):
        return dims[-1]
    c = dims[int(parts[1])]
    if name.endswith(("mlp.fc2", "mlp.act")):
        return 5 * c // 2
    return c


def test_engine_and_reference_agree_on_an_empty_batch() -> None:
    from parcnetv2 import engine

    model = reference.create("parcnetv2_xt", seed=0, depths=(1, 1, 1, 1), num_classes=5)
    x = np.zeros((0, 3, 32, 32), np.float32)
    assert engine.from_model(model)(x).shape == model(x).shape == (0, 5)


def test_python_apis_compute_on_non_finite_values() -> None:
    """Clause 1.4: no error; the results of the affected images are unspecified (here NaN), the
    other images' results are unaffected."""
    from parcnetv2 import engine

    model = reference.create("parcnetv2_xt", seed=0, depths=(1, 1, 1, 1), num_classes=5)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    bad = x.copy()
    bad[1, 0, 3, 4] = np.nan
    with np.errstate(all="ignore"):
        for run in (model, engine.from_model(model)):
            y = run(bad)
            assert y.shape == (2, 5) and not np.isfinite(y[1]).any()
            np.testing.assert_array_equal(y[0], run(x)[0])
