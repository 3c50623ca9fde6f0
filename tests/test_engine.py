"""The inference engine (spec clauses 15, 16): a thin binding of the C model, checked against the
float64 reference (whole-model bound of clause 11.3), for determinism (threads 1, 2, 3, 8; eight
Python threads on four engines; bit for bit), for the reference's messages on bad weights, for
bad arguments (InputError, never OverflowError or ValueError), for holding the weights once, and
for logits equal bit for bit to the standalone program ``pcn_predict``'s.

The golden answer is the reference in float64 on the same weights (``random_state_dict``: not
init-like, every parameter matters). Shapes, then dtypes, then values, with the float32
whole-model tolerance of ``parcnetv2.spec.tolerance``. Shape legend: N, C, H, W, K.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from parcnetv2 import cext, engine, reference
from parcnetv2.engine.engine import PLAN_CACHE_SIZE
from parcnetv2.errors import CheckpointError, InputError, WeightsError
from parcnetv2.reference.architecture import Config
from parcnetv2.reference.checkpoint import write_state_dict
from parcnetv2.reference.initialization import random_state_dict
from parcnetv2.spec.tolerance import assert_relative

SMALL = dict(depths=(1, 1, 2, 1), dims=(8, 12, 16, 20), global_kernel_sizes=(13, 7, 5, 3), num_classes=11)
WIDE = dict(depths=(1, 0, 2, 1), dims=(32, 48, 64, 96), global_kernel_sizes=(21, 11, 7, 5), num_classes=30)
CEXT = Path(cext.__file__).resolve().parent


def _model(interpolate=False, seed=0, **overrides) -> reference.Model:
    config = Config(**{**SMALL, **overrides}, interpolate=interpolate)
    return reference.from_state_dict(random_state_dict(config, seed, np.float32), interpolate=interpolate)


def _images(n: int, h: int, w: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, h, w)).astype(np.float32)


def _check(model: reference.Model, x: np.ndarray, threads: int | None = 1, **params) -> np.ndarray:
    got = engine.from_model(model, threads=threads)(x)
    want = model(x.astype(np.float64))
    assert_relative(got, want, dtype=np.float32, op="engine vs reference", params={"shape": x.shape, **params})
    return got


# ------------------------------------------------------------------------- agreement (clause 15.3)


def test_xt_224_batch1():
    """parcnetv2_xt at 224x224, batch 1, two threads (the official geometry)."""
    config = Config.from_variant("parcnetv2_xt")
    model = reference.from_state_dict(random_state_dict(config, 7, np.float32), "parcnetv2_xt")
    _check(model, _images(1, 224, 224), threads=2, variant="parcnetv2_xt")


@pytest.mark.parametrize("n,h,w", [(1, 3, 3), (2, 5, 7), (1, 17, 31), (3, 32, 32), (2, 45, 19), (1, 4, 100)])
def test_small_config_resolutions(n, h, w):
    """Any resolution the reference allows (H, W >= 3), odd and non-square, batch > 1."""
    _check(_model(), _images(n, h, w), n=n, h=h, w=w)


@pytest.mark.parametrize("interpolate", [True, 5])
@pytest.mark.parametrize("h,w", [(37, 29), (8, 64)])
def test_interpolate_modes(interpolate, h, w):
    """The oversized-conv modes of clause 5.2 (kernels resized to 2H-1, 2W-1 per input) and 5.3."""
    _check(_model(interpolate), _images(2, h, w), interpolate=interpolate)


def test_kernel_longer_than_the_map_and_empty_stage():
    """K > 2H-1 (cropped to the taps that reach the map) and a stage without blocks."""
    _check(_model(global_kernel_sizes=(41, 31, 15, 9), depths=(1, 0, 1, 1)), _images(1, 23, 27))


# ------------------------------------------------------------------------- determinism (clause 16.4)


def test_thread_counts_give_identical_logits():
    """threads 1, 2, 3 and 8 (more than the CPUs here): the same bits."""
    model, x = _model(**WIDE), _images(2, 48, 40)
    results = [engine.from_model(model, threads=t)(x) for t in (1, 2, 3, 8)]
    assert all(r.shape == (2, 30) and r.dtype == np.float32 for r in results)
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


def test_eight_python_threads_on_four_engines():
    """Eight Python threads share four Engines (two threads each, calls of one shape serialised per
    plan, different engines concurrently), two shapes interleaved: every result equals the
    single-threaded one bit for bit."""
    model = _model(**WIDE)
    inputs = [_images(2, 36, 36, seed=3), _images(1, 29, 41, seed=4)]
    want = [engine.from_model(model, threads=1)(x) for x in inputs]
    engines = [engine.from_model(model, threads=2) for _ in range(4)]
    jobs = [(i % 4, i % 2) for i in range(48)]
    with cf.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda job: engines[job[0]](inputs[job[1]]), jobs))
    for (_, k), got in zip(jobs, results):
        np.testing.assert_array_equal(got, want[k])


def test_batch_position_does_not_change_an_image():
    model, x = _model(**WIDE), _images(3, 33, 27)
    e = engine.from_model(model, threads=2)
    together = e(x)
    for i in range(3):
        np.testing.assert_array_equal(e(x[i : i + 1])[0], together[i])


# ------------------------------------------------------------------------- plans, dtypes, memory


def test_plans_are_reused_across_shapes():
    """A plan per input shape; going back to a shape reuses its buffers and repeats the result."""
    e = engine.from_model(_model(), threads=1)
    a, b = _images(1, 24, 24), _images(2, 30, 18)
    first = e(a)
    e(b)
    plans = e._model._plans
    plan_a = plans[a.shape]
    np.testing.assert_array_equal(e(a), first)
    assert plans[a.shape] is plan_a and set(e.info()["plans"]) == {"1x3x24x24", "2x3x30x18"}
    for k in range(PLAN_CACHE_SIZE):
        e(_images(1, 10 + k, 12))
    assert a.shape not in plans and len(plans) == PLAN_CACHE_SIZE
    np.testing.assert_array_equal(e(a), first)


def test_results_are_new_arrays_and_dtypes_convert():
    """The logits are a fresh array each call; float64 and float16 inputs are converted to float32."""
    e = engine.from_model(_model(), threads=1)
    x = _images(2, 20, 20)
    y = e(x)
    assert y.shape == (2, 11) and y.dtype == np.float32
    e(_images(2, 20, 20, seed=5))
    np.testing.assert_array_equal(y, e(x))
    np.testing.assert_array_equal(e(x.astype(np.float64)), y)
    np.testing.assert_array_equal(e(x.astype(np.float16)), e(x.astype(np.float16).astype(np.float32)))
    assert e(np.zeros((0, 3, 9, 9), np.float32)).shape == (0, 11)


def test_load_holds_the_weights_once(tmp_path):
    """``load`` reads the file through the reference and gives each array up once C has packed it;
    ``from_state_dict(release=True)`` empties the caller's dict the same way."""
    model = _model()
    path = tmp_path / "w.npz"
    np.savez(path, **model.state_dict())
    x = _images(1, 16, 16)
    want = engine.from_model(model, threads=1)(x)
    np.testing.assert_array_equal(engine.load(path, threads=1)(x), want)
    state = {k: np.array(v) for k, v in model.state_dict().items()}
    e = engine.Engine.from_state_dict(state, threads=1, release=True)
    assert state == {}
    np.testing.assert_array_equal(e(x), want)
    kept = dict(model.state_dict())
    engine.Engine.from_state_dict(kept, threads=1)
    assert set(kept) == set(model.state_dict())


