"""Run directories: what a run records about itself, and whether a new command may resume it.

A run directory holds ``config.yaml`` (the resolved recipe), ``run.json`` (every invocation: command line,
git commit, versions, device, time), ``metrics.jsonl``, ``checkpoint.pt``, ``train.log`` and, once
finished, ``summary.json``.
"""

from __future__ import annotations

import json
import platform
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from resnet.config import RESUMABLE_KEYS, Config, diff, from_dict
from resnet.errors import UserError
from resnet.io import atomic_write_text


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
    import numpy

    from resnet.version import __version__

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
    """Append this invocation (command line, environment, start time and iteration) to run.json."""
    data: dict[str, Any] = {"invocations": []}
    if run.info.is_file():
        try:
            data = json.loads(run.info.read_text())
        except json.JSONDecodeError:
            pass
    argv = sys.argv if argv is None else argv
    data.setdefault("invocations", []).append(
        {
            "command": shlex.join(argv),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "start_iteration": start_iteration,
            **environment(device),
        }
    )
    atomic_write_text(run.info, json.dumps(data, indent=2) + "\n")


def check_resumable(run: RunDir, stored: dict[str, Any], cfg: Config) -> None:
    """Refuse to resume a run under a different recipe; harmless differences (see RESUMABLE_KEYS) pass."""
    try:  # keys added since the run started count as their defaults (what the run trained with)
        stored = from_dict(stored).to_dict()
    except UserError:
        pass
    changed = {k: v for k, v in diff(stored, cfg.to_dict()).items() if k not in RESUMABLE_KEYS}
    if changed:
        shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, b_a in list(changed.items())[:4] for a, b in [b_a])
        raise UserError(
            f"{run.root} holds a run with a different recipe ({shown}); resume it with the same settings, "
            "or choose a new --out"
        )
