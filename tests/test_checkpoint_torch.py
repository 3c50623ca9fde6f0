"""Interop of the weights-file I/O with real torch and safetensors, both directions
(spec clause 13, weights files). Each test skips when its library is not installed."""

from __future__ import annotations

import argparse
import collections
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parcnetv2.errors import CheckpointError, UnsafeCheckpointError
from parcnetv2.reference.checkpoint import convert, read_state_dict, write_state_dict


def torch_mod():
    return pytest.importorskip("torch")


def to_numpy(t) -> np.ndarray:
    """What read_state_dict should give for a torch tensor (bfloat16 -> float32)."""
    torch = torch_mod()
    t = t.detach().resolve_conj().resolve_neg()
    if t.dtype == torch.bfloat16:
        t = t.float()
    if t.dtype in (torch.uint16, torch.uint32, torch.uint64):
        return (
            t.contiguous()
            .view({torch.uint16: torch.int16, torch.uint32: torch.int32, torch.uint64: torch.int64}[t.dtype])
            .numpy()
            .view({torch.uint16: np.uint16, torch.uint32: np.uint32, torch.uint64: np.uint64}[t.dtype])
        )
    return t.numpy()


def assert_matches_torch(got: dict[str, np.ndarray], want: dict, ordered: bool = True) -> None:
    assert list(got) == list(want) if ordered else set(got) == set(want)
    for k, t in want.items():
        ref = to_numpy(t)
        assert got[k].shape == ref.shape, k
        assert got[k].dtype == ref.dtype, (k, got[k].dtype, ref.dtype)
        np.testing.assert_array_equal(got[k], ref, err_msg=k)


def small_model():
    torch = torch_mod()
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.Conv2d(8, 8, (7, 1), padding=(3, 0), groups=8, bias=False),  # (C, 1, K, 1)
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 4 * 4, 5),
    )


# ------------------------------------------------------------------------------------------
# torch -> ours


def test_model_state_dict(tmp_path: Path) -> None:
    torch = torch_mod()
    model = small_model()
    model(torch.randn(2, 3, 4, 4))  # updates BatchNorm running stats and num_batches_tracked
    torch.save(model.state_dict(), tmp_path / "m.pth")
    assert_matches_torch(read_state_dict(tmp_path / "m.pth"), model.state_dict())


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("protocol", [2, 4])
def test_views_and_shared_storages(tmp_path: Path, legacy: bool, protocol: int) -> None:
    torch = torch_mod()
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    sd = {
        "base": base,
        "transposed": base.t(),
        "offset_slice": base[1:, 2:7],
        "flat_window": base.view(-1)[5:17].view(3, 4),
        "step": base[::2, ::3],
        "expanded": torch.ones(3, 1).expand(3, 4),
        "channels_last": torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last),
        "other": torch.linspace(0, 1, 7, dtype=torch.float64),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
    }
    path = tmp_path / "v.pt"
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy, pickle_protocol=protocol)
    assert_matches_torch(read_state_dict(path), sd)


DTYPES = ["float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8",
          "uint16", "uint32", "uint64", "bool", "complex64", "complex128"]  # fmt: skip


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_all_torch_dtypes(tmp_path: Path, legacy: bool) -> None:
    torch = torch_mod()
    sd = {}
    for name in DTYPES:
        dt = getattr(torch, name)
        if legacy and name in ("uint16", "uint32", "uint64"):
            continue  # the legacy format has no storage class for them
        vals = torch.tensor([[0, 1, 2], [3, 250, 7]], dtype=torch.float64)
        if name == "bool":
            vals = vals > 1.5
        elif dt.is_complex:
            vals = vals + 0.5j
        elif dt.is_floating_point:
            vals = vals / 3 - 1
        sd[name] = vals.to(dt).t()  # transposed: a non-contiguous view
    torch.save(sd, tmp_path / "d.pt", _use_new_zipfile_serialization=not legacy)
    got = read_state_dict(tmp_path / "d.pt")
    assert_matches_torch(got, sd)
    if not legacy:
        assert got["bfloat16"].dtype == np.float32


