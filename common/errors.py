"""Exceptions for bad input. The command line turns each into one line on stderr and exit code 2."""


class ParcnetError(Exception):
    """Base class: something the user gave us is wrong (a file, a shape, a name)."""


class InputError(ParcnetError, ValueError):
    """An input array or argument has the wrong rank, shape, dtype or value."""


class WeightsError(ParcnetError, ValueError):
    """Weights do not fit the model: missing or unexpected keys, or a tensor of the wrong shape."""


class CheckpointError(ParcnetError, ValueError):
    """A weights file cannot be read: unknown format, truncated or corrupt."""


class UnsafeCheckpointError(CheckpointError):
    """A pickled checkpoint refers to a global that loading it would execute or import."""


# Messages quote values read from files and paths typed by users: keep every message one line of
# bounded length, and never show the repr of an internal object (``<... object at 0x7f...>``).
MAX_QUOTED = 120


def brief(value: object, limit: int = MAX_QUOTED) -> str:
    """``value`` (anything read from a file) as message text: the repr of plain data (str,
    bytes, numbers, None, bool, and tuples, lists, dicts and sets of them), the type name of
    anything else, cut to ``limit`` characters; printable characters only."""
    return _cut(_plain_repr(value, depth=3), limit)


def one_line(message: str, limit: int = 2000) -> str:
    """``message`` with every non-printable character (newlines, escapes) shown escaped, cut to
    ``limit`` characters: what an error may print."""
    escaped = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)
    return _cut(escaped, limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _plain_repr(value: object, depth: int) -> str:
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes, bytearray)):
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
            return f"an integer of {value.bit_length()} bits"
        if isinstance(value, (str, bytes, bytearray)) and len(value) > 4 * MAX_QUOTED:
            value = value[: 4 * MAX_QUOTED]  # repr of the head only: the message is cut anyway
        return repr(value) if not isinstance(value, bytearray) else f"bytearray({bytes(value)!r})"
    if isinstance(value, (tuple, list, set, frozenset, dict)) and type(value) in _CONTAINERS:
        if depth == 0:
            return f"{_article(type(value).__name__)} of {len(value)} items"
        items = list(value.items() if isinstance(value, dict) else value)[:8]
        if isinstance(value, dict):
            parts = [f"{_plain_repr(k, depth - 1)}: {_plain_repr(v, depth - 1)}" for k, v in items]
        else:
            parts = [_plain_repr(v, depth - 1) for v in items]
        more = ", ..." if len(value) > len(items) else ""
        open_, close = _CONTAINERS[type(value)]
        trailing = "," if isinstance(value, tuple) and len(value) == 1 else ""
        return f"{open_}{', '.join(parts)}{trailing}{more}{close}"
    described = getattr(value, "describe", None)  # the weights readers' stand-ins describe themselves
    if callable(described):
        try:
            return str(described())
        except Exception:  # not one of ours after all
            pass
    return _article(type(value).__name__.strip("_"))


def _article(name: str) -> str:
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


_CONTAINERS = {tuple: ("(", ")"), list: ("[", "]"), set: ("{", "}"), frozenset: ("frozenset({", "})"), dict: ("{", "}")}
