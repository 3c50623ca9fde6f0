"""The port zoo of tests/ports is consistent and its verdicts hold (quick subset).

``python tests/ports/verify.py`` checks every port at 224 x 224 and 97 x 131; here the catalog is
checked against the folder, every port's state_dict against its class, and a fast subset of
ports numerically at 97 x 131 (float64 against the reference).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ports import verify

TOOLS = {"__init__", "variants", "verify", "export_onnx", "baseline"}
CATALOG = {entry.name: entry for entry in verify.load_catalog()}
FAST = [
    "modules",
    "holders",
    "flat",
    "nchw_layout",
    "fft_oversized",
    "lng_via_layer_norm",
    "last_block_skipped",
    "sum_pool",
    "lng_eps_1e5",
    "pwconv1_no_bias",
    "batch_coupled_head_norm",
    "transposed_hw_crop",
    "interpolate_ignored",
]


def test_catalog_lists_every_port():
    files = {p.stem for p in Path(verify.__file__).parent.glob("*.py")} - TOOLS
    assert sorted(files - set(CATALOG)) == [], "ports missing from catalog.toml"
    assert sorted(set(CATALOG) - files) == [], "catalog entries without a port"


def test_every_class_has_a_reject():
    classes = {e.kind for e in CATALOG.values() if e.verdict == "reject"}
    assert classes >= {"structure", "coverage", "eps", "precision", "pooling", "wiring", "output", "semantics"}


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_state_dict_matches_class(name):
    problems = verify.structure_differences(name, verify.VARIANT)
    if CATALOG[name].kind == "structure":
        assert problems, f"{name} should differ from the official names/shapes"
    else:
        assert problems == [], f"{name}: {problems[:3]}"


@pytest.mark.parametrize("name", FAST)
def test_verdict_holds(name):
    result = verify.verify_entry(CATALOG[name], quick=True)
    assert result.ok, f"{name}: {result.notes}"