def test_parameters_attributes_and_view_bits(tmp_path: Path) -> None:
    torch = torch_mod()
    p = torch.nn.Parameter(torch.randn(3, 2))
    p_attr = torch.nn.Parameter(torch.randn(2))
    p_attr.tag = "x"  # pickled through _rebuild_parameter_with_state
    t_attr = torch.randn(4)
    t_attr.note = 1  # pickled through _rebuild_from_type_v2
    sd = {"p": p, "p_attr": p_attr, "t_attr": t_attr,
          "neg": torch.tensor([1.0, -2.0])._neg_view(),
          "conj": torch.tensor([1 + 2j, 3 - 1j]).conj(),
          "grad": torch.randn(2, requires_grad=True)}  # fmt: skip
    torch.save(sd, tmp_path / "a.pt")
    assert_matches_torch(read_state_dict(tmp_path / "a.pt"), sd)


def test_training_checkpoints(tmp_path: Path) -> None:
    """timm (state_dict/state_dict_ema/args) and ConvNeXt (model/model_ema/optimizer/scaler)
    layouts, with DataParallel prefixes and a real optimizer state full of tensors."""
    torch = torch_mod()
    model = small_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 3, 4, 4)).sum().backward()
    opt.step()
    dp_sd = collections.OrderedDict(("module." + k, v) for k, v in model.state_dict().items())
    args = argparse.Namespace(model="parcnetv2_tiny", lr=1e-3, epochs=300, drop_path=0.1)
    timm = {"epoch": 12, "arch": "parcnetv2_tiny", "state_dict": dp_sd, "optimizer": opt.state_dict(),
            "version": 2, "args": args, "state_dict_ema": model.state_dict(), "metric": 81.3}  # fmt: skip
    torch.save(timm, tmp_path / "timm.pth.tar.pth")
    assert_matches_torch(read_state_dict(tmp_path / "timm.pth.tar.pth"), model.state_dict())
    convnext = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3,
                "scaler": {"scale": 65536.0, "growth_factor": 2.0}, "args": args,
                "model_ema": model.state_dict(), "max_accuracy": 80.1}  # fmt: skip
    torch.save(convnext, tmp_path / "convnext.pth")
    got = read_state_dict(tmp_path / "convnext.pth", key="model_ema")
    assert_matches_torch(got, model.state_dict())


def test_big_endian_real_file(tmp_path: Path) -> None:
    """A torch file re-recorded as big-endian (byteorder "big", byte-swapped storages)."""
    torch = torch_mod()
    base = torch.randn(5, 6)
    sd = {"a": base, "t": base.t(), "b": torch.randn(4)}
    torch.save(sd, tmp_path / "le.pt")
    with zipfile.ZipFile(tmp_path / "le.pt") as src, zipfile.ZipFile(tmp_path / "be.pt", "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in info.filename:
                data = np.frombuffer(data, "<f4").astype(">f4").tobytes()
            dst.writestr(info.filename, data)
    assert_matches_torch(read_state_dict(tmp_path / "be.pt"), sd)


def test_whole_model_and_torchscript_refused(tmp_path: Path) -> None:
    torch = torch_mod()
    model = small_model()
    torch.save(model, tmp_path / "whole.pt")
    with pytest.raises(UnsafeCheckpointError, match=r"whole.pt: refusing to load global 'torch\.nn\."):
        read_state_dict(tmp_path / "whole.pt")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "ts.pt")
    with pytest.raises(CheckpointError, match="TorchScript"):
        read_state_dict(tmp_path / "ts.pt")


# ------------------------------------------------------------------------------------------
# ours -> torch