def test_no_scipy_blas_and_one_route_into_c():
    """The engine runs without SciPy's BLAS (the reference's checks still import scipy.special) and
    reaches C only through the public binding."""
    source = "".join(p.read_text() for p in Path(engine.__file__).parent.glob("*.py"))
    for private in ("_kernels", "cext._lib", "cext._ffi", "import _lib", "import _ffi", "scipy"):
        assert private not in source, f"parcnetv2.engine uses {private}"
    code = (
        "import sys, numpy as np; from parcnetv2 import engine, reference;"
        "m = reference.create('parcnetv2_xt', num_classes=5, seed=0, depths=(1, 1, 1, 1));"
        "engine.from_model(m, threads=1)(np.zeros((1, 3, 32, 32), np.float32));"
        "print(sorted(k for k in sys.modules if k.startswith(('scipy.linalg', 'threadpoolctl'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", f"SciPy's BLAS or thread control loaded: {done.stdout}"


# ------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros((1, 3, 8, 8), np.int32), "floating-point"),
        (np.zeros((1, 4, 8, 8), np.float32), r"NCHW \(N, 3, H, W\)"),
        (np.zeros((3, 8, 8), np.float32), "NCHW"),
        (np.zeros((0, 4, 8, 8), np.float32), "NCHW"),
        (np.zeros((1, 3, 2, 8), np.float32), "at least 3x3"),
    ],
)
def test_bad_inputs(x, message):
    with pytest.raises(InputError, match=message):
        engine.from_model(_model(), threads=1)(x)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2", 2**31, 2**64, float("nan"), cext.MAX_THREADS + 1])
