"""The pytest plugin of the conformance harness (spec clause 14.1), registered under the
``pytest11`` entry point ``parcnetv2.conformance.plugin``.

It adds the options (``--backend``, ``--model``, ``--weights``, ``--variant``, ``--max-examples``,
``--seed``, ``--conformance-profile``, ``--report``, ``--xfails-file``, ``--reproduce-failure``),
builds the session's harness, and writes the JSON report and the terminal summary. The fixtures,
the parametrization and the known failures live in ``conformance/conftest.py`` beside the tests,
which marks them ``parcnetv2_conformance``: the tests are recognised by that marker wherever they
were collected from (a checkout, an installed package, editable or not), and other test suites run
as if the plugin were absent. Importing this module imports nothing heavy: the harness is built at
configuration when the run names the conformance tests or a conformance option (bad options
are then a one-line usage error), else when the first conformance test needs it.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import pytest

SUITE_FILE = "profiles.toml"  # a folder holding it is a copy of the conformance suite
_HARNESS = pytest.StashKey[Any]()
_SEED = pytest.StashKey[int]()
_OPTIONS = (
    "backend",
    "model",
    "weights",
    "variant",
    "max_examples",
    "seed",
    "report",
    "xfails_file",
    "reproduce_failure",
)
MARKER = "parcnetv2_conformance"  # set on every conformance test by conformance/conftest.py
_DEFAULT_BACKEND = "numpy"
_DEFAULT_PROFILE = "default"
_VARIANT_FOR_MODELS = "parcnetv2_xt"  # smallest official variant: numerics default for --model


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("parcnetv2-conformance", "ParCNetV2 conformance harness (pytest conformance)")
    group.addoption(
        "--backend",
        default=None,
        help="backend under test: a registered name (numpy, cext, cext-nhwc, torch, torch-cuda, onnx, ...) "
        f"or package.module:object (default {_DEFAULT_BACKEND})",
    )
    group.addoption(
        "--model",
        default=None,
        help="with --backend torch: package.module:factory, factory(variant) -> nn.Module with the official names; "
        "with --backend onnx: an exported FILE.onnx",
    )
    group.addoption(
        "--weights",
        default=None,
        help="with --model: trained weights (.pth, .npz, .safetensors); an ONNX file needs the weights it was "
        "exported from, a torch factory is checked with them as well as with the harness's own",
    )
    group.addoption(
        "--variant",
        action="append",
        default=None,
        help="official variant to check as a whole model at 224x224 (repeatable, or 'all'); "
        "default: all four for parameter counts, small configurations for numerics",
    )
    group.addoption(
        "--max-examples", type=int, default=None, help="Hypothesis examples per test (overrides the profile)"
    )
    group.addoption(
        "--seed",
        type=int,
        default=None,
        help="Hypothesis seed (default: the profile's; 'random' profiles draw one and print it)",
    )
    group.addoption("--conformance-profile", default=None, help="quick, ci (deterministic), default or thorough")
    group.addoption("--report", default=None, help="write a JSON report to this file")
    group.addoption(
        "--xfails-file", default=None, help="known failures TOML file (default: the package's known_failures.toml)"
    )
    group.addoption(
        "--reproduce-failure", default=None, help="replay one Hypothesis example: the blob a failure report prints"
    )


def _wanted(config: pytest.Config) -> bool:
    """Whether this run asks for the harness: a conformance option, or the conformance tests
    named on the command line (path or --pyargs)."""
    if any(config.getoption(name) is not None for name in _OPTIONS + ("conformance_profile",)):
        return True
    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::")[0]).resolve()
        folder = path if path.is_dir() else path.parent
        if arg.startswith("parcnetv2.conformance") or (folder / SUITE_FILE).is_file():
            return True
    return False


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "spec(*clauses): the spec clauses a conformance test checks (its report entry lists them)"
    )
    config.addinivalue_line("markers", f"{MARKER}: a test of the ParCNetV2 conformance suite")
    if _wanted(config):
        config.stash[_HARNESS] = _build(config)
    config.pluginmanager.register(_Recorder(config), "parcnetv2-conformance-recorder")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: every worker uses the controller's seed."""
    node.workerinput["parcnetv2_conformance_seed"] = _seed(node.config)


def harness(config: pytest.Config) -> Any:
    """The session's harness, built on first use with the default options."""
    if _HARNESS not in config.stash:
        config.stash[_HARNESS] = _build(config)
    return config.stash[_HARNESS]


def _usage(message: str) -> pytest.UsageError:
    return pytest.UsageError(message)


def _variants(config: pytest.Config) -> list[str] | None:
    from parcnetv2.spec import variant_names

    given = config.getoption("variant")
    if given is None:
        return None
    names = variant_names()
    chosen: list[str] = []
    for entry in given:
        for name in entry.split(","):
            name = name.strip()
            if name == "all":
                chosen += names
            elif name in names:
                chosen.append(name)
            else:
                raise _usage(f"--variant {name!r}: unknown; official variants: {', '.join(names)} (or all)")
    return list(dict.fromkeys(chosen))


