"""The engine's commands ``parcnetv2 predict``, ``bench`` and ``plot-kernels`` (spec clause 15.6):
outputs, and one-line errors with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from parcnetv2 import engine, reference
from parcnetv2.engine.preprocess import load_image
from parcnetv2.reference.architecture import Config
from parcnetv2.reference.initialization import random_state_dict

CLASSES = 7


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small custom model's weights (official kernel sizes, 7 classes), two images, labels."""
    from PIL import Image

    root = tmp_path_factory.mktemp("cli")
    config = Config(
        depths=(1, 1, 1, 1), dims=(8, 12, 16, 20), global_kernel_sizes=(111, 55, 27, 13), num_classes=CLASSES
    )
    np.savez(root / "w.npz", **random_state_dict(config, 3, np.float32))
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 410, 3), dtype=np.uint8)).save(root / "a.jpg")
    Image.fromarray(rng.integers(0, 256, (230, 200), dtype=np.uint8)).save(root / "b.png")  # grey: converted to RGB
    (root / "bad.jpg").write_bytes(b"not an image")
    (root / "labels.txt").write_text("\n".join(f"name{i}" for i in range(CLASSES)) + "\n")
    return root


def test_preprocessing_is_the_official_evaluation(files):
    """Shorter side to 256 (bicubic), centre 224 crop, ImageNet mean/std, CHW float32."""
    from PIL import Image

    x = load_image(files / "a.jpg")
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    img = Image.open(files / "a.jpg").convert("RGB").resize((349, 256), Image.Resampling.BICUBIC)
    crop = np.asarray(img.crop((62, 16, 286, 240)), np.float32) / np.float32(255)
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    np.testing.assert_array_equal(x, ((crop - mean) / std).transpose(2, 0, 1))


def test_predict_top5_text_and_labels(cli, files):
    code, out, err = cli(
        "predict", "--weights", files / "w.npz", "--labels", files / "labels.txt", files / "a.jpg", files / "b.png"
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == str(files / "a.jpg") and lines[6] == str(files / "b.png") and len(lines) == 12
    model = engine.load(files / "w.npz")
    logits = model(load_image(files / "a.jpg")[None])[0].astype(np.float64)
    probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    top = np.argsort(-probabilities, kind="stable")[:5]
    for rank, (line, k) in enumerate(zip(lines[1:6], top), 1):
        assert line.split() == [f"{rank}.", str(k), f"{probabilities[k]:.4f}", f"name{k}"]


def test_predict_json(cli, files):
    code, out, _ = cli("predict", "--weights", files / "w.npz", "--json", "--top", "3", files / "a.jpg")
    assert code == 0
    document = json.loads(out)
    (result,) = document["results"]
    assert result["image"] == str(files / "a.jpg") and len(result["top"]) == 3
    probabilities = [t["probability"] for t in result["top"]]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-9
    assert "label" not in result["top"][0]


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["{bad}"], ["cannot read image", "bad.jpg"]),
        (["{missing}"], ["image not found"]),
        (["--variant", "parcnetv2_huge", "{a}"], ["unknown variant 'parcnetv2_huge'"]),
        (["--variant", "parcnetv2_tiny", "{a}"], ["weights do not match parcnetv2_tiny"]),
        (["--labels", "{a}", "{a}"], ["--labels"]),
    ],
)
def test_predict_bad_input(cli, files, args, fragments, assert_usage_error):
    paths = {"bad": files / "bad.jpg", "missing": files / "nope.png", "a": files / "a.jpg"}
    argv = [a.format(**paths) for a in args]
    code, _, err = cli("predict", "--weights", files / "w.npz", *argv)
    assert_usage_error(code, err, "parcnetv2 predict: error:", *fragments)


def test_predict_unreadable_weights(cli, files, assert_usage_error):
    code, _, err = cli("predict", "--weights", files / "bad.jpg", files / "a.jpg")
    assert_usage_error(code, err, "parcnetv2 predict: error:")


def test_bench_quick_run(cli):
    """A tiny quick run: the engine alone (the comparison frameworks are exercised by the benchmarks)."""
    code, out, err = cli(
        "bench",
        "--variant",
        "parcnetv2_xt",
        "--resolution",
        "32",
        "--runs",
        "2",
        "--warmup",
        "1",
        "--rounds",
        "2",
        "--threads",
        "1",
        "--frameworks",
        "engine",
        "--json",
    )
    assert code == 0, err
    document = json.loads(out)
    (row,) = document["results"]
    assert row["framework"] == "engine" and row["runs"] == 4 and row["p10_ms"] <= row["median_ms"] <= row["p90_ms"]
    assert row["peak_rss_mib"] >= row["baseline_rss_mib"] > 0 and document["budget_mib"] > document["weights_mib"] > 28


def test_bench_bad_input(cli, assert_usage_error):
    code, _, err = cli("bench", "--variant", "parcnetv2_nano")
    assert_usage_error(code, err, "unknown variant")
    code, _, err = cli("bench", "--variant", "parcnetv2_xt", "--frameworks", "engine,tensorflow")
    assert_usage_error(code, err, "tensorflow")
    code, _, err = cli("bench", "--variant", "parcnetv2_xt", "--batch", "0")
    assert_usage_error(code, err, "--batch")


def test_plot_kernels_writes_a_png(cli, files, tmp_path):
    out = tmp_path / "fig.png"
    code, text, err = cli(
        "plot-kernels", files / "w.npz", "--stage", "2", "--block", "0", "--out", out, "--channels", "3"
    )
    assert code == 0, err
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "channels" in text
    model = reference.load(files / "w.npz")
    k_h = model.state_dict()["stages.2.0.token_mixer.dwconv1.conv_h.weight"][:, 0, :, 0]
    k_w = model.state_dict()["stages.2.0.token_mixer.dwconv1.conv_w.weight"][:, 0, 0, :]
    strongest = np.argsort(-(np.linalg.norm(k_h, axis=1) * np.linalg.norm(k_w, axis=1)), kind="stable")[:3]
    assert text.strip().endswith(", ".join(map(str, strongest)))


@pytest.mark.parametrize(
    "args, fragment", [(["--stage", "4", "--block", "0"], "--stage 4"), (["--stage", "1", "--block", "2"], "--block 2")]
)
def test_plot_kernels_bad_block(cli, files, tmp_path, args, fragment, assert_usage_error):
    code, _, err = cli("plot-kernels", files / "w.npz", *args, "--out", tmp_path / "f.png")
    assert_usage_error(code, err, fragment)


def test_missing_extras_are_one_line(cli, files, tmp_path, monkeypatch, assert_usage_error):
    """Without Pillow / matplotlib the commands say which extra to install."""
    import builtins

    real_import = builtins.__import__

    def no_extras(name, *args, **kwargs):
        if name.split(".")[0] in ("PIL", "matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_extras)
    code, _, err = cli("predict", "--weights", files / "w.npz", files / "a.jpg")
    assert_usage_error(code, err, "parcnetv2[images]")
    code, _, err = cli("plot-kernels", files / "w.npz", "--stage", "0", "--block", "0", "--out", tmp_path / "f.png")
    assert_usage_error(code, err, "parcnetv2[plot]")
