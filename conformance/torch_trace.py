"""What a PyTorch model runs during one forward pass (spec clause 14.6): named modules, their inputs
and outputs, and modules whose parameters are used without the module being called.

A port is free in *how* it computes (clause 14.6): parameters may live in holder modules without a
``forward`` whose parent calls ``F.conv2d(x, self.dwconv2.weight)``, a module may be skipped in
favour of a functional call, a wrapper (``torch.compile``) may sit on top. So a module *runs* when
its forward is called (a forward hook sees it, with its input and output), or when its parameters
are used by a torch function outside its own forward (a ``TorchFunctionMode`` sees the parameter
among the function's arguments; consecutive uses form one run). The trace lists both kinds in
completion order, children before their parents, so that coverage, order and wiring can be
checked against the official structure (clause 2).

Shape legend: N, C, H, W, K.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from parcnetv2.conformance.observation import Run

__all__ = ["callable_module", "submodule", "trace_module", "unwrap"]

# Tensor methods and properties that read metadata, not values: they never make a module run.
_METADATA = {
    "shape", "dtype", "device", "ndim", "requires_grad", "is_cuda", "layout", "size", "dim", "numel",
    "is_contiguous", "stride", "data_ptr", "element_size", "is_floating_point", "__len__", "__hash__",
    "is_complex", "names", "grad", "grad_fn", "is_leaf", "storage_offset", "nelement", "__format__",
}  # fmt: skip
# Tensor methods that copy a tensor into another dtype, device or layout.
_CONVERSIONS = {"to", "double", "float", "half", "bfloat16", "type", "type_as", "clone", "detach", "contiguous", "cpu"}


def unwrap(module: nn.Module) -> nn.Module:
    """The module a wrapper holds: ``torch.compile``'s ``_orig_mod``, ``DataParallel``'s ``module``."""
    while True:
        inner = getattr(module, "_orig_mod", None)
        if isinstance(inner, nn.Module):
            module = inner
            continue
        if isinstance(module, nn.DataParallel | nn.parallel.DistributedDataParallel):
            module = module.module
            continue
        return module


def callable_module(module: nn.Module) -> bool:
    """Whether the module can run on its own: it defines a forward (holder modules do not), and it
    is not a sub-module of a traced model (TorchScript refuses to call those on their own)."""
    if isinstance(module, torch.jit.TracedModule) and not isinstance(module, torch.jit.TopLevelTracedModule):
        return False
    if isinstance(module, torch.jit.ScriptModule):
        return True
    return type(module).forward is not nn.Module.forward


def submodule(model: nn.Module, name: str) -> nn.Module:
    """The sub-module ``name`` of ``model``; scripted and traced models too (no ``get_submodule``).
    AttributeError when there is none."""
    module = model
    for part in filter(None, name.split(".")):
        children = dict(module.named_children())
        if part not in children:
            raise AttributeError(f"{type(module).__name__} has no sub-module {part!r}")
        module = children[part]
    return module


def _function_name(func: Any) -> str:
    name = getattr(func, "__name__", "")
    if name == "__get__":  # a property of Tensor
        name = getattr(getattr(func, "__self__", None), "__name__", name)
    return name


class _ParameterUse(TorchFunctionMode):
    """Calls ``use(owners)`` with the owning modules of the named parameters a torch function reads."""

    def __init__(self, owners: dict[int, str], use: Callable[[set[str]], None]):
        super().__init__()
        self._owners, self._use = owners, use
        self._derived: list[torch.Tensor] = []  # kept alive: their ids stand for their owners

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _function_name(func)
        if name in _METADATA:
            return func(*args, **kwargs)
        used = {self._owners[id(a)] for a in _flatten((args, kwargs)) if id(a) in self._owners}
        if name in _CONVERSIONS and len(used) == 1 and args and id(args[0]) in self._owners:
            # A copy in another dtype or layout (a port casting its weights up front) is not a
            # run: the copy stands for its owner until it is used.
            result = func(*args, **kwargs)
            if isinstance(result, torch.Tensor):
                self._owners[id(result)] = next(iter(used))
                self._derived.append(result)
            return result
        if used:
            self._use(used)
        return func(*args, **kwargs)


def _flatten(value: Any) -> Iterable[Any]:
    if isinstance(value, list | tuple):
        for item in value:
            yield from _flatten(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _flatten(item)
    else:
        yield value


def trace_module(module: nn.Module, names: Sequence[str], run: Callable[[], Any]) -> list[Run]:
    """The runs of the official ``names`` found in ``module`` while ``run()`` executes (which calls
    the model once), in completion order. ``module`` must be an eager module (``unwrap`` it first);
    TorchScript modules cannot be traced (no Python hooks): a TypeError says so."""
    if isinstance(module, torch.jit.ScriptModule):
        raise TypeError("a TorchScript module runs no Python hooks, so its modules cannot be traced")
    wanted = set(names)
    aliases: dict[int, list[str]] = {}
    for name, sub in module.named_modules(remove_duplicate=False):
        if name in wanted:
            aliases.setdefault(id(sub), []).append(name)
    # A module registered under two official names (a shared GELU) cannot say which one ran.
    present = {names_of[0]: sub for _, sub in module.named_modules() if len(names_of := aliases.get(id(sub), [])) == 1}
    owners: dict[int, str] = {}
    for name, sub in present.items():
        for parameter in sub.parameters(recurse=False):
            owners[id(parameter)] = name
    calls: list[Run] = []
    active: list[str] = []  # modules whose forward is running
    episode: set[str] = set()  # modules whose parameters the latest torch functions used

    def use(used: set[str]) -> None:
        nonlocal episode
        outside = used - set(active)  # a module running its own forward uses its parameters itself
        for name in sorted(outside - episode, key=list(present).index):
            calls.append(Run(name, "parameters"))
        episode = outside

    def pre_hook(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
            nonlocal episode
            active.append(name)
            episode = set()

        return hook

    def post_hook(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            nonlocal episode
            if active and active[-1] == name:
                active.pop()
            episode = set()
            calls.append(Run(name, "forward", args[0] if args else None, output))

        return hook

    handles = []
    try:
        for name, sub in present.items():
            handles.append(sub.register_forward_pre_hook(pre_hook(name)))
            handles.append(sub.register_forward_hook(post_hook(name)))
        with _ParameterUse(owners, use):
            run()
    finally:
        for handle in handles:
            handle.remove()
    return calls