def numpy_sd() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "w": rng.standard_normal((4, 3, 2, 2)).astype(np.float32),
        "t": rng.standard_normal((3, 5)).T,
        "h": rng.standard_normal(3).astype(np.float16),
        "i": np.arange(4, dtype=np.int64),
        "i32": np.array([-5, 6], np.int32),
        "u8": np.array([0, 255], np.uint8),
        "u16": np.array([1, 65535], np.uint16),
        "u64": np.array([2**63 + 5], np.uint64),
        "b": np.array([True, False]),
        "c": np.array([1 - 1j], np.complex128),
        "scalar": np.array(1.25, np.float32),
        "empty": np.zeros((2, 0), np.float32),
        "big": np.arange(3, dtype=">f8"),
    }


@pytest.mark.parametrize("weights_only", [True, False])
@pytest.mark.parametrize("mmap", [False, True])
def test_torch_loads_our_pth(tmp_path: Path, weights_only: bool, mmap: bool) -> None:
    torch = torch_mod()
    sd = numpy_sd()
    write_state_dict(tmp_path / "ours.pth", sd)
    loaded = torch.load(tmp_path / "ours.pth", weights_only=weights_only, mmap=mmap)
    assert isinstance(loaded, collections.OrderedDict)
    assert list(loaded) == list(sd)
    for k, v in sd.items():
        t = loaded[k]
        assert tuple(t.shape) == v.shape and not t.requires_grad, k
        np.testing.assert_array_equal(to_numpy(t), v, err_msg=k)
        assert to_numpy(t).dtype == v.dtype.newbyteorder("="), k


def test_torch_default_load_and_model_round_trip(tmp_path: Path) -> None:
    torch = torch_mod()
    model = small_model()
    sd = read_state_dict(_saved(torch, model, tmp_path / "src.pt"))
    for fmt in ("pth", "safetensors", "npz"):
        write_state_dict(tmp_path / f"m.{fmt}", sd)
    fresh = small_model()
    for p in fresh.parameters():
        torch.nn.init.zeros_(p)
    fresh.load_state_dict(torch.load(tmp_path / "m.pth"), strict=True)  # default torch.load
    x = torch.randn(2, 3, 4, 4)
    model.eval(), fresh.eval()
    assert torch.equal(model(x), fresh(x))


def _saved(torch, model, path: Path) -> Path:
    torch.save(model.state_dict(), path)
    return path


# ------------------------------------------------------------------------------------------
# safetensors


