"""Start ``torchrun`` launchers from the tests: free ports, whole process groups, generous bounded waits.

Every launcher starts in its own session, so a test can signal it as a cluster would (the launcher alone) and
always kill everything it started on the way out. Waits are ceilings against a hung CI, not timings: a busy
machine only makes them slower.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from conftest import ROOT

#: Seconds a launcher may take before the test gives up (a hung CI, not a slow machine).
CEILING_S = 1200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(**extra: str) -> dict[str, str]:
    """The tests' environment for a launcher: these sources first (from any working directory), one thread."""
    first = [extra.pop("PYTHONPATH")] if "PYTHONPATH" in extra else []  # a test's own folders before ours
    path = os.pathsep.join([*first, str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def sets(overrides: list[str]) -> list[str]:
    return [a for s in overrides for a in ("--set", s)]


def torchrun(launcher: list[str], train: list[str], *, cwd: Path | None = None, **kw: str) -> subprocess.Popen:
    """``torchrun LAUNCHER -m resnet train TRAIN`` in its own session (stdout and stderr captured)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", *launcher, "-m", "resnet", "train", *train]
    return subprocess.Popen(cmd, cwd=cwd, env=env(**kw), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip


def two_nodes(port: int, node: int, *extra: str) -> list[str]:
    return ["--nnodes=2", f"--node_rank={node}", "--nproc_per_node=1", "--rdzv_backend=c10d",
            f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=test", "--rdzv_conf=join_timeout=600", *extra]  # fmt: skip


STANDALONE = ["--standalone", "--nproc_per_node=2"]


def finish(*procs: subprocess.Popen, ceiling: float = CEILING_S) -> list[tuple[int, str, str]]:
    """Wait for every launcher (within one shared ceiling); (status, stdout, stderr) of each."""
    deadline = time.monotonic() + ceiling
    results = []
    with killing(*procs):
        for p in procs:
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((p.returncode, out, err))
    return results


@contextlib.contextmanager
def killing(*procs: subprocess.Popen) -> Iterator[None]:
    """Kill each launcher's whole process group (its workers too) when the block ends, however it ends."""
    try:
        yield
    finally:
        for p in procs:
            # torchrun starts its workers in sessions of their own: kill them by name, then the launcher's group.
            for pid in [*descendants(p.pid), p.pid]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(os.getpgid(pid), signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                p.communicate(timeout=30)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children first), from /proc."""
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []
    return [d for c in children for d in (c, *descendants(c))]


def wait_for(predicate, what: str, ceiling: float = CEILING_S, every: float = 0.02) -> None:
    deadline = time.monotonic() + ceiling
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(every)


def logged_iteration(run: Path) -> int:
    """The last iteration the run's train.log reports (0 before the first)."""
    log = run / "train.log"
    words = [line.split() for line in log.read_text().splitlines()] if log.is_file() else []
    return max((int(w[3]) for w in words if len(w) > 3 and w[2] == "iter" and w[3].isdigit()), default=0)


def worker_pids(tag: str, rank: int) -> list[int]:
    """The worker processes of rank ``rank`` whose environment holds RESNET_TEST_TAG=tag (torchrun passes its
    environment on and adds RANK and LOCAL_RANK: the launcher itself has no RANK)."""
    found = []
    for d in Path("/proc").iterdir():
        try:
            environ = set((d / "environ").read_bytes().split(b"\0")) if d.name.isdigit() else set()
        except OSError:
            continue
        if {f"RESNET_TEST_TAG={tag}".encode(), f"RANK={rank}".encode()} <= environ:
            found.append(int(d.name))
    return found
