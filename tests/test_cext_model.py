"""The C model (spec clause 16) through ``parcnetv2.cext.model``: agreement with the float64
reference (clause 11.3), every oversized-kernel mode, determinism across threads, callers and
batch positions, the weights sources and their errors, the PPM preprocessing against Pillow, and
the C API hygiene (declarations generated from the headers, one ISA list, the architecture
constants of the C loader equal to spec/variants.toml).
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import re

import numpy as np
import pytest

from parcnetv2 import cext, reference
from parcnetv2.cext import _ffi, _lib
from parcnetv2.cext import cdef as cext_cdef
from parcnetv2.cext import model as cmodel
from parcnetv2.errors import CheckpointError, InputError, WeightsError
from parcnetv2.reference.architecture import Config
from parcnetv2.reference.checkpoint import write_state_dict
from parcnetv2.reference.initialization import random_state_dict
from parcnetv2.spec import architecture_defaults
from parcnetv2.spec.tolerance import assert_relative

SMALL = dict(depths=(1, 1, 2, 1), dims=(8, 12, 16, 20), global_kernel_sizes=(13, 7, 5, 3), num_classes=11)
WIDE = dict(depths=(1, 0, 2, 1), dims=(32, 48, 64, 96), global_kernel_sizes=(21, 11, 7, 5), num_classes=30)


def _weights(interpolate=False, seed=0, **overrides) -> tuple[Config, dict[str, np.ndarray]]:
    config = Config(**{**SMALL, **overrides}, interpolate=interpolate)
    return config, random_state_dict(config, seed, np.float32)


def _images(n, h, w, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, h, w)).astype(np.float32)


def _check(weights, x, interpolate=False, threads=1, **params) -> np.ndarray:
    got = cmodel.from_arrays(weights, interpolate=interpolate)(x, threads=threads)
    want = reference.from_state_dict(weights, interpolate=interpolate)(x.astype(np.float64))
    assert_relative(got, want, dtype=np.float32, op="C model vs reference", params={"shape": x.shape, **params})
    return got


# ------------------------------------------------------------------------- agreement


@pytest.mark.parametrize("n,h,w", [(1, 3, 3), (2, 5, 7), (1, 17, 31), (3, 32, 32), (2, 45, 19), (1, 4, 100)])
def test_small_config_resolutions(n, h, w):
    _check(_weights()[1], _images(n, h, w), n=n, h=h, w=w)


@pytest.mark.parametrize("interpolate", [True, 5, 1])
@pytest.mark.parametrize("h,w", [(37, 29), (8, 64)])
def test_oversized_modes(interpolate, h, w):
    """Clause 5.2 (kernels resized to 2H-1, 2W-1 per map) and 5.3 (to S)."""
    _, weights = _weights(interpolate)
    _check(weights, _images(2, h, w), interpolate=interpolate, mode=interpolate)


def test_wide_config_full_vectors_and_empty_stage():
    """Channel counts that fill whole SIMD vectors, a stage without blocks, K > 2H - 1 cropped."""
    _check(_weights(**WIDE)[1], _images(2, 40, 36), dims=WIDE["dims"])


@pytest.mark.parametrize("isa", cext.available_isas())
def test_every_isa(isa):
    _, weights = _weights(**WIDE)
    x = _images(1, 33, 27)
    got = cmodel.from_arrays(weights, isa=isa)(x, threads=2)
    want = reference.from_state_dict(weights)(x.astype(np.float64))
    assert_relative(got, want, dtype=np.float32, op="C model vs reference", params={"isa": isa})


@pytest.mark.parametrize("path", ["separable", "dense"])
def test_forced_spatial_paths(path):
    _, weights = _weights()
    x = _images(2, 29, 35)
    got = cmodel.from_arrays(weights).plan(x.shape, path=path).run(x, 1)
    want = reference.from_state_dict(weights)(x.astype(np.float64))
    assert_relative(got, want, dtype=np.float32, op="C model vs reference", params={"path": path})


def test_parcnetv2_xt_224():
    config = Config.from_variant("parcnetv2_xt")
    weights = random_state_dict(config, 3, np.float32)
    _check(weights, _images(1, 224, 224), threads=2, variant="parcnetv2_xt")


# ------------------------------------------------------------------------- determinism


def test_threads_and_batch_position_do_not_change_the_result():
    _, weights = _weights(**WIDE)
    model = cmodel.from_arrays(weights)
    x = _images(3, 40, 24)
    plan = model.plan(x.shape, max_threads=8)
    runs = [plan.run(x, t) for t in (1, 2, 3, 8)]
    for other in runs[1:]:
        np.testing.assert_array_equal(runs[0], other)
    for i in range(3):  # each image alone
        np.testing.assert_array_equal(model(x[i : i + 1], threads=2)[0], runs[0][i])


def test_eight_python_threads_on_four_models():
    _, weights = _weights(**WIDE)
    x = _images(2, 36, 36)
    want = cmodel.from_arrays(weights)(x, threads=1)
    models = [cmodel.from_arrays(weights, threads=2) for _ in range(4)]
    with cf.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: models[i % 4](x), range(32)))
    for got in results:
        np.testing.assert_array_equal(got, want)


def test_empty_batch_and_dtype_conversion():
    _, weights = _weights()
    model = cmodel.from_arrays(weights)
    assert model(np.zeros((0, 3, 9, 9), np.float64)).shape == (0, 11)
    x = _images(1, 9, 9)
    np.testing.assert_array_equal(model(x.astype(np.float64)), model(x))


# ------------------------------------------------------------------------- weights sources


def test_file_bytes_and_arrays_agree(tmp_path):
    _, weights = _weights()
    path = tmp_path / "w.safetensors"
    write_state_dict(path, weights)
    x = _images(2, 19, 23)
    a = cmodel.load(path)(x)
    b = cmodel.load_bytes(path.read_bytes())(x)
    c = cmodel.from_arrays(weights)(x)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    info = cmodel.load(path).info()
    assert info["depths"] == SMALL["depths"] and info["dims"] == SMALL["dims"]
    assert info["kernel_sizes"] == SMALL["global_kernel_sizes"] and info["num_classes"] == 11
    assert info["parameters"] == sum(v.size for v in weights.values())


def test_float16_and_float64_weights(tmp_path):
    """F16 weights convert exactly; F64 weights round to the float32 the reference uses."""
    _, weights = _weights()
    x = _images(1, 15, 15)
    half = {k: v.astype(np.float16) for k, v in weights.items()}
    as32 = {k: v.astype(np.float32) for k, v in half.items()}
    np.testing.assert_array_equal(cmodel.from_arrays(half)(x), cmodel.from_arrays(as32)(x))
    path = tmp_path / "w64.safetensors"
    write_state_dict(path, {k: v.astype(np.float64) for k, v in weights.items()})
    np.testing.assert_array_equal(cmodel.load(path)(x), cmodel.from_arrays(weights)(x))


def test_module_prefix_is_stripped():
    _, weights = _weights()
    x = _images(1, 11, 11)
    prefixed = {f"module.{k}": v for k, v in weights.items()}
    np.testing.assert_array_equal(cmodel.from_arrays(prefixed)(x), cmodel.from_arrays(weights)(x))


def test_weights_errors_name_what_is_wrong(tmp_path):
    _, weights = _weights()
    missing = {k: v for k, v in weights.items() if k != "norm.bias"}
    with pytest.raises(WeightsError, match=r"missing keys \(1\): norm.bias"):
        cmodel.from_arrays(missing)
    with pytest.raises(WeightsError, match=r"unexpected keys \(1\): extra"):
        cmodel.from_arrays({**weights, "extra": np.zeros(3, np.float32)})
    bad = dict(weights)
    bad["head.weight"] = np.zeros((11, 19), np.float32)
    with pytest.raises(WeightsError, match=r"head.weight has shape \(11, 19\), expected \(11, 20\)"):
        cmodel.from_arrays(bad)
    with pytest.raises(WeightsError, match="floating point"):
        cmodel.from_arrays({**weights, "norm.bias": np.zeros(20, np.int32)})
    path = tmp_path / "w.safetensors"
    write_state_dict(path, weights)
    data = bytearray(path.read_bytes())
    with pytest.raises(CheckpointError, match="safetensors"):
        cmodel.load_bytes(bytes(data[: len(data) - 1]))
    data[8] = ord("[")
    with pytest.raises(CheckpointError, match="not a JSON object"):
        cmodel.load_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="cannot open"):
        cmodel.load(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="not a regular file"):
        cmodel.load(tmp_path)


def test_argument_errors():
    _, weights = _weights()
    model = cmodel.from_arrays(weights)
    for bad in (0, -1, 2**31, 2.5, True, "2"):
        with pytest.raises(InputError, match="threads"):
            model(_images(1, 9, 9), threads=bad)
    with pytest.raises(InputError, match="interpolate"):
        cmodel.from_arrays(weights, interpolate=-3)
    with pytest.raises(InputError, match="odd"):
        cmodel.from_arrays(weights, interpolate=4)
    with pytest.raises(InputError, match="isa"):
        cmodel.from_arrays(weights, isa=["avx2"])
    with pytest.raises(InputError, match="at least 3x3"):
        model(_images(1, 2, 9))
    with pytest.raises(InputError, match=r"\(N, 3, H, W\)"):
        model(np.zeros((1, 4, 9, 9), np.float32))
    with pytest.raises(InputError, match="floating-point"):
        model(np.zeros((1, 3, 9, 9), np.int64))
    with pytest.raises(InputError, match="at most 255"):
        cmodel.from_arrays(weights, interpolate=True)(np.zeros((1, 3, 600, 9), np.float32))
    plan = model.plan((1, 3, 9, 9), max_threads=2)
    with pytest.raises(InputError, match="max_threads"):
        plan.run(_images(1, 9, 9), threads=3)
    with pytest.raises(InputError, match="path"):
        model.plan((1, 3, 9, 9), path="fast")


# ------------------------------------------------------------------------- images


def _c_preprocess(data: bytes) -> np.ndarray:
    w, h, px, err = _ffi.new("size_t *"), _ffi.new("size_t *"), _ffi.new("unsigned char **"), _ffi.new("pcn_error *")
    if _lib.pcn_ppm_parse(data, len(data), w, h, px, err) != _lib.PCN_OK:
        raise InputError(_ffi.string(err.message).decode())
    out = np.empty((3, 224, 224), np.float32)
    st = _lib.pcn_image_preprocess(px[0], w[0], h[0], 256, 224, _ffi.cast("float *", _ffi.from_buffer(out)), err)
    assert st == _lib.PCN_OK, _ffi.string(err.message).decode()
    return out


@pytest.mark.parametrize("w,h", [(256, 256), (300, 200), (200, 301), (224, 224), (1000, 17), (5, 1000), (1, 1)])
def test_ppm_preprocessing_equals_pillow(tmp_path, w, h):
    """The C preprocessing is bit-identical to the engine's (Pillow bicubic, NumPy float32)."""
    pil = pytest.importorskip("PIL.Image")
    from parcnetv2.engine.preprocess import load_image

    rng = np.random.default_rng(w * 7 + h)
    rgb = (np.cumsum(rng.integers(-9, 10, (h, w, 3)), axis=1) % 256).astype(np.uint8)
    path = os.path.join(tmp_path, "x.ppm")
    pil.fromarray(rgb).save(path)
    with open(path, "rb") as fh:
        data = fh.read()
    np.testing.assert_array_equal(_c_preprocess(data), load_image(path))


