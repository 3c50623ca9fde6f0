"""Walking a pickle's opcodes before it is unpickled: what it may allocate, bounded (clause 13.5).

The C unpickler allocates what a pickle declares before reading it (a bytes object of a BINBYTES8
length, a memo table up to a LONG_BINPUT index), converts decimal integers of any length, and
creates one object per opcode: 191 compressed bytes can hold 8 Mi EMPTY_SET opcodes, 2 GB of sets.
``scan`` walks one pickle over its in-memory bytes without building anything and refuses, before
any unpickling:

- opcodes that are unknown, or run past the data (lengths are checked against the bytes present);
- the EXT opcodes: they name globals through copyreg's process-wide extension registry, whose
  cache the C unpickler consults *before* ``find_class``;
- memo indices beyond the number of opcodes (writers number them 0, 1, ...);
- integers longer than ``MAX_INT_BYTES`` bytes or ``MAX_INT_DIGITS`` digits (no arithmetic on
  megabyte integers, and no conversion that stops at Python's digit limit);
- pickles whose estimated objects exceed ``MAX_PICKLE_OBJECT_BYTES``.

The estimate charges each opcode ``SLOT`` bytes (the stack slot it fills and the container slot
it may fill later: a set or dict entry with the table's growth), plus the object it creates:
``SET`` for a set, ``OBJECT`` for a call or a persistent id (an OrderedDict, a tensor record),
``CONTAINER`` for a list, dict or tuple, ``NUMBER`` for an int or float, and for strings their
decoded size (at most 4 bytes per UTF-8 byte). Measured with CPython 3.11 on the most expensive
pickles per estimated byte (sets of distinct ints, strings of 4-byte characters), the memory
really allocated stays below the estimate (``tests/test_hostile_input.py``).
"""

from __future__ import annotations

import pickletools
import struct

from parcnetv2.reference.checkpoint.internal_errors import BadFile, UnsafePickle
from parcnetv2.reference.checkpoint.limits import MAX_INT_BYTES, MAX_INT_DIGITS, MAX_PICKLE_OBJECT_BYTES

__all__ = ["SLOT", "scan"]

SLOT = 96
SET = 232
OBJECT = 256
CONTAINER = 80
STRING = 56
NUMBER = 32

