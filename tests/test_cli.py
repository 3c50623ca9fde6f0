"""The ``parcnetv2`` command line: outputs, and one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from parcnetv2 import reference as R
from parcnetv2.spec import get_variant


@pytest.mark.parametrize("variant", ["parcnetv2_xt", "parcnetv2_base"])
def test_params_prints_the_exact_count(cli, variant):
    code, out, _ = cli("params", variant)
    assert code == 0
    assert f"{get_variant(variant).params:,} parameters" in out
    assert f"{get_variant(variant).gmacs_224:.3f} GMACs" in out


def test_params_detail_lists_stages(cli):
    code, out, _ = cli("params", "parcnetv2_tiny", "--detail")
    assert code == 0
    assert "stages.3 token_mixer.dwconv1 " in out
    assert "total" in out


def test_run_with_random_weights_writes_logits(cli, tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 3, 40, 36))
    np.save(tmp_path / "x.npy", x)
    code, out, _ = cli(
        "run",
        "--variant",
        "parcnetv2_xt",
        "--random-seed",
        "4",
        "--input",
        str(tmp_path / "x.npy"),
        "--output",
        str(tmp_path / "y.npy"),
    )
    assert code == 0, out
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (2, 1000) and y.dtype == np.float64
    assert np.array_equal(y, R.create("parcnetv2_xt", seed=4)(x))
    code, _, _ = cli(
        "run",
        "--variant",
        "parcnetv2_xt",
        "--random-seed",
        "4",
        "--input",
        str(tmp_path / "x.npy"),
        "--output",
        str(tmp_path / "y32.npy"),
        "--dtype",
        "float32",
    )
    assert code == 0 and np.load(tmp_path / "y32.npy").dtype == np.float32


def test_run_default_input_prints_top5(cli):
    code, out, _ = cli("run", "--variant", "parcnetv2_xt", "--random-seed", "0")
    assert code == 0
    assert out.startswith("image 0: top-5 logits")


@pytest.mark.parametrize(
    "array,fragments",
    [
        (np.zeros((3, 32, 32)), ["NCHW", "(3, 32, 32)"]),
        (np.zeros((1, 1, 32, 32)), ["NCHW", "(1, 1, 32, 32)"]),
        (np.zeros((1, 3, 32, 32), dtype=np.int16), ["int16", "--dtype"]),
    ],
)
def test_run_rejects_bad_inputs(cli, tmp_path, array, fragments, assert_usage_error):
    np.save(tmp_path / "bad.npy", array)
    code, _, err = cli("run", "--variant", "parcnetv2_xt", "--random-seed", "0", "--input", str(tmp_path / "bad.npy"))
    assert_usage_error(code, err, *fragments)


@pytest.mark.parametrize(
    "argv,fragments",
    [
        (["params", "parcnetv2_huge"], ["unknown variant 'parcnetv2_huge'", "parcnetv2_tiny"]),
        (["run", "--variant", "nope", "--random-seed", "0"], ["unknown variant 'nope'"]),
        (
            ["run", "--variant", "parcnetv2_xt", "--random-seed", "0", "--input", "missing.npy"],
            ["not found", "missing.npy"],
        ),
        (["run", "--variant", "parcnetv2_xt", "--weights", "missing.pth"], ["missing.pth"]),
        (["run", "--variant", "parcnetv2_xt"], ["--weights", "--random-seed"]),
        (["convert", "missing.pth", "out.npz"], ["missing.pth"]),
        (["frobnicate"], ["invalid choice"]),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(cli, argv, fragments, assert_usage_error):
    code, _, err = cli(*argv)
    assert_usage_error(code, err, *fragments)


def test_console_script_reports_without_traceback(tmp_path):
    """The installed entry point, in a subprocess: exit code 2 and a single stderr line."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "parcnetv2",
            "run",
            "--variant",
            "parcnetv2_xt",
            "--random-seed",
            "0",
            "--input",
            str(tmp_path / "none.npy"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