@pytest.mark.parametrize(
    "data,message",
    [
        (b"P3\n2 2\n255\n", "P6"),
        (b"P6\n2 2\n65535\n" + bytes(24), "maxval"),
        (b"P6\n2 2\n255\n" + bytes(11), "raster"),
        (b"P6\n0 2\n255\n", "sides"),
        (b"P6\n2 x\n255\n", "malformed"),
    ],
)
def test_ppm_errors(data, message):
    with pytest.raises(InputError, match=message):
        _c_preprocess(data)


# ------------------------------------------------------------------------- C API hygiene


def test_cffi_declarations_cover_every_header_function():
    """The declarations are generated from the public headers: every function they declare is
    callable, and there is no hand-written copy left to drift."""
    declared = cext_cdef.declared_functions()
    assert "pcn_oversized_workspace" in declared and "pcn_plan_run" in declared and "pcn_model_from_reader" in declared
    positional = {"pcn_dwconv2d", "pcn_oversized_conv", "pcn_parc_spatial", "pcn_im2col", "pcn_gemm"}
    assert not positional & set(declared), "the positional forms of library 1.0 are gone (clause 16.5)"
    missing = [name for name in declared if not hasattr(_lib, name)]
    assert not missing, f"declared in the headers but not in the binding: {missing}"
    with open(os.path.join(os.path.dirname(cext.__file__), "build_cffi.py"), encoding="utf-8") as fh:
        build = fh.read()
    assert "pcn_status pcn_" not in build, "build_cffi.py holds a hand copy of declarations"