_COSTS = {
    **dict.fromkeys(("EMPTY_SET", "FROZENSET"), SET),
    **dict.fromkeys(("REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ", "INST", "BUILD", "BINPERSID", "PERSID"), OBJECT),
    **dict.fromkeys(("EMPTY_LIST", "LIST", "EMPTY_DICT", "DICT", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"), CONTAINER),
    **dict.fromkeys(("BININT", "BININT2", "LONG1", "LONG4", "INT", "LONG", "BINFLOAT", "FLOAT"), NUMBER),
}
_STRINGS = frozenset(("STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE",
                      "BINUNICODE8"))  # fmt: skip
_BYTES = frozenset(("BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"))
_MEMO_PUTS = frozenset(("PUT", "BINPUT", "LONG_BINPUT"))
_EXT = frozenset(("EXT1", "EXT2", "EXT4"))
_INT_TEXT = frozenset(("INT", "LONG", "GET", "PUT", "FLOAT"))
_MAX_LINE = 64 << 10  # a protocol-0 text argument (a string, a module or global name)

# How each argument is laid out: a fixed width, a length prefix of 1, 4 (signed or not) or 8 bytes,
# or text up to a newline (two lines for GLOBAL and INST).
_FIXED, _LEN1, _LEN4S, _LEN4U, _LEN8, _LINE, _TWO_LINES, _NONE = range(8)
_LAYOUT = {
    pickletools.TAKEN_FROM_ARGUMENT1: _LEN1,
    pickletools.TAKEN_FROM_ARGUMENT4: _LEN4S,
    pickletools.TAKEN_FROM_ARGUMENT4U: _LEN4U,
    pickletools.TAKEN_FROM_ARGUMENT8U: _LEN8,
}


def _table() -> list[tuple[str, int, int] | None]:
    """Opcode byte -> (name, layout, fixed width); from pickletools, so every protocol is known."""
    table: list[tuple[str, int, int] | None] = [None] * 256
    for op in pickletools.opcodes:
        arg = op.arg
        if arg is None:
            entry = (op.name, _NONE, 0)
        elif arg.n >= 0:
            entry = (op.name, _FIXED, arg.n)
        elif arg.n == pickletools.UP_TO_NEWLINE:
            entry = (op.name, _TWO_LINES if arg.name == "stringnl_noescape_pair" else _LINE, 0)
        else:
            entry = (op.name, _LAYOUT[arg.n], 0)
        table[ord(op.code.encode("latin-1"))] = entry
    return table


_TABLE = _table()
_PREFIX = {_LEN1: (1, "<B"), _LEN4S: (4, "<i"), _LEN4U: (4, "<I"), _LEN8: (8, "<Q")}


def scan(data: bytes, start: int = 0, budget: int = MAX_PICKLE_OBJECT_BYTES) -> tuple[int, int]:
    """Check the pickle that starts at ``data[start]``; return (the offset just past its STOP, its
    estimated object bytes).

    Raises BadFile naming the first problem (UnsafePickle for an EXT opcode). ``budget`` bounds
    the estimated bytes of the objects unpickling would create (see the module docstring).
    """
    end = len(data)
    pos, count, cost = start, 0, 0
    while True:
        if pos >= end:
            raise BadFile("malformed pickle: the data ends before its STOP opcode")
        entry = _TABLE[data[pos]]
        if entry is None:
            raise BadFile(f"malformed pickle: unknown opcode 0x{data[pos]:02x} at byte {pos - start}")
        name, layout, width = entry
        at = pos
        pos += 1
        size = 0  # the argument's payload bytes, for the cost
        if layout == _FIXED:
            pos += width
        elif layout in _PREFIX:
            n, fmt = _PREFIX[layout]
            if pos + n > end:
                raise BadFile(f"malformed pickle: {name} at byte {at - start} is cut short")
            (size,) = struct.unpack_from(fmt, data, pos)
            if size < 0:
                raise BadFile(f"malformed pickle: {name} at byte {at - start} has a negative length")
            pos += n + size
        elif layout in (_LINE, _TWO_LINES):
            longest = MAX_INT_DIGITS if name in _INT_TEXT else _MAX_LINE
            for _ in range(2 if layout == _TWO_LINES else 1):
                newline = data.find(b"\n", pos, min(end, pos + longest + 1)) - pos
                if newline < 0 and name in _INT_TEXT:
                    raise BadFile(f"malformed pickle: {name} at byte {at - start} is not a number of at most "
                                  f"{MAX_INT_DIGITS} characters (at most {MAX_INT_DIGITS} are read)")  # fmt: skip
                if newline < 0:
                    raise BadFile(f"malformed pickle: {name} at byte {at - start} has no end of line "
                                  f"within {longest} bytes")  # fmt: skip
                size += newline
                pos += newline + 1
        if pos > end:
            raise BadFile(f"malformed pickle: {name} at byte {at - start} runs past the end of the data")
        if name in _EXT:
            raise UnsafePickle(f"refusing pickle opcode {name} (a global from copyreg's extension registry, "
                               "which bypasses the allowlist)")  # fmt: skip
        if name in ("LONG1", "LONG4") and size > MAX_INT_BYTES:
            raise BadFile(f"malformed pickle: an integer of {size} bytes at byte {at - start} "
                          f"(at most {MAX_INT_BYTES} are read)")  # fmt: skip
        if name in _MEMO_PUTS:
            index = _memo_index(data, at, pos, name)
            if index is None or not 0 <= index <= count:
                raise BadFile(f"malformed pickle: memo index {index} at opcode {count}")
        cost += SLOT + _COSTS.get(name, 0)
        if name in _STRINGS:
            cost += STRING + 4 * size
        elif name in _BYTES:
            cost += STRING + size
        if cost > budget:
            limit = f"{budget >> 20} MiB" if budget >= 1 << 20 else f"{budget} bytes"
            raise BadFile(f"pickle would create more than {limit} of objects (by opcode {count}, "
                          f"byte {at - start}); a state_dict needs far less")  # fmt: skip
        count += 1
        if name == "STOP":
            return pos, cost


def _memo_index(data: bytes, at: int, pos: int, name: str) -> int | None:
    """The memo index a PUT, BINPUT or LONG_BINPUT opcode (at ``data[at]``) stores to."""
    if name == "BINPUT":
        return data[at + 1]
    if name == "LONG_BINPUT":
        return struct.unpack_from("<I", data, at + 1)[0]
    text = bytes(data[at + 1 : pos - 1])
    return int(text) if text.isdigit() else None
