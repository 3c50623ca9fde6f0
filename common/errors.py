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
