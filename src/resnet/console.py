"""What a run shows a person: a tqdm bar on a terminal, periodic log lines otherwise; and signal handling.

Every line also goes to ``RUN_DIR/train.log``. Only rank 0 prints.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from tqdm import tqdm


class Console:
    def __init__(
        self,
        log_path: Path | None,
        total: int,
        initial: int,
        *,
        enabled: bool = True,
        progress: bool | None = None,
        echo: bool = True,
    ) -> None:
        self.enabled, self.echo = enabled, echo
        self.log_file = log_path.open("a") if (log_path is not None and enabled) else None
        use_bar = sys.stderr.isatty() if progress is None else progress
        self.bar = (
            tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True, smoothing=0.05)
            if (enabled and echo and use_bar)
            else None
        )

    def log(self, message: str) -> None:
        if not self.enabled:
            return
        if self.log_file is not None:
            self.log_file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
            self.log_file.flush()
        if self.bar is not None:
            self.bar.write(message)
        elif self.echo:
            print(message, flush=True)

    def train_line(self, rec: dict[str, Any]) -> None:
        """A training record: moves the bar (on a terminal) or prints a line (in a log)."""
        if not self.enabled:
            return
        text = (
            f"iter {rec['iteration']:>6}  train loss {rec['loss']:.4f}  error {rec['error']:6.2f}%  "
            f"lr {rec['lr']:.4g}  {rec['img_per_s']:,.0f} img/s"
        )
        if self.bar is not None:
            self.bar.update(rec["iteration"] - self.bar.n)
            self.bar.set_postfix_str(
                f"loss {rec['loss']:.3f} err {rec['error']:.1f}% lr {rec['lr']:.3g} {rec['img_per_s']:,.0f} img/s"
            )
            if self.log_file is not None:
                self.log_file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
                self.log_file.flush()
        else:
            self.log(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None


class StopSignals:
    """Within the block, SIGINT/SIGTERM only set a flag; the loop finishes its step, checkpoints and stops.

    A second signal of the same kind while stopping falls back to the default behaviour (Ctrl-C twice kills).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is not None:
            signal.signal(signum, self._old.get(signum, signal.SIG_DFL))
        self.signum = signum

    def __enter__(self) -> StopSignals:
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
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
