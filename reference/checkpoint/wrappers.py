"""Finding the state_dict inside a training checkpoint, and the names DataParallel prefixes
(spec clause 13.3)."""

from __future__ import annotations

from typing import Any

from parcnetv2.errors import brief
from parcnetv2.reference.checkpoint.internal_errors import BadFile, shorten
from parcnetv2.reference.checkpoint.restricted_pickle import TensorRecord, describe

# Entries of a training checkpoint that hold the model's state_dict, in order of preference: the
# trained weights first (timm "state_dict", ConvNeXt/DeiT "model"), the EMA copies only when no
# plain one is there. ``read_state_dict(path, key="state_dict_ema")`` picks one explicitly.
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module", "state_dict_ema", "model_ema")

_PREFIX = "module."
_MAX_WRAP_DEPTH = 4


def find_state_dict(obj: Any, key: str | None) -> dict[str, TensorRecord]:
    """The state_dict inside an unpickled object (see ``read_state_dict`` for the rules)."""
    if not isinstance(obj, dict):
        raise BadFile(f"the checkpoint holds a {describe(obj)}, not a dict of tensors")
    if key is not None:
        if key not in obj:
            keys = ", ".join(brief(k) for k in list(obj)[:12])
            raise BadFile(f"no entry {key!r} in the checkpoint (top-level keys: {keys})")
        obj = obj[key]
        if not isinstance(obj, dict):
            raise BadFile(f"entry {key!r} holds a {describe(obj)}, not a dict of tensors")
    for _ in range(_MAX_WRAP_DEPTH):
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    bad_keys = [k for k in obj if not isinstance(k, str)]
    if bad_keys:
        raise BadFile(f"not a state_dict: names {', '.join(shorten(k) for k in bad_keys[:6])} "
                      "are not strings")  # fmt: skip
    bad = [(k, v) for k, v in obj.items() if not isinstance(v, TensorRecord)]
    if bad:
        listed = ", ".join(f"{brief(k)} ({describe(v)})" for k, v in bad[:6])
        nested = [k for k, v in bad if isinstance(v, dict)
                  and any(isinstance(t, TensorRecord) for t in v.values())]  # fmt: skip
        hint = f"; tensors are under {', '.join(repr(k) for k in nested[:6])}: pass key=..."
        raise BadFile(f"not a state_dict: entries {listed} are not tensors"
                      f"{hint if nested else ''}")  # fmt: skip
    return obj


def strip_prefix(sd: dict[str, Any]) -> dict[str, Any]:
    """Drop a leading ``module.`` (DataParallel) from every name that has one."""
    out: dict[str, Any] = {}
    for k, v in sd.items():
        new = k[len(_PREFIX) :] if k.startswith(_PREFIX) else k
        if new in out:
            raise BadFile(f"names {brief(k)} and {brief(new)} collide once the {_PREFIX!r} prefix is "
                          "stripped")  # fmt: skip
        out[new] = v
    return out