def test_bad_threads_are_refused_when_the_engine_is_made(threads, tmp_path):
    """threads: None or an int in 1..1024 (the command line's range); refused at once, never an
    OverflowError at the first call."""
    model = _model()
    with pytest.raises(InputError, match="threads"):
        engine.from_model(model, threads=threads)
    path = tmp_path / "w.npz"
    np.savez(path, **model.state_dict())
    with pytest.raises(InputError, match="threads"):
        engine.load(path, threads=threads)
    assert engine.from_model(model, threads=np.int32(2)).threads == 2


def test_bad_weights_have_the_references_messages(tmp_path):
    model = _model()
    with pytest.raises(InputError, match="reference.Model"):
        engine.from_model(model.state_dict())
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError) as got:
        engine.load(bad)
    with pytest.raises(CheckpointError) as want:
        reference.load(bad)
    assert str(got.value) == str(want.value)
    path = tmp_path / "w.npz"
    np.savez(path, **model.state_dict())
    with pytest.raises(WeightsError, match="parcnetv2_tiny"):
        engine.load(path, variant="parcnetv2_tiny")
    state = model.state_dict()
    for broken in (
        {k: v for k, v in state.items() if k != "norm.bias"},
        {**state, "head.weight": np.zeros((11, 19), np.float32)},
        {**state, "norm.bias": np.zeros(20, np.int64)},
    ):
        with pytest.raises(WeightsError) as got:
            engine.Engine.from_state_dict(broken)
        with pytest.raises(WeightsError) as want:
            reference.from_state_dict(broken)
        assert str(got.value) == str(want.value) and "\n" not in str(got.value)


def test_oversized_kernel_beyond_the_c_library_is_refused():
    """interpolate=True on a stage map over 128 rows needs kernels over 255 taps: a clear error,
    raised when the plan is built (before any computation)."""
    e = engine.from_model(_model(True), threads=1)
    with pytest.raises(InputError, match="at most 255"):
        e(np.zeros((1, 3, 1030, 16), np.float32))


# ------------------------------------------------------------------------- the standalone program


@pytest.fixture(scope="module")
def pcn_predict() -> Path:
    """cext/build/pcn_predict, built by make when it is missing or older than the sources."""
    if shutil.which("make") is None or shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no make or C compiler to build pcn_predict")
    done = subprocess.run(["make", "-C", str(CEXT), "build/pcn_predict"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return CEXT / "build" / "pcn_predict"


@pytest.mark.parametrize("threads", [1, 2])
def test_pcn_predict_logits_equal_the_engines(pcn_predict, tmp_path, threads):
    """Same weights (.safetensors), same raw float32 input, same ISA: the same logits, bit for bit."""
    model = _model(**WIDE)
    weights = tmp_path / "w.safetensors"
    write_state_dict(weights, model.state_dict())
    x = _images(2, 40, 36, seed=9)
    (tmp_path / "x.raw").write_bytes(x.astype("<f4").tobytes())
    args = [pcn_predict, weights, tmp_path / "x.raw", "--shape", "2,3,40,36", "--threads", str(threads)]
    done = subprocess.run([*map(str, args), "--logits", str(tmp_path / "y.raw")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    got = np.fromfile(tmp_path / "y.raw", "<f4").reshape(2, 30)
    np.testing.assert_array_equal(got, engine.load(weights, threads=threads)(x))


def test_pcn_predict_image_limits_are_the_pythons(pcn_predict, tmp_path):
    """Clause 15.6: a PPM over the decoded-pixel limit, and one whose resize would be over the
    resized-pixel limit (the 1 x 20000 image of issue 10), are refused in one line, exit code 2."""
    weights = tmp_path / "w.safetensors"
    write_state_dict(weights, _model().state_dict())
    side = int(np.sqrt(cext.IMAGE_MAX_PIXELS)) + 1
    cases = {
        "huge.ppm": (f"P6\n{side} {side}\n255\n".encode(), f"over the limit of {cext.IMAGE_MAX_PIXELS}"),
        "thin.ppm": (b"P6\n1 20000\n255\n" + bytes(60000), f"over the limit of {cext.IMAGE_MAX_RESIZED_PIXELS}"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        done = subprocess.run([str(pcn_predict), str(weights), str(tmp_path / name)], capture_output=True, text=True)
        assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1, done.stderr
