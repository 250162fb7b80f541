"""Checkpoint files: one dict of tensors and plain data, written atomically, read without running code.

Writes go through :func:`resnet.io.write_output` (a crash or a full disk leaves the old file intact). Reads use
``torch.load(weights_only=True)``: a pickle that tries to build anything but tensors and plain containers is refused.

What the dict holds, and its validation, is :class:`resnet.checkpoint.typed.Checkpoint`.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import IO, Any

import torch

from resnet.errors import UserError
from resnet.io import open_input, write_output

FORMAT = "resnet-checkpoint/1"
#: Largest checkpoint read, unpacked: ResNet-152 with its optimizer state is 0.5 GB, ResNet-1202's 0.16 GB.
MAX_CHECKPOINT_BYTES = 4 * 2**30
#: ``torch.save`` stores its archive members uncompressed; a member that unpacks to far more than the file
#: is a zip bomb (4.2 MB that unpack to 4.3 GB), whatever the total.
MAX_UNPACK_RATIO = 16


def check_archive(path: Path, f: IO[bytes] | None = None) -> None:
    """Refuse a torch zip archive whose members unpack beyond :data:`MAX_CHECKPOINT_BYTES` or far beyond the
    file's own size, before ``torch.load`` allocates anything. ``f``: ``path`` already open (it is read, not
    ``path`` again, and left where it was)."""
    source: Path | IO[bytes] = path if f is None else f
    start = 0 if f is None else f.tell()
    try:
        if not zipfile.is_zipfile(source):
            return  # the legacy format: a plain pickle stream, whose sizes are those of the file
        with zipfile.ZipFile(source) as z:  # a file object passed in stays open
            unpacked = sum(info.file_size for info in z.infolist())
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise UserError(f"{path}: not a readable checkpoint (damaged archive: {str(e)[:160]})") from None
    finally:
        if f is not None:
            f.seek(start)
    size = path.stat().st_size if f is None else os.fstat(f.fileno()).st_size
    if unpacked > MAX_CHECKPOINT_BYTES or unpacked > MAX_UNPACK_RATIO * size + 2**20:
        raise UserError(
            f"{path}: refused: its archive unpacks to {unpacked:,} bytes from {size:,} (a zip bomb or not a "
            f"checkpoint; torch stores checkpoints uncompressed, and at most {MAX_CHECKPOINT_BYTES >> 30} GiB are read)"
        )


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Save a checkpoint dict (tensors and plain Python data only) under the output rule (atomic, no links,
    never over a file resnet did not write: :func:`resnet.io.write_output`)."""
    write_output(path, lambda f: torch.save({"format": FORMAT, **state}, f))


def load_file(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The dict a torch file holds (ours or a bare state_dict), read safely; bad files: a one-line ``UserError``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}; pass a run directory or a checkpoint file")
    with open_input(path) as f:  # the regular file checked on its descriptor is the one read, not a swapped one
        check_archive(path, f)
        obj = _torch_load(f, path, map_location)
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a dict of tensors, got {type(obj).__name__}")
    return obj


def _torch_load(f: IO[bytes], path: Path, map_location: str | torch.device) -> Any:
    """``torch.load(f, weights_only=True)``; whatever it refuses, as one line naming ``path``."""
    try:
        with warnings.catch_warnings():
            # A plain pickle (protocol > 2) draws a warning before being refused or read; the outcome says enough.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserError(
            f"{path}: refused: the file holds objects other than tensors and plain data, and loading it could "
            f"run code ({_unpickler_reason(str(e))}). Convert it where you trust it, saving only its state_dict"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a readable checkpoint (truncated or corrupt: {first[:160]})") from None
    except (KeyError, IndexError, AssertionError) as e:
        # The weights-only unpickler reads the bytes of a file that is no checkpoint (a text file, say) as
        # opcodes and fails wherever they lead it: a KeyError on an unknown memo entry, for instance.
        raise UserError(f"{path}: not a readable checkpoint (no torch or pickle data: {type(e).__name__})") from None


def _unpickler_reason(message: str) -> str:
    """The informative part of torch's weights-only refusal ("Unsupported global: GLOBAL os.system")."""
    m = re.search(r"WeightsUnpickler error:\s*(.+?)(?: was not an allowed global|\n|$)", message)
    reason = m.group(1).strip() if m else (message.strip().splitlines() or ["unsupported object"])[0]
    return reason[:160]
