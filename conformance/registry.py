"""Finding the backend under test (spec clause 14.3).

``--backend NAME`` names an entry point of the group ``parcnetv2.backends``; the project
registers its built-in backends there (pyproject.toml), and so can any installed package. The
engine issue adds ``engine = "parcnetv2.conformance.backend_engine:backend"`` to that group.
``--backend package.module:object`` imports the object directly. Either way the object is a
backend (it has ``name`` and ``dtype``) or a callable returning one.

``--model`` replaces the backend's own model by the user's: with ``torch``, a factory
``package.module:factory`` with ``factory(variant) -> nn.Module`` (``--weights`` adds trained
weights to check it with); with ``onnx``, an exported file plus the ``--weights`` it was exported
from. Every problem with these options raises ``OptionError`` with a one-line
message (the plugin turns it into pytest's usage error).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from parcnetv2.conformance.protocol import BackendUnavailable

__all__ = ["GROUP", "OptionError", "available_backends", "load_weights", "resolve_backend", "user_model_backend"]

GROUP = "parcnetv2.backends"


class OptionError(Exception):
    """A conformance option that cannot be used; the message is one line."""


def available_backends() -> dict[str, Any]:
    """Registered backend names -> entry points (built-in and third-party)."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def _import_object(spec: str, option: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise OptionError(f"{option} {spec!r}: expected package.module:object")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise OptionError(f"{option} {spec!r}: cannot import {module_name} ({exc})") from None
    try:
        return _getattr_path(module, attribute)
    except AttributeError:
        raise OptionError(f"{option} {spec!r}: {module_name} has no attribute {attribute!r}") from None


def _getattr_path(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _is_backend(obj: Any) -> bool:
    return not isinstance(obj, type) and hasattr(obj, "name") and hasattr(obj, "dtype")


def _instantiate(obj: Any, label: str) -> Any:
    if _is_backend(obj):
        return obj
    if not callable(obj):
        raise OptionError(f"--backend {label}: {type(obj).__name__} is neither a backend (name, dtype) nor callable")
    try:
        backend = obj()
    except (BackendUnavailable, OptionError):
        raise
    except ImportError as exc:
        raise OptionError(f"--backend {label}: {exc}") from None
    except Exception as exc:
        raise OptionError(f"--backend {label}: creating the backend failed: {type(exc).__name__}: {exc}") from None
    if not _is_backend(backend):
        raise OptionError(
            f"--backend {label}: {type(backend).__name__} has no name and dtype; see the backend protocol"
        )
    return backend


def resolve_backend(spec: str) -> Any:
    """The backend for ``--backend spec``; BackendUnavailable when the machine cannot run it."""
    if ":" in spec:
        return _instantiate(_import_object(spec, "--backend"), spec)
    registered = available_backends()
    if spec not in registered:
        names = ", ".join(sorted(registered)) or "none (is parcnetv2 installed?)"
        raise OptionError(f"--backend {spec!r}: unknown backend; registered: {names}; or give package.module:object")
    try:
        obj = registered[spec].load()
    except ImportError as exc:
        raise OptionError(f"--backend {spec}: cannot load {registered[spec].value} ({exc})") from None
    return _instantiate(obj, spec)


def load_weights(path: str) -> Any:
    """A reference ``Model`` from a weights file (clause 13): .npz, .safetensors, .pth/.pt."""
    from parcnetv2 import reference
    from parcnetv2.errors import ParcnetError

    try:
        return reference.load(path)
    except (ParcnetError, OSError) as exc:
        raise OptionError(f"--weights {path}: {exc}") from None


def user_model_backend(backend_name: str, model: str, weights: str | None, variant: str) -> Any:
    """The backend for ``--model`` (clause 14.6/14.7): a torch factory or an ONNX file."""
    if backend_name == "torch":
        factory = _import_object(model, "--model")
        if not callable(factory):
            raise OptionError(f"--model {model}: {type(factory).__name__} is not callable")
        from parcnetv2.conformance.backend_torch import TorchModuleBackend

        try:
            return TorchModuleBackend(factory, model, variant)
        except Exception as exc:
            raise OptionError(f"--model {model}: {model}({variant!r}) failed: {type(exc).__name__}: {exc}") from None
    if backend_name == "onnx":
        if not Path(model).is_file():
            raise OptionError(f"--model {model}: no such file")
        if weights is None:
            raise OptionError(f"--model {model}: an ONNX file needs --weights, the weights it was exported from")
        from parcnetv2.conformance.backend_onnx import OnnxFileBackend

        reference_model = load_weights(weights)
        try:
            return OnnxFileBackend(Path(model), reference_model.state_dict(), reference_model.config)
        except Exception as exc:
            raise OptionError(f"--model {model}: cannot read the ONNX file: {type(exc).__name__}: {exc}") from None
    raise OptionError(
        f"--model works with --backend torch (a factory) or --backend onnx (a file), not {backend_name!r}"
    )
