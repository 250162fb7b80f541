"""Meters of the training loop: the loss/error window between log lines, and training throughput.

The per-iteration loss and wrong count stay on the device until a log, eval or checkpoint point, so a GPU
never waits on Python between them (one host sync per window, not per step). Throughput counts only the
time spent in training steps: evaluation and checkpoint time is excluded wherever they fall, whether or
not on a log point.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from resnet.train import distributed as dist


class StepClock:
    """Seconds spent training since the last reading; paused around evaluations and checkpoints."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._since: float | None = time.perf_counter()

    def pause(self) -> None:
        if self._since is not None:
            self.seconds += time.perf_counter() - self._since
            self._since = None

    def resume(self) -> None:
        if self._since is None:
            self._since = time.perf_counter()

    def seconds_so_far(self) -> float:
        """Training seconds since the last reset, without resetting."""
        since = self._since
        return self.seconds + (time.perf_counter() - since if since is not None else 0.0)

    def read_and_reset(self) -> float:
        """Training seconds since the last reset (the clock keeps running if it was running)."""
        running = self._since is not None
        self.pause()
        seconds, self.seconds = self.seconds, 0.0
        if running:
            self.resume()
        return seconds


class LossWindow:
    """Loss and wrong-prediction counts of the iterations since the last training record, on the device."""

    def __init__(self, size: int, device: torch.device, per_rank_batch: int, world: int) -> None:
        self.values = torch.zeros(size, 2, dtype=torch.float64, device=device)
        self.filled = 0
        self.per_rank, self.world = per_rank_batch, world
        self.clock = StepClock()
        self.cursor: torch.Tensor | None = None  # the next row on the device, for a captured step

    def add(self, loss: torch.Tensor, wrong: torch.Tensor) -> None:
        self.values[self.filled, 0], self.values[self.filled, 1] = loss, wrong
        self.filled += 1

    def add_on_device(self, loss: torch.Tensor, wrong: torch.Tensor) -> None:
        """``add`` with the row index kept on the device, so a CUDA graph can replay it; the caller counts
        ``filled`` on the host after each replay (see :mod:`resnet.train.graphed`)."""
        if self.cursor is None:
            self.cursor = torch.zeros(1, dtype=torch.int64, device=self.values.device)
        row = torch.stack([loss.detach().double(), wrong.double()]).view(1, 2)
        self.values.index_copy_(0, self.cursor, row)
        self.cursor.add_(1)

    def state_dict(self) -> dict[str, Any] | None:
        """The unlogged part of the window, every rank's rows (a collective under DDP), for a checkpoint
        written between log points: a stop there must not split the window, or the resumed run's training
        records would differ from an uninterrupted run's. None when the window is empty."""
        if self.filled == 0:
            return None
        rows = self.values[: self.filled].clone()
        if self.world > 1:
            gathered = [torch.empty_like(rows) for _ in range(self.world)]
            torch.distributed.all_gather(gathered, rows)
            rows = torch.stack(gathered)
        else:
            rows = rows.unsqueeze(0)
        return {"rows": rows.cpu(), "per_rank": self.per_rank, "seconds": self.clock.seconds_so_far()}

    def load_state_dict(self, state: dict[str, Any] | None, rank: int) -> None:
        """Continue a window saved by :meth:`state_dict` (ranks x rows x (loss, wrong)). The same world size
        takes its own rank's rows back (bit-identical records); another world size gets the rows' mean loss
        and their wrong counts scaled to its own per-rank batch (the record's averages stay the same)."""
        if not state:
            return
        rows = state["rows"].to(self.values.device, torch.float64)
        if rows.dim() != 3 or rows.shape[2] != 2 or not 0 < rows.shape[1] <= len(self.values):
            raise ValueError(f"the saved loss window has shape {tuple(rows.shape)}")
        if rows.shape[0] == self.world:
            mine = rows[rank]
        else:
            mine = rows.mean(dim=0)
            mine[:, 1] *= self.per_rank / float(state["per_rank"])
        self.filled = rows.shape[1]
        self.values[: self.filled] = mine
        self.cursor = torch.full((1,), self.filled, dtype=torch.int64, device=self.values.device)
        self.clock.seconds += float(state.get("seconds", 0.0))

    def first_nonfinite(self) -> tuple[int, float] | None:
        """(position in the window, loss) of the first NaN/Inf loss on any rank, or None (one host sync)."""
        losses = self.values[: self.filled, 0]
        bad = torch.nonzero(~torch.isfinite(losses))
        first = torch.tensor([bad[0, 0].item() if len(bad) else math.inf], dtype=torch.float64, device=losses.device)
        if self.world > 1:
            torch.distributed.all_reduce(first, op=torch.distributed.ReduceOp.MIN)
        if not math.isfinite(first.item()):
            return None
        at = int(first.item())
        return at, (losses[at].item() if self.world == 1 else math.nan)

    def record(self, iteration: int, lr: float) -> dict[str, Any] | None:
        """The training record of the window (loss and error averaged over ranks), and a fresh window."""
        if self.filled == 0:
            return None
        sums = self.values[: self.filled].sum(dim=0)
        if self.world > 1:
            dist.all_reduce_sum(sums)
        seconds = self.clock.read_and_reset()
        images = self.filled * self.per_rank * self.world
        rec = {
            "iteration": iteration,
            "split": "train",
            "loss": sums[0].item() / (self.filled * self.world),
            "error": 100.0 * sums[1].item() / images,
            "lr": lr,
            "img_per_s": images / max(seconds, 1e-9),
        }
        self.filled = 0
        if self.cursor is not None:
            self.cursor.zero_()
        return rec
