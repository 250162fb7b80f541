"""The CIFAR batches' Python-2 pickles, read with every resource bounded.

A pickle is a program for a stack machine; the official batches only build dicts, lists, strings, numbers
and numpy arrays, so that is all this reader allows (any other global is refused: no code runs). A fuzzed
file can still ask for absurd amounts of memory without naming a single global: a memo slot at index 2^31
(the unpickler grows its memo table to twice that), an array header claiming 10^10 elements, a length
field beyond the end of the file. So, before unpickling:

- the file is read whole, up to :data:`MAX_BATCH_BYTES` (no length field can then reach past real bytes);
- the opcodes are walked once (``pickletools``): memo indices beyond the number of opcodes, and more containers
  or opcodes than any batch has (each empty set is 216 bytes from one byte of file) are refused;
- arrays are rebuilt through a subclass whose ``__setstate__`` refuses object dtypes and any array larger
  than the file itself (an array's bytes are stored in the file, so a real one always fits).

Whatever still goes wrong (``MemoryError``, ``OverflowError``, ``RecursionError``, a malformed opcode) becomes
one line naming the file.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
from typing import IO, Any

import numpy as np

from resnet.errors import UserError

#: Largest batch file read: CIFAR-100's ``train`` (50,000 images) is 155 MiB, the largest official one.
MAX_BATCH_BYTES = 512 * 2**20
_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
#: Opcodes that make a new container or object: one byte of EMPTY_SET is a 216-byte set, so 20 MB of them
#: would grow to 4.7 GB. An official batch makes a few dozen (a dict, two lists, the array's tuples).
_MAKERS = frozenset(
    {"EMPTY_SET", "EMPTY_DICT", "EMPTY_LIST", "EMPTY_TUPLE", "FROZENSET", "DICT", "LIST", "TUPLE", "TUPLE1"}
    | {"TUPLE2", "TUPLE3", "OBJ", "INST", "NEWOBJ", "NEWOBJ_EX", "REDUCE", "BUILD", "MARK"}
)
#: At most this many of them (216 bytes each at worst: 22 MB); CIFAR-100's train batch needs under 100.
MAX_CONTAINERS = 100_000
#: And at most this many opcodes in all: CIFAR-100's train batch (50,000 names and 2 x 50,000 labels, each
#: with its memo entry) has under 400,000; every opcode leaves at most one object on the stack.
MAX_OPCODES = 4_000_000


class _BoundedArray(np.ndarray):
    """An ndarray whose unpickled state may not be larger than the pickle that holds it."""

    limit = 0  # bytes; set per file by the unpickler

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("malformed array state")
        shape, dtype = state[-4], state[-3]
        if not isinstance(dtype, np.dtype) or dtype.hasobject:
            raise pickle.UnpicklingError("arrays of Python objects are not allowed")
        _check_size(shape, dtype.itemsize, self.limit)
        super().__setstate__(state)


def _check_size(shape: Any, itemsize: int, limit: int) -> None:
    dims = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    if not all(isinstance(d, int) and 0 <= d for d in dims):
        raise pickle.UnpicklingError(f"bad array shape {dims!r:.80}")
    if math.prod(dims) * itemsize > limit:
        raise pickle.UnpicklingError(f"an array of shape {dims!r:.80} is larger than the file holding it")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays, and refuses every other global."""

    RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}
    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def __init__(self, blob: bytes) -> None:
        super().__init__(io.BytesIO(blob), encoding="latin1")
        self.limit = len(blob)

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.RECONSTRUCT:
            limit = self.limit
            bounded = type("_BoundedArray", (_BoundedArray,), {"limit": limit})

            def reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
                _check_size(shape, np.dtype(dtype).itemsize, limit)  # numpy allocates this at once
                return np.ndarray.__new__(bounded, shape, dtype)

            return reconstruct
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are allowed)")


def _check_opcodes(blob: bytes) -> None:
    """Walk the opcodes once: malformed ones and memo indices no real pickle of this size uses are refused."""
    makers = 0
    for count, (op, arg, _) in enumerate(pickletools.genops(io.BytesIO(blob))):
        if op.name in _PUTS and not (isinstance(arg, int) and 0 <= arg <= count):
            raise pickle.UnpicklingError(f"memo index {arg} at opcode {count}")
        makers += op.name in _MAKERS
        if makers > MAX_CONTAINERS or count >= MAX_OPCODES:
            raise pickle.UnpicklingError(
                f"more than {MAX_CONTAINERS:,} containers or {MAX_OPCODES:,} opcodes (a batch has far fewer); "
                "unpickling it could take gigabytes"
            )


def read_pickle(f: IO[bytes], name: str) -> dict[str, Any]:
    """One batch file as a dict with str keys, whichever way its keys were pickled (bytes or str)."""
    blob = f.read(MAX_BATCH_BYTES + 1)
    if len(blob) > MAX_BATCH_BYTES:
        raise UserError(f"{name}: larger than any CIFAR batch ({MAX_BATCH_BYTES >> 20} MiB); not a CIFAR batch file")
    try:
        _check_opcodes(blob)
        data = _ArrayUnpickler(blob).load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        MemoryError,
        OverflowError,
        RecursionError,
        UnicodeError,
    ) as e:
        reason = f"{type(e).__name__}: {str(e)[:160]}"
        raise UserError(
            f"{name}: truncated or corrupt CIFAR batch ({reason}); download it again (resnet data download)"
        ) from None
    if not isinstance(data, dict):
        raise UserError(f"{name}: not a CIFAR batch (expected a dict, got {type(data).__name__})")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in data.items()}
