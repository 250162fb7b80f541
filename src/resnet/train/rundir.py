"""Run directories as training uses them: claiming one (lock, ownership), recording an invocation (the
environment that produced a result), and whether a new command may resume the run.

The files and their format (``config.yaml``, ``invocations.jsonl``, ``run.json``, ``metrics.jsonl``, ...)
live in :mod:`resnet.rundir_format`, which analysis reads through too.
"""

from __future__ import annotations

import contextlib
import platform
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy
import torch

from resnet.config import RESUMABLE_KEYS, Config, diff, from_dict
from resnet.errors import UserError
from resnet.io import DirLock, check_output, owning
from resnet.rundir_format import RUN_FILES, RUN_MARKERS, RunDir, append_invocation
from resnet.train import distributed as dist
from resnet.version import __version__


def git_commit() -> str | None:
    """The source tree's commit (with ``-dirty`` when it has uncommitted changes), if it is a checkout."""
    src = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=src, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({device})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def environment(device: torch.device) -> dict[str, Any]:
    """What produced a result: commit, versions, device, host."""

    return {
        "git_commit": git_commit(),
        "resnet": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "device": device_name(device),
        "host": socket.gethostname(),
    }


def record_invocation(run: RunDir, argv: list[str] | None, device: torch.device, start_iteration: int) -> None:
    """Append this invocation (command line, environment, start time and iteration) to the run's log (see
    :func:`resnet.rundir_format.append_invocation`)."""
    argv = sys.argv if argv is None else argv
    record = {
        "command": shlex.join(argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "start_iteration": start_iteration,
        **environment(device),
    }
    append_invocation(run, record)


def claim(run: RunDir, held: contextlib.ExitStack) -> None:
    """Lock the run directory before anything in it is read (rank 0; the other ranks learn the outcome).

    A folder that holds files but is no run directory is refused (they could be the user's own
    ``config.yaml`` or ``metrics.jsonl``). A directory this call creates is removed again on failure when
    nothing was written into it (a bad --data-dir leaves nothing behind).
    """
    error = None
    if dist.is_main():
        try:
            _claim_main(run, held)
        except UserError as e:
            if dist.world_size() == 1:
                raise
            error = str(e)
    if dist.world_size() > 1:
        error = dist.broadcast_object(error)  # type: ignore[assignment]
        if error is not None:
            raise UserError(error)


def check_out_dir(root: Path) -> None:
    """Refuse an ``--out`` that is a file, or a folder of other files (the real run and ``--dry-run`` alike)."""
    if root.exists() and not root.is_dir():
        raise UserError(f"--out {root} is a file, not a directory; choose a directory for the run")
    if root.is_dir():
        entries = {p.name for p in root.iterdir()}
        if entries and not entries & set(RUN_MARKERS):
            shown = ", ".join(sorted(entries)[:4]) + (", ..." if len(entries) > 4 else "")
            raise UserError(
                f"{root} holds other files ({shown}) and no run; training there would overwrite them: "
                "choose a new or empty directory for the run (--out)"
            )


def _claim_main(run: RunDir, held: contextlib.ExitStack) -> None:
    root = run.root
    check_out_dir(root)
    if not root.is_dir():
        created = [p for p in (root, *root.parents) if not p.exists()]
        root.mkdir(parents=True)
        held.callback(_remove_if_empty, created)  # runs after the lock is released (ExitStack: last in, first out)
    held.enter_context(DirLock(root))
    held.enter_context(owning(root))  # its own files are replaced in place (see resnet.io's output rule)
    for name in RUN_FILES:
        check_output(root / name, owned=True)
    remove_torn_writes(root)


def remove_torn_writes(root: Path) -> list[Path]:
    """Delete what a killed atomic write left (``.checkpoint.pt.<random>.tmp`` and the like, see
    :func:`resnet.io.atomic_write`). Only the lock holder calls this, so no live write can be among them."""
    removed = []
    for tmp in root.glob(".*.tmp"):
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove the folders this process created, innermost first, as long as nothing was written into them."""
    for folder in folders:
        try:
            folder.rmdir()  # fails (and so keeps it) as soon as anything is in it
        except OSError:
            return


def check_resumable(run: RunDir, stored: dict[str, Any], cfg: Config) -> None:
    """Refuse to resume a run under a different recipe; harmless differences (see RESUMABLE_KEYS) pass."""
    try:  # keys added since the run started count as their defaults (what the run trained with)
        stored = from_dict(stored).to_dict()
    except UserError:
        pass
    differences = diff(stored, cfg.to_dict())
    changed = {k: v for k, v in differences.items() if k not in RESUMABLE_KEYS}
    if changed:
        shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, b_a in list(changed.items())[:4] for a, b in [b_a])
        hint = "resume it with the same settings, or choose a new --out"
        if set(changed) == {"schedule.milestones"} and "schedule.iterations" in differences:
            # `--iterations N` scales the milestones with the run; extending a run keeps them where they are.
            n = cfg.schedule.iterations
            hint = f"to train it to {n} iterations on its own milestones use --set schedule.iterations={n}; {hint}"
        raise UserError(f"{run.root} holds a run with a different recipe ({shown}); {hint}")