def test_safetensors_numpy_both_ways(tmp_path: Path) -> None:
    stn = pytest.importorskip("safetensors.numpy")
    sd = {k: v for k, v in numpy_sd().items() if k != "c"}  # no complex128 code in safetensors
    sd["c64"] = np.array([1 + 2j], np.complex64)
    write_state_dict(tmp_path / "ours.safetensors", sd)
    theirs = stn.load_file(tmp_path / "ours.safetensors")
    assert set(theirs) == set(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(theirs[k], v, err_msg=k)
        assert theirs[k].dtype == v.dtype.newbyteorder("="), k
    stn.save_file({k: np.ascontiguousarray(v.astype(v.dtype.newbyteorder("="))) for k, v in sd.items()},
                  tmp_path / "theirs.safetensors", metadata={"format": "np"})  # fmt: skip
    got = read_state_dict(tmp_path / "theirs.safetensors")
    assert set(got) == set(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)


def test_safetensors_torch_bf16(tmp_path: Path) -> None:
    torch = torch_mod()
    stt = pytest.importorskip("safetensors.torch")
    sd = {"bf": torch.randn(3, 4).to(torch.bfloat16), "f": torch.randn(2), "i": torch.arange(3)}
    stt.save_file(sd, tmp_path / "t.safetensors")
    # safetensors keeps no order of names (its writer sorts by alignment)
    assert_matches_torch(read_state_dict(tmp_path / "t.safetensors"), sd, ordered=False)
    convert(tmp_path / "t.safetensors", tmp_path / "t.pth")
    back = torch.load(tmp_path / "t.pth", weights_only=True)
    assert back["bf"].dtype == torch.float32  # bfloat16 is widened (exactly) on the way
    assert torch.equal(back["bf"], sd["bf"].float())
    write_state_dict(tmp_path / "o.safetensors", {"w": np.ones((2, 2), np.float32)})
    assert torch.equal(stt.load_file(tmp_path / "o.safetensors")["w"], torch.ones(2, 2))


# ------------------------------------------------------------------------------------------
# random strided views, against torch's own values

DT_FOR_VIEWS = ["float32", "float64", "float16", "bfloat16", "int64", "int16", "uint8", "bool",
                "uint16"]  # fmt: skip


@st.composite
def strided_views(draw):
    numel = draw(st.integers(1, 40))
    ndim = draw(st.integers(0, 3))
    size = [draw(st.integers(0, 4)) for _ in range(ndim)]
    stride = [draw(st.integers(0, 6)) for _ in range(ndim)]
    reach = sum((n - 1) * s for n, s in zip(size, stride) if n > 0)
    offset = draw(st.integers(0, max(0, numel - 1 - reach))) if reach < numel else 0
    if reach + offset >= numel and all(size):
        numel = reach + offset + 1
    return numel, tuple(size), tuple(stride), offset, draw(st.sampled_from(DT_FOR_VIEWS))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(views=st.lists(strided_views(), min_size=1, max_size=4), legacy=st.booleans())
def test_random_views_match_torch(tmp_path: Path, views: list, legacy: bool) -> None:
    torch = torch_mod()
    sd = {}
    for j, (numel, size, stride, offset, dtname) in enumerate(views):
        dt = getattr(torch, dtname)
        if legacy and dtname == "uint16":
            dt = torch.int16
        base = (torch.arange(numel, dtype=torch.float64) * 1.5 - 7).to(dt)
        sd[f"v{j}"] = base.as_strided(size, stride, offset)
    path = tmp_path / "r.pt"
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
    assert_matches_torch(read_state_dict(path), sd)


# ------------------------------------------------------------------------------------------
# the project's own ParCNetV2 (official names), saved as the official training code saves it


def test_parcnetv2_training_checkpoint_loads_into_the_reference(tmp_path: Path) -> None:
    torch = torch_mod()
    tm = pytest.importorskip("parcnetv2.pytorch.model")
    from parcnetv2 import reference

    model = tm.build_model(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), num_classes=10, seed=0)
    sd = model.state_dict()
    args = argparse.Namespace(model="parcnetv2_custom", drop_path=0.1)
    ckpt = {"epoch": 299, "arch": "parcnetv2_custom", "args": args, "version": 2,
            "state_dict": collections.OrderedDict(("module." + k, v) for k, v in sd.items()),
            "state_dict_ema": sd, "metric": 50.0}  # fmt: skip
    torch.save(ckpt, tmp_path / "checkpoint-299.pth.tar.pth")
    got = read_state_dict(tmp_path / "checkpoint-299.pth.tar.pth")
    assert_matches_torch(got, sd)
    for fmt in ("pth", "npz", "safetensors"):
        convert(tmp_path / "checkpoint-299.pth.tar.pth", tmp_path / f"w.{fmt}")
        ref = reference.load(tmp_path / f"w.{fmt}")
        x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(ref(x), want, rtol=1e-4, atol=1e-4)


def test_official_variant_bf16_release(tmp_path: Path) -> None:
    """A half-size release (bfloat16 safetensors) of parcnetv2_xt reads back as float32."""
    torch = torch_mod()
    stt = pytest.importorskip("safetensors.torch")
    tm = pytest.importorskip("parcnetv2.pytorch.model")
    sd = {k: v.to(torch.bfloat16) for k, v in tm.build_model("parcnetv2_xt", seed=1).state_dict().items()}
    stt.save_file(sd, tmp_path / "xt.safetensors")
    got = read_state_dict(tmp_path / "xt.safetensors")
    assert_matches_torch(got, sd, ordered=False)
    assert all(v.dtype == np.float32 for v in got.values())
