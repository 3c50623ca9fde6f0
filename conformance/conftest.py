"""Fixtures, parametrization and known failures of the conformance tests (spec clause 14).

This conftest sits beside the tests, so pytest applies it to them wherever they were collected
from: ``pytest conformance`` in a checkout, ``pytest --pyargs parcnetv2.conformance`` in an
installed package (editable or not). It marks every test of this folder ``parcnetv2_conformance``
(the plugin's report recognises the tests by that marker, never by their path), parametrizes them
by whole-model target, named module and stage geometry, orders them simplest first, and applies
the known-failures file (clause 14.9). The options and the report are the plugin's
(``parcnetv2.conformance.plugin``).
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Any

import pytest

from parcnetv2.conformance.plugin import MARKER, harness

HERE = Path(__file__).resolve().parent
# Basic checks first, so that a failure (and -x) points at the simplest broken thing.
_ORDER = ("test_parameters.py", "test_operations.py", "test_components.py", "test_probes.py", "test_model.py")


def _ours(item: pytest.Item) -> bool:
    return Path(str(item.path)).resolve().parent == HERE


@pytest.fixture(scope="session")
def conformance(request: pytest.FixtureRequest) -> Any:
    """The session's harness; every test skips when the backend is unavailable here."""
    built = harness(request.config)
    if built.unavailable:
        pytest.skip(built.unavailable)
    return built


def repro_target(node: pytest.Item, config: pytest.Config) -> str:
    """The test's node id with its file relative to where pytest was started (absolute when the
    file lies elsewhere, e.g. in site-packages), so a repro line runs from that directory."""
    path = Path(str(node.path)).resolve()
    start = Path(config.invocation_params.dir).resolve()
    where = os.path.relpath(path, start) if path.is_relative_to(start) else str(path)
    return f"{where}::{node.name}"


@pytest.fixture
def conformance_check(conformance: Any, request: pytest.FixtureRequest) -> Any:
    """A Checker for this test; its findings go into the test's report entry."""
    from parcnetv2.conformance.checking import Checker

    check = Checker(conformance, repro_target(request.node, request.config))
    for mark in request.node.iter_markers("spec"):
        for clause in mark.args:
            check.cite(clause)
    yield check
    request.node.user_properties.append(("conformance", check.report()))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    names = metafunc.fixturenames
    if not {"param_target", "model_target", "module_target", "geometry"} & set(names):
        return
    built = harness(metafunc.config)
    if "param_target" in names:
        metafunc.parametrize("param_target", [t.label for t in built.param_targets])
    if "model_target" in names:
        labels = [t.label for t in built.targets]
        metafunc.parametrize("model_target", labels or [None], ids=labels or ["no-variant"])
    if "module_target" in names:
        pairs = [(t.label, n) for t in built.probe_targets() for n in built.probed_modules(t)]
        ids = [f"{t}:{n}" for t, n in pairs] or ["no-variant"]
        metafunc.parametrize("module_target", pairs or [None], ids=ids)
    if "geometry" in names:
        stages = [(v, i) for v in built.geometry_variants for i in range(4)]
        metafunc.parametrize("geometry", stages or [None], ids=[f"{v}-stage{i}" for v, i in stages] or ["no-variant"])


def _known_failures(config: pytest.Config) -> list[dict[str, Any]]:
    from parcnetv2.conformance.harness import tomllib

    path = config.getoption("xfails_file") or HERE / "known_failures.toml"
    try:
        entries = tomllib.loads(Path(path).read_text(encoding="utf-8")).get("known_failure", [])
    except (OSError, ValueError) as exc:
        raise pytest.UsageError(f"--xfails-file {path}: {exc}") from None
    for entry in entries:
        missing = [k for k in ("backend", "test", "reason") if k not in entry]
        if missing:
            raise pytest.UsageError(f"--xfails-file {path}: an entry lacks {', '.join(missing)}: {entry}")
    return entries


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if _ours(item)]
    if not ours:
        return
    for item in ours:
        item.add_marker(MARKER)
    rank = {name: i for i, name in enumerate(_ORDER)}
    items.sort(key=lambda item: rank.get(Path(str(item.path)).name, len(_ORDER)) if _ours(item) else -1)
    built = harness(config)
    names = {built.spec} | ({built.backend.name} if built.backend is not None else set())
    for entry in _known_failures(config):
        if not any(fnmatch.fnmatchcase(name, entry["backend"]) for name in names):
            continue
        for item in ours:
            if fnmatch.fnmatchcase(item.nodeid, "*" + entry["test"]):
                reason = f"known failure: {entry['reason']}"
                item.add_marker(pytest.mark.xfail(reason=reason, strict=entry.get("strict", True)))