def _build(config: pytest.Config) -> Any:
    """Validate the options and build the harness (UsageError with one line on any problem)."""
    from parcnetv2.conformance.harness import Harness, load_profile, official_target, plan_targets, profile_names
    from parcnetv2.conformance.protocol import BackendUnavailable
    from parcnetv2.conformance.registry import OptionError, load_weights, resolve_backend, user_model_backend
    from parcnetv2.spec import variant_names

    profile_name = config.getoption("conformance_profile") or _DEFAULT_PROFILE
    if profile_name not in profile_names():
        raise _usage(f"--conformance-profile {profile_name!r}: unknown; choose one of {', '.join(profile_names())}")
    max_examples = config.getoption("max_examples")
    if max_examples is not None and max_examples < 1:
        raise _usage(f"--max-examples {max_examples}: must be at least 1")
    profile = load_profile(profile_name, max_examples)
    xfails = config.getoption("xfails_file")
    if xfails is not None and not Path(xfails).is_file():
        raise _usage(f"--xfails-file {xfails}: no such file")
    report = config.getoption("report")
    if report is not None and not Path(report).resolve().parent.is_dir():
        raise _usage(f"--report {report}: the directory {Path(report).resolve().parent} does not exist")
    variants = _variants(config)
    spec = config.getoption("backend") or _DEFAULT_BACKEND
    model, weights = config.getoption("model"), config.getoption("weights")
    if weights is not None and model is None:
        raise _usage("--weights needs --model (a torch factory or an exported FILE.onnx)")

    backend, unavailable, trained = None, None, None
    try:
        if weights is not None and spec == "torch":
            trained = load_weights(weights)
            if variants is None and trained.config.variant is not None:
                variants = [trained.config.variant]
        if model is not None:
            backend = user_model_backend(spec, model, weights, (variants or [_VARIANT_FOR_MODELS])[0])
        else:
            backend = resolve_backend(spec)
    except OptionError as exc:
        raise _usage(str(exc)) from None
    except BackendUnavailable as exc:
        unavailable = str(exc)

    seed = _seed(config)
    fixed = getattr(backend, "fixed_state_dict", None)
    param_targets: list[Any]
    if fixed is not None:
        targets = _file_targets(backend)
        param_targets, geometry = [targets[-1]], []
    else:
        numerics = variants if variants is not None else ([_VARIANT_FOR_MODELS] if model is not None else [])
        sd = None if trained is None else trained.state_dict()
        targets = plan_targets(backend, numerics, factory=model is not None, weights=sd) if backend else []
        param_targets = [official_target(v) for v in (variants or variant_names())]
        geometry = numerics or [_VARIANT_FOR_MODELS]
    repro = ["--backend", spec]
    for flag, value in (("--model", model), ("--weights", weights)):
        if value is not None:
            repro += [flag, value]
    for v in variants or []:
        repro += ["--variant", v]
    repro += ["--conformance-profile", profile_name, "--seed", str(seed)]
    if max_examples is not None:
        repro += ["--max-examples", str(max_examples)]
    return Harness(
        spec=spec,
        backend=backend,
        unavailable=unavailable,
        profile=profile,
        seed=seed,
        param_targets=param_targets,
        targets=targets,
        geometry_variants=geometry,
        repro_args=repro,
        reproduce_blob=config.getoption("reproduce_failure"),
    )


def _file_targets(backend: Any) -> list[Any]:
    """The targets of an exported file (clause 14.7): the file's own weights ("file") at its input
    shape; when the harness can write weights into it, first its own weights at that shape and,
    where the graph leaves H and W free, at the small odd non-square size (the batch too if free)."""
    from parcnetv2 import reference
    from parcnetv2.conformance.harness import IMAGE_SIZE, SMALL_IMAGE, Target

    config = reference.from_state_dict(backend.fixed_state_dict).config
    shape = list(getattr(backend, "input_shape", (None, None, None, None)))
    defaults = [1, config.constants["in_chans"], IMAGE_SIZE, IMAGE_SIZE]
    image = tuple(d if isinstance(d, int) and d > 0 else defaults[i] for i, d in enumerate(shape))
    own = Target("file", config, image, backend.fixed_state_dict, "file")
    if getattr(backend, "other_weights", "") is not None:
        return [own]
    targets = [Target("file,harness-weights", config, image)]
    free = [not (isinstance(d, int) and d > 0) for d in shape]
    if len(shape) == 4 and free[2] and free[3]:
        small = (SMALL_IMAGE[0] if free[0] else image[0], image[1], SMALL_IMAGE[1], SMALL_IMAGE[2])
        targets.append(Target(f"file@{small[2]}x{small[3]},harness-weights", config, small))
    return [*targets, own]


