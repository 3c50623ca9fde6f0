"""Golden test vectors (spec clause 12): the format round-trips, the Python binding passes every
vector, and the C self-check program built by the Makefile passes them and rejects a corrupt file."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import parcnetv2.cext as cext
from parcnetv2.cext import golden
from parcnetv2.spec.tolerance import assert_close, elementwise_bound

CEXT_DIR = os.path.dirname(os.path.abspath(cext.__file__))


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    out = tmp_path_factory.mktemp("golden")
    paths = golden.generate(str(out))
    return out, paths


def test_format_roundtrip(vectors):
    _, paths = vectors
    assert len(paths) >= 30
    original = dict(golden.cases())
    for path in paths:
        case = golden.read_case(path)
        name = os.path.basename(path)[3:-5]
        want = original[name]
        assert (case.op, case.layout, case.path, case.dims, case.n) == (
            want.op,
            want.layout,
            want.path,
            want.dims,
            want.n,
        )
        assert case.arrays.keys() == want.arrays.keys()
        for key, arr in want.arrays.items():
            assert case.arrays[key].dtype == arr.dtype.newbyteorder("<") and np.array_equal(case.arrays[key], arr), key
    with open(paths[0], "rb") as fh:
        head = fh.read(16)
    assert head[:8] == b"PCNGOLD\x00" and head[8:12] == (1).to_bytes(4, "little") and head[12:16] == bytes([4, 3, 2, 1])


def test_python_binding_passes_golden_vectors(vectors):
    _, paths = vectors
    for path in paths:
        case = golden.read_case(path)
        a, d = case.arrays, case.dims
        if case.op == "dwconv2d":
            y = cext.dwconv2d(a["x"], a["weight"], a.get("bias"), padding=(d[6], d[7]), layout=case.layout)
        elif case.op == "oversized_conv":
            y = cext.oversized_conv(a["x"], a["k_h"], a["k_w"], layout=case.layout)
        elif case.op == "parc_spatial":
            y = cext.parc_spatial(a["x"], a["k_h"], a["k_w"], a["k7"], layout=case.layout, path=case.path)
        else:
            y = cext.reparameterize(a["k_h"], a["k_w"], a["k7"])
        bound = elementwise_bound(a["magnitude"], np.float32, case.n)
        assert_close(y, a["expected"], bound, op=case.op, params=dict(file=os.path.basename(path)), dtype=np.float32)


def _toolchain():
    return shutil.which("make") and (shutil.which("cc") or shutil.which("gcc"))


@pytest.mark.skipif(not _toolchain(), reason="needs make and a C compiler")
def test_c_selfcheck_program(vectors, tmp_path):
    out, _ = vectors
    build = tmp_path / "build"
    run = subprocess.run(
        ["make", "-s", "-C", CEXT_DIR, f"BUILD={build}", "selfcheck", f"VECTORS={out}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert re.search(r"(\d+) runs, 0 failures", run.stdout)
    # a corrupt file is rejected with exit status 2
    bad = tmp_path / "bad.pcng"
    data = bytearray(Path(sorted(glob.glob(str(out / "*.pcng")))[0]).read_bytes())
    data[0:8] = b"NOTGOLD\x00"
    bad.write_bytes(bytes(data))
    run = subprocess.run([str(build / "pcn_selfcheck"), str(bad)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "bad magic" in run.stderr
    # a wrong expected value is reported as a failure (exit status 1)
    case = golden.read_case(sorted(glob.glob(str(out / "*.pcng")))[0])
    case.arrays = dict(case.arrays)
    exp = case.arrays["expected"].copy()
    exp.flat[3] += 1e-3 * (abs(exp.flat[3]) + 1)
    case.arrays["expected"] = exp
    wrong = tmp_path / "wrong.pcng"
    golden.write_case(str(wrong), case)
    run = subprocess.run([str(build / "pcn_selfcheck"), str(wrong)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "FAIL" in run.stdout
