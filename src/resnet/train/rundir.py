"""Run directories: what a run records about itself, and whether a new command may resume it.

A run directory holds ``config.yaml`` (the resolved recipe), ``invocations.jsonl`` (every invocation:
command line, git commit, versions, device, time; append-only, one JSON object a line, so a kill mid-write
tears at most its own last line) and ``run.json`` (the same list as one JSON document, rewritten from the
log each time), ``metrics.jsonl``, ``checkpoint.pt``, ``train.log`` and, once finished, ``summary.json``.
Run directories written before the log existed keep their ``run.json``; it seeds the log on the next start.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
import torch

from resnet.config import RESUMABLE_KEYS, Config, diff, from_dict
from resnet.errors import UserError
from resnet.io import DirLock, check_output, owning, read_input_text, write_output
from resnet.safe_json import JSONError, load_json, parse_json
from resnet.train import distributed as dist
from resnet.version import __version__

#: Files that mark a folder as a run directory (any one of them).
RUN_MARKERS = (".lock", "invocations.jsonl", "run.json", "checkpoint.pt")
#: The files ``resnet train`` writes in a run directory: a link, FIFO or folder planted under one of these
#: names is refused before anything in the run is read or written.
RUN_FILES = ("checkpoint.pt", "metrics.jsonl", "config.yaml", "run.json", "invocations.jsonl", "summary.json",
             "train.log")  # fmt: skip
#: Largest run record read (invocations.jsonl of ~10,000 invocations; a metrics log is read by its own reader).
MAX_RECORD_BYTES = 16 << 20


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def info(self) -> Path:
        return self.root / "run.json"

    @property
    def invocations(self) -> Path:
        return self.root / "invocations.jsonl"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def log(self) -> Path:
        return self.root / "train.log"


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
    """Append this invocation (command line, environment, start time and iteration) to the run's log.

    The log is only ever appended to; ``run.json`` is then rewritten from it (atomically), so a torn or
    hand-damaged ``run.json`` loses nothing.
    """
    argv = sys.argv if argv is None else argv
    record = {
        "command": shlex.join(argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "start_iteration": start_iteration,
        **environment(device),
    }
    if not run.invocations.exists():  # a run directory of an earlier version: its run.json seeds the log
        old = _invocations_of_run_json(run.info)
        if old is None and run.info.is_file():  # damaged: kept aside for a person to read, never overwritten
            os.replace(run.info, run.root / "run.json.damaged")
        _append_lines(run.invocations, old or [])
    _append_lines(run.invocations, [record])
    everything = read_invocations(run.root)
    write_output(run.info, json.dumps({"invocations": everything}, indent=2) + "\n", owned=True)


def _append_lines(path: Path, records: list[dict[str, Any]]) -> None:
    """Append JSON lines durably (a torn last line, a kill mid-write, is closed first, not glued onto)."""
    write_output(path, "".join(json.dumps(r) + "\n" for r in records), owned=True, append=True)


def _invocations_of_run_json(path: Path) -> list[dict[str, Any]] | None:
    """The invocations an old-style run.json lists; None when it is missing or damaged (torn, not a dict)."""
    try:
        data = load_json(read_input_text(path, max_bytes=MAX_RECORD_BYTES, errors="replace"), str(path))
    except (OSError, ValueError):  # UserError is a ValueError
        return None
    invs = data.get("invocations") if isinstance(data, dict) else None
    return [i for i in invs if isinstance(i, dict)] if isinstance(invs, list) else None


def read_invocations(root: Path) -> list[dict[str, Any]]:
    """Every recorded invocation of a run directory (damaged lines skipped), oldest first."""
    log = RunDir(root).invocations
    if not log.exists():
        return _invocations_of_run_json(RunDir(root).info) or []
    found = []
    for line in read_input_text(log, max_bytes=MAX_RECORD_BYTES, errors="replace").splitlines():
        with contextlib.suppress(JSONError):
            rec = parse_json(line)
            if isinstance(rec, dict):
                found.append(rec)
    return found


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
        error = dist.broadcast_object(error)
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
