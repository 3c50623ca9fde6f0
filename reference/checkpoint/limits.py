"""The resource limits of the weights readers (spec clause 13.5), in one place.

Every reader keeps its memory within a small multiple of the bytes of the arrays it returns plus a
fixed allowance, and its time within a fixed allowance plus a rate per byte of file, whatever
sizes a file declares. Each limit below is far above what a real ParCNetV2 file needs (measured:
the torch.save training checkpoint of parcnetv2_base with its AdamW state and EMA weights has a
308 KB data.pkl of 90,589 opcodes and 2,002 zip members); crossing one is an error naming it.
"""

from __future__ import annotations

#: Bytes of one pickle (torch's data.pkl; the pickles at the head of a legacy file, together).
MAX_PICKLE_BYTES = 16 << 20
#: Estimated bytes of the Python objects one pickle may create (see ``pickle_scan``); every
#: opcode costs at least ``pickle_scan.SLOT`` bytes, so this also bounds the opcode count (1 Mi).
MAX_PICKLE_OBJECT_BYTES = 64 << 20
#: Integers in pickles, JSON and .npy headers: at most this many bytes (256 bits) or digits.
MAX_INT_BYTES = 32
MAX_INT_DIGITS = 78
#: Sizes, strides and offsets of tensors are below this (NumPy's own limit is 2**63 bytes).
MAX_EXTENT = 1 << 62
#: Tensors have at most NumPy's number of dimensions.
MAX_NDIM = 64

#: Zip archives: members, and the largest single read of the file (the central directory).
MAX_ZIP_MEMBERS = 16384
MAX_ZIP_READ = 4 << 20
#: Deflate expands at most 1032:1 (RFC 1951: a 258-byte match per 2 bits); a member may declare
#: at most this ratio plus a slack for tiny members. Other compression methods are refused.
MAX_DEFLATE_RATIO = 1032
DEFLATE_SLACK = 1 << 20
#: Decompression and copies proceed in chunks of this size.
CHUNK = 1 << 20

#: Views may overlap or broadcast (stride 0): the arrays built may exceed the data stored by this
#: factor plus the slack, not more (time stays proportional to the file).
MAX_EXPANSION = 16
EXPANSION_SLACK = 64 << 20
#: Stored bytes a reader may read without returning them (storages only partly viewed).
MAX_UNRETURNED_BYTES = 32 << 20

#: safetensors: the JSON header's bytes, and the estimated bytes of the objects parsing it makes.
MAX_SAFETENSORS_HEADER = 16 << 20
MAX_JSON_OBJECT_BYTES = 64 << 20
#: .npy headers (NumPy's own default limit).
MAX_NPY_HEADER = 10000

# The bounds these limits give (clause 13.5), stated for tests and documentation: peak memory
# above the interpreter's own stays within MEMORY_MULTIPLE x the bytes of the arrays returned plus
# MEMORY_ALLOWANCE; CPU time within TIME_ALLOWANCE_S plus TIME_PER_BYTE_S per byte of file.
MEMORY_MULTIPLE = 2
MEMORY_ALLOWANCE = 128 << 20
TIME_ALLOWANCE_S = 2.0
TIME_PER_BYTE_S = 5e-6
