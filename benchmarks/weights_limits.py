"""Measure the weights readers against spec clause 13.5: peak memory above the interpreter's own
(as a multiple of the bytes returned) and CPU time (per byte of file), each file read in a child
process (``tests/limited_child.py``) exactly as ``tests/test_hostile_input.py`` does.

    python benchmarks/weights_limits.py            # a Markdown table; about a minute

Rows: valid files of every format (64 MiB of float32; bfloat16; a stride-0 expansion; a deflated
.npz of zeros, the highest CPU time per file byte a valid file can ask for; the torch.save
training checkpoint of parcnetv2_base with AdamW state and EMA weights when torch is installed),
the files at the readers' limits (the largest pickles the object budget admits, of the costliest
objects per byte; a 16384-member .npz; a large safetensors header), and the hostile files of the
tests. Timing on a shared machine is noisy: the CPU times are ``ru_utime + ru_stime``.
"""

from __future__ import annotations

import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

import test_hostile_input as hostile  # noqa: E402
from hostile_files import COSTLY_PICKLES, MIB, largest_admitted, member, state_dict_pickle, torch_zip, with_storage  # noqa: E402

from parcnetv2.reference.checkpoint import write_state_dict  # noqa: E402


def valid_cases(tmp: Path) -> dict[str, tuple[Path, int]]:
    rng = np.random.default_rng(0)
    big = rng.standard_normal(16 * MIB).astype(np.float32)
    cases: dict[str, tuple[Path, int]] = {}
    for fmt in ("pth", "npz", "safetensors"):
        path = tmp / f"big.{fmt}"
        write_state_dict(path, {f"w{i}": big[i * MIB // 4 * 4 : (i + 1) * MIB // 4 * 4] for i in range(64)})
        cases[f"{fmt}, 64 tensors, 64 MiB"] = (path, big.nbytes)
    np.savez_compressed(tmp / "zeros.npz", w=np.zeros(16 * MIB, np.float32))
    cases["npz deflated zeros, 64 MiB"] = (tmp / "zeros.npz", 64 * MIB)
    storage = member("archive/data/0", big[:MIB].tobytes())
    expanded = state_dict_pickle(b"(K\x10J" + (1 << 20).to_bytes(4, "little") + b"t", b"(K\x00K\x01t", MIB)
    (tmp / "expand.pth").write_bytes(with_storage(expanded, storage))
    cases["pth stride-0, 4 MiB stored"] = (tmp / "expand.pth", 64 * MIB)
    try:
        import argparse

        import torch

        from parcnetv2.pytorch.model import build_model
    except ImportError:
        return cases
    torch.save({"w": torch.from_numpy(big).to(torch.bfloat16)}, tmp / "bf16.pth")
    cases["pth bfloat16 -> float32, 64 MiB"] = (tmp / "bf16.pth", big.nbytes)
    model = build_model("parcnetv2_base", init=False)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.zeros(1, 3, 32, 32)).sum().backward()
    optimizer.step()
    checkpoint = {"epoch": 3, "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                  "state_dict_ema": model.state_dict(), "args": argparse.Namespace(lr=0.1)}  # fmt: skip
    torch.save(checkpoint, tmp / "train.pth")
    cases["base training checkpoint"] = (tmp / "train.pth", sum(v.numel() * 4 for v in model.state_dict().values()))
    return cases


def limit_cases(tmp: Path) -> dict[str, tuple[Path, int]]:
    cases: dict[str, tuple[Path, int]] = {}
    for name, make in COSTLY_PICKLES.items():
        path = tmp / f"{name.replace(' ', '_')}.pth"
        path.write_bytes(torch_zip(member("archive/data.pkl", largest_admitted(make), zipfile.ZIP_DEFLATED)))
        cases[f"largest admitted pickle: {name}"] = (path, 0)
    import io

    npy = io.BytesIO()
    np.lib.format.write_array(npy, np.zeros(1, np.float32))
    members = [member(f"{i:0196d}.npy", npy.getvalue()) for i in range(16384)]
    (tmp / "members.npz").write_bytes(hostile.zip_bytes(members))
    cases["npz, 16384 members, 196-char names"] = (tmp / "members.npz", 16384 * 4)
    header = b'{"__metadata__":{' + b",".join(b'"%06d":"%s"' % (i, "\U0001f600".encode() * 60) for i in range(48000))
    header += b"}}"
    (tmp / "meta.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    cases["safetensors, 11.5 MiB header"] = (tmp / "meta.safetensors", 0)
    return cases


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        base = hostile.run_limited(hostile.reader(hostile.small_weights(tmp)), tmp)
        print(f"baseline (interpreter, NumPy, reader, small file): {base.peak_mib:.1f} MiB, {base.cpu_s:.2f} s CPU\n")
        columns = ["file", "bytes", "returned MiB", "peak above baseline MiB", "x returned", "CPU above baseline s",
                   "ns per file byte", "outcome"]  # fmt: skip
        print("| " + " | ".join(columns) + " |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        cases = {**valid_cases(tmp), **limit_cases(tmp)}
        for kind in hostile.WEIGHTS_CASES:
            case_dir = tmp / kind
            case_dir.mkdir()
            path, _ = hostile.hostile_weights(kind, case_dir)
            cases[f"hostile: {kind}"] = (path, 0)
        for label, (path, returned) in cases.items():
            outcome = hostile.run_limited(hostile.reader(path), path.parent)
            size = hostile.file_size(path)
            peak, cpu = outcome.peak_mib - base.peak_mib, max(0.0, outcome.cpu_s - base.cpu_s)
            multiple = f"{peak * MIB / returned:.2f}" if returned else "-"
            per_byte = f"{cpu / size * 1e9:.1f}" if size else "-"
            result = "read" if outcome.code == 0 else "refused" if outcome.code == 2 else f"exit {outcome.code}"
            row = [label, size, f"{returned / MIB:.1f}", f"{peak:.1f}", multiple, f"{cpu:.2f}", per_byte, result]
            print("| " + " | ".join(map(str, row)) + " |")


if __name__ == "__main__":
    main()
