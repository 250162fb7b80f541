"""Checkpoints: one dict of tensors and plain data, written atomically, read without running code.

Writes go to a temporary file in the same folder, are fsync'ed, then renamed over the old file (and the
folder is fsync'ed), so a crash, a full disk or a signal at any moment leaves either the old checkpoint or
the new one, never a torn file. Reads use ``torch.load(weights_only=True)``: a pickle that tries to build
anything but tensors and plain containers is refused.

A training checkpoint holds at least: ``model`` (state_dict), ``model_name``, ``model_kwargs``,
``iteration``, ``optimizer``, ``schedule`` (warm-up state), ``rng``, ``loader`` (data order position),
``preprocessing`` (normalisation constants), ``classes``, ``metrics`` and ``config`` (the resolved recipe).
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from resnet.errors import UserError

FORMAT = "resnet-checkpoint/1"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Any) -> None:
    """Call ``write(file_object)`` on a temporary file and move it over ``path`` only if it all succeeded."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file as 0600; give it the permissions a plain open() would (0666 minus umask).
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # some filesystems refuse fsync on folders; the data itself is already safe
        pass


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically save a checkpoint dict (tensors and plain Python data only)."""
    atomic_write(path, lambda f: torch.save({"format": FORMAT, **state}, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint (ours or a bare state_dict) safely; bad files raise a one-line ``UserError``."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}; pass a run directory or a checkpoint file")
    try:
        with warnings.catch_warnings():
            # A plain pickle (protocol > 2) draws a warning before being refused or read; the outcome says enough.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location=map_location, weights_only=True)
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
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a dict of tensors, got {type(obj).__name__}")
    return obj


def _unpickler_reason(message: str) -> str:
    """The informative part of torch's weights-only refusal ("Unsupported global: GLOBAL os.system")."""
    m = re.search(r"WeightsUnpickler error:\s*(.+?)(?: was not an allowed global|\n|$)", message)
    reason = m.group(1).strip() if m else (message.strip().splitlines() or ["unsupported object"])[0]
    return reason[:160]


def is_training_checkpoint(obj: dict[str, Any]) -> bool:
    return obj.get("format") == FORMAT and "model" in obj
