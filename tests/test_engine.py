"""The inference engine against the NumPy reference (spec clause 15; whole-model bound of clause 11.3).

The engine computes in float32; the golden answer is the reference in float64 on the same
weights (``random_state_dict``: not init-like, every parameter matters). Shapes, then dtypes,
then values, with the float32 whole-model tolerance of ``parcnetv2.spec.tolerance``.
Shape legend: N, C, H, W, K.
"""

from __future__ import annotations

import numpy as np
import pytest

from parcnetv2 import engine, reference
from parcnetv2.engine.engine import PLAN_CACHE_SIZE
from parcnetv2.errors import CheckpointError, InputError, WeightsError
from parcnetv2.reference.architecture import Config
from parcnetv2.reference.initialization import random_state_dict
from parcnetv2.spec.tolerance import assert_relative

SMALL = dict(depths=(1, 1, 2, 1), dims=(8, 12, 16, 20), global_kernel_sizes=(13, 7, 5, 3), num_classes=11)


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


def test_tiny_224_batch1():
    """parcnetv2_tiny at 224x224, batch 1: the issue's configuration."""
    config = Config.from_variant("parcnetv2_tiny")
    model = reference.from_state_dict(random_state_dict(config, 7, np.float32), "parcnetv2_tiny")
    _check(model, _images(1, 224, 224), threads=2, variant="parcnetv2_tiny")


@pytest.mark.parametrize(
    "n,h,w",
    [(1, 3, 3), (2, 5, 7), (1, 17, 31), (3, 32, 32), (1, 64, 48), (2, 45, 19), (1, 4, 100)],
)
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


def test_threads_do_not_change_the_result():
    """One and two threads give the same logits (the C kernels split rows, never reductions)."""
    model, x = _model(), _images(2, 48, 40)
    one = engine.from_model(model, threads=1)(x)
    two = engine.from_model(model, threads=2)(x)
    assert one.shape == two.shape and one.dtype == two.dtype == np.float32
    np.testing.assert_array_equal(one, two)


def test_plans_are_reused_across_shapes():
    """A plan per input shape; going back to a shape reuses its buffers and repeats the result."""
    model = _model()
    e = engine.from_model(model, threads=1)
    a, b = _images(1, 24, 24), _images(2, 30, 18)
    first = e(a)
    e(b)
    plan_a = e._plans[a.shape]
    again = e(a)
    assert e._plans[a.shape] is plan_a
    np.testing.assert_array_equal(first, again)
    for k in range(PLAN_CACHE_SIZE):
        e(_images(1, 10 + k, 12))
    assert a.shape not in e._plans and len(e._plans) == PLAN_CACHE_SIZE
    np.testing.assert_array_equal(e(a), first)


def test_results_are_new_arrays_and_dtypes_convert():
    """The logits are a fresh array each call; float64 and float16 inputs are converted to float32."""
    model = _model()
    e = engine.from_model(model, threads=1)
    x = _images(2, 20, 20)
    y = e(x)
    assert y.shape == (2, 11) and y.dtype == np.float32
    e(_images(2, 20, 20, seed=5))
    np.testing.assert_array_equal(y, e(x))
    np.testing.assert_array_equal(e(x.astype(np.float64)), y)
    np.testing.assert_array_equal(e(x.astype(np.float16)), e(x.astype(np.float16).astype(np.float32)))
    assert e(np.zeros((0, 3, 9, 9), np.float32)).shape == (0, 11)


def test_load_matches_from_model(tmp_path):
    """``load`` reads the file through the reference and infers the architecture."""
    model = _model()
    path = tmp_path / "w.npz"
    np.savez(path, **model.state_dict())
    x = _images(1, 16, 16)
    np.testing.assert_array_equal(engine.load(path, threads=1)(x), engine.from_model(model, threads=1)(x))


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros((1, 3, 8, 8), np.int32), "floating-point"),
        (np.zeros((1, 4, 8, 8), np.float32), "NCHW"),
        (np.zeros((3, 8, 8), np.float32), "NCHW"),
        (np.zeros((1, 3, 2, 8), np.float32), "at least 3x3"),
    ],
)
def test_bad_inputs(x, message):
    with pytest.raises(InputError, match=message):
        engine.from_model(_model(), threads=1)(x)


def test_bad_arguments(tmp_path):
    model = _model()
    for threads in (0, -1, 1.5, True, "2"):
        with pytest.raises(InputError, match="threads"):
            engine.from_model(model, threads=threads)
    with pytest.raises(InputError, match="reference.Model"):
        engine.from_model(model.state_dict())
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError):
        engine.load(bad)
    path = tmp_path / "w.npz"
    np.savez(path, **model.state_dict())
    with pytest.raises(WeightsError):
        engine.load(path, variant="parcnetv2_tiny")


def test_oversized_kernel_beyond_the_c_library_is_refused():
    """interpolate=True on a stage map over 128 rows needs kernels over 255 taps: a clear error,
    raised when the plan is built (before any computation)."""
    e = engine.from_model(_model(True), threads=1)
    with pytest.raises(InputError, match="at most 255"):
        e(np.zeros((1, 3, 1030, 16), np.float32))