def test_isa_list_comes_from_c():
    names = [_ffi.string(_lib.pcn_isa_name(v)).decode() for v in range(_lib.PCN_ISA_COUNT)]
    assert set(cext._ISAS) - {None} == set(names)
    assert set(cext.available_isas()) <= set(names) - {"auto"}


def test_c_architecture_constants_match_variants_toml():
    """The constants the C loader cannot read from weights files equal spec/variants.toml's."""
    with open(os.path.join(os.path.dirname(cext.__file__), "src", "pcn_model_internal.h"), encoding="utf-8") as fh:
        c = dict(re.findall(r"#define PCN_ARCH_(\w+)\s+([-\d.e]+)f?", fh.read()))
    d = architecture_defaults()
    assert int(c["IN_CHANS"]) == d["in_chans"]
    assert (int(c["STEM_KERNEL"]), int(c["STEM_STRIDE"]), int(c["STEM_PADDING"])) == tuple(
        d["stem"][k] for k in ("kernel_size", "stride", "padding")
    )
    assert (int(c["DOWN_KERNEL"]), int(c["DOWN_STRIDE"]), int(c["DOWN_PADDING"])) == tuple(
        d["downsample"][k] for k in ("kernel_size", "stride", "padding")
    )
    assert int(c["EXPANSION"]) == d["expansion_ratio"] and int(c["MLP_RATIO"]) == d["mlp_ratio"]
    assert int(c["LOCAL_KERNEL"]) == d["local_kernel_size"] and float(c["NORM_EPS"]) == d["norm_eps"]
    first = list(d["res_scale_stages"]).index(True)
    assert int(c["RES_SCALE_FIRST"]) == first and all(d["res_scale_stages"][first:])


# ------------------------------------------------------------------------- whole-model golden cases


def test_golden_model_cases_pass_through_the_binding(tmp_path):
    """The whole-model golden cases (clause 16.7) that pcn_selfcheck checks in C: the binding
    meets their tolerance too, and the manifest carries the policy's clause 11.3 value."""
    from parcnetv2.cext import golden
    from parcnetv2.spec.tolerance import relative_tolerance

    for manifest in golden.generate_models(str(tmp_path), names=("xt_64", "custom_interpolate_2x40x36")):
        case = golden.read_model_case(manifest)
        assert case["relative_tolerance"] == relative_tolerance(np.float32)
        got = cmodel.load(case["weights"], interpolate=case["interpolate"])(case["input"], threads=2)
        assert_relative(got, case["expected"], dtype=np.float32, op="golden model case", params={"case": manifest})