def _seed(config: pytest.Config) -> int:
    """The session's Hypothesis seed: the controller's (xdist), --seed, the profile's, or random."""
    if _SEED not in config.stash:
        from parcnetv2.conformance.harness import load_profile, profile_names

        worker = getattr(config, "workerinput", None)
        name = config.getoption("conformance_profile") or _DEFAULT_PROFILE
        if worker is not None and "parcnetv2_conformance_seed" in worker:
            seed = int(worker["parcnetv2_conformance_seed"])
        elif config.getoption("seed") is not None:
            seed = int(config.getoption("seed"))
        elif name in profile_names() and load_profile(name).seed is not None:
            seed = int(load_profile(name).seed)
        else:
            seed = int.from_bytes(os.urandom(4), "little")
        config.stash[_SEED] = seed
    return config.stash[_SEED]


# ---- report ----------------------------------------------------------------------------------


class _Recorder:
    """Collects the conformance tests' outcomes (on the xdist controller too) and writes the
    JSON report and the terminal summary (clause 14.8)."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.results: dict[str, dict[str, Any]] = {}

    def _ours(self, report: pytest.TestReport) -> bool:
        return MARKER in report.keywords

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not self._ours(report):
            return
        entry = self.results.setdefault(report.nodeid, {"nodeid": report.nodeid, "outcome": "passed", "duration": 0.0})
        entry["duration"] = round(entry["duration"] + report.duration, 4)
        if hasattr(report, "wasxfail"):
            entry["outcome"] = "xfailed" if report.skipped else "xpassed"
            entry["xfail_reason"] = report.wasxfail
        elif report.failed:
            entry["outcome"] = "failed" if report.when == "call" else "error"
            crash = getattr(report.longrepr, "reprcrash", None)
            entry["message"] = crash.message if crash is not None else str(report.longrepr)
        elif report.skipped and entry["outcome"] == "passed":
            entry["outcome"] = "skipped"
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            entry["message"] = reason.removeprefix("Skipped: ")
        for key, value in report.user_properties:
            if key == "conformance":
                entry.update(value)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        path = self.config.getoption("report")
        if path and self.results and not hasattr(self.config, "workerinput"):
            Path(path).write_text(json.dumps(self.summary(), indent=2, default=str) + "\n", encoding="utf-8")

    def summary(self) -> dict[str, Any]:
        from parcnetv2.conformance.protocol import backend_info

        built = harness(self.config)
        counts: dict[str, int] = {}
        for entry in self.results.values():
            counts[entry["outcome"]] = counts.get(entry["outcome"], 0) + 1
        tests = sorted(self.results.values(), key=lambda e: e["nodeid"])
        ratios = [(e["worst_ratio"], e["nodeid"]) for e in tests if isinstance(e.get("worst_ratio"), (int, float))]
        return {
            "backend": built.backend.name if built.backend is not None else built.spec,
            "backend_spec": built.spec,
            "dtype": built.dtype.name,
            "backend_info": backend_info(built.backend)
            if built.backend is not None
            else {"unavailable": built.unavailable},
            "versions": _versions(),
            "profile": built.profile.name,
            "examples_per_test": {k: built.profile.examples(k) for k in ("operations", "components", "model")},
            "seed": built.seed,
            "variants": [t.label for t in built.targets],
            "counts": counts,
            "worst_ratio": max(ratios)[0] if ratios else None,
            "worst_test": max(ratios)[1] if ratios else None,
            "first_divergences": {e["nodeid"]: e["first_divergence"] for e in tests if "first_divergence" in e},
            "command": " ".join(sys.argv),
            "tests": tests,
        }

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.results:
            return
        built = harness(self.config)
        skipped = sorted({e["message"] for e in self.results.values() if e["outcome"] == "skipped" and "message" in e})
        ratios = [e["worst_ratio"] for e in self.results.values() if isinstance(e.get("worst_ratio"), (int, float))]
        terminalreporter.section("parcnetv2 conformance")
        terminalreporter.write_line(_describe(built))
        if ratios:
            terminalreporter.write_line(f"largest error / bound seen: {max(ratios):.3g} (a check fails above 1)")
        for entry in self.results.values():
            if "first_divergence" in entry:
                terminalreporter.write_line(f"{entry['nodeid']}: first divergence {entry['first_divergence']}")
            if "weak_power" in entry and entry["outcome"] == "passed":
                terminalreporter.write_line(
                    f"{entry['nodeid']}: passed WITHOUT POWER at {', '.join(entry['weak_power'])} (bound over "
                    "1e-2 of the values' RMS: these weights cannot certify the model there; clause 11.10)"
                )
        for reason in skipped:
            terminalreporter.write_line(f"skipped: {reason}")
        if self.config.getoption("report"):
            terminalreporter.write_line(f"report written to {self.config.getoption('report')}")


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    built = config.stash.get(_HARNESS, None)
    if built is None:
        return None
    return [_describe(built)]


def _describe(built: Any) -> str:
    backend = built.backend
    name = backend.name if backend is not None else built.spec
    return (
        f"parcnetv2 conformance: backend {name} ({built.dtype.name}), profile {built.profile.name}, "
        f"seed {built.seed}, variants {', '.join(t.label for t in built.targets) or 'none (small configurations)'}"
    )


def _versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("parcnetv2", "numpy", "scipy", "hypothesis", "pytest", "torch", "onnx", "onnxruntime"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions
