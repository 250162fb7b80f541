"""Graceful stops: SIGINT/SIGTERM/SIGUSR1 finish the current step, write a checkpoint and stop (every rank at once).

SIGUSR1 is what SLURM sends ahead of a job's time limit or preemption (``#SBATCH --signal=USR1@90``); clusters
send SIGTERM. The process then exits with 128 + the signal's number (143 for SIGTERM, 138 for SIGUSR1, 130 for
Ctrl-C) after its checkpoint is written, which a requeue script tells from a failure (1 or 2).
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: Set by :func:`startup_handler` when a Ctrl-C lands before the training loop took over the signals.
_STARTUP = {"interrupted": False}


def startup_handler(signum: int, _frame: FrameType | None) -> None:
    """SIGINT before training starts: remember it, then interrupt as Python does.

    Remembering matters because a library may swallow the ``KeyboardInterrupt`` (an ``except`` around an
    import) or turn it into another error (a half-imported module); the command line and the training loop
    then still know that the user asked to stop. Installed by the command line (:func:`install_startup_handler`).
    """
    _STARTUP["interrupted"] = True
    raise KeyboardInterrupt


def install_startup_handler() -> Any:
    """Install :func:`startup_handler` for SIGINT (main thread only); returns the previous handler."""
    _STARTUP["interrupted"] = False
    try:
        return signal.signal(signal.SIGINT, startup_handler)
    except ValueError:  # not the main thread
        return None


def interrupted_at_startup() -> bool:
    return _STARTUP["interrupted"]


class StopSignals:
    """Within the block, SIGINT/SIGTERM/SIGUSR1 only set a flag; the loop finishes its step, checkpoints and stops.

    A second signal of the same kind while stopping falls back to the default behaviour (Ctrl-C twice kills).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, *((signal.SIGUSR1,) if hasattr(signal, "SIGUSR1") else ()))

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is not None:
            signal.signal(signum, self._old.get(signum, signal.SIG_DFL))
        self.signum = signum

    def __enter__(self) -> StopSignals:
        if interrupted_at_startup():  # a Ctrl-C during start-up that something swallowed: stop before training
            raise KeyboardInterrupt
        try:
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        except ValueError:  # not the main thread: signals cannot be caught here
            self._old.clear()
        return self

    def __exit__(self, *exc: object) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)

    def requested(self, world_size: int = 1) -> bool:
        """Whether to stop now; under DDP every rank agrees (any rank's signal stops all of them)."""
        flag = self.signum is not None
        if world_size > 1:
            import torch
            import torch.distributed as dist

            t = torch.tensor([1.0 if flag else 0.0], device=_dist_device())
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item())
            if flag and self.signum is None:
                self.signum = signal.SIGTERM
        return flag

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "stop"

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or 0)


def _dist_device() -> torch.device:
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
