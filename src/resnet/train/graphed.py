"""A training step that a CUDA graph can capture: forward, backward and SGD replayed as one launch.

At the paper's batch of 128 a CIFAR ResNet is launch-bound: a ResNet-20 step is about 220 kernels of a few
microseconds each, so eager PyTorch spends its time in Python and the driver, not in the math. Captured
once and replayed, the whole step costs one launch. A graph replays fixed kernels on fixed addresses, so
everything the step reads or changes lives on the device at a fixed place:

- the batch: static buffers that :meth:`DeviceLoader.next_into` fills before each replay;
- the learning rate: a device tensor handed to SGD (fused on CUDA), chosen on the device between the
  warm-up lr and the schedule's lr; the schedule's lr (milestones, plateaus) is written from the host
  only when it changes;
- the error-triggered warm-up of ResNet-110/1202 (section 4.2: lr 0.01 "until the training error is below
  80%"): the ring of recent training errors and the switch are device tensors (:class:`DeviceWarmup`).
  The step records into the ring; every ``CHECK_EVERY`` iterations a few device ops outside the graph
  (with the DDP all-reduce) may end the warm-up, without the host reading anything. The host reads the
  state back at log, eval and checkpoint points, into the schedule's usual ``state_dict`` format;
- loss and wrong counts: written into the :class:`LossWindow` at a device cursor.

On the CPU (``train.cuda_graph=true`` there) the same step function runs uncaptured with the eager step's
for-loop SGD: the weights equal the eager step's exactly (tests/test_graphed.py). Under DDP the capture
follows PyTorch's recipe for DDP graphs (11 eager iterations on a side stream first, so its gradient
buckets are settled); that path has not run on several GPUs yet.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet.config import Config
from resnet.train.meters import LossWindow
from resnet.train.runtime import Runtime
from resnet.train.schedule import CHECK_EVERY, LRSchedule

#: Eager iterations on a side stream before capture (cuDNN autotuning, momentum buffers, allocator warm-up).
#: PyTorch's CUDA-graph notes ask for at least 11 under DDP (its bucketing settles by then).
WARMUP_ITERS, WARMUP_ITERS_DDP = 3, 11


def use_cuda_graph(cfg: Config, loader: object) -> bool:
    """Whether ``train.cuda_graph`` turns the captured step on (config.validate refused what cannot work).

    ``auto`` stays off until the GPU check (benchmarks/gpu_check.py) has measured the graph against eager.
    """
    return cfg.train.cuda_graph == "true" and hasattr(loader, "next_into")


class DeviceWarmup:
    """The warm-up's running error and switch as device tensors (mirrors :meth:`LRSchedule.observe`)."""

    def __init__(self, schedule: LRSchedule, device: torch.device, per_rank_batch: int) -> None:
        cfg = schedule.cfg
        self.warmup_lr, self.threshold = cfg.warmup_lr, cfg.warmup_until_error
        self.window, self.scale = schedule.window, 100.0 / per_rank_batch
        self.ring = schedule._errors.detach().clone().to(device)  # float32, as in the schedule
        self.seen = torch.tensor(schedule._seen, dtype=torch.int64, device=device)
        self.warming = torch.tensor(schedule.warming_up, device=device)
        ended = schedule.warmup_ended_at
        self.ended_at = torch.tensor(-1 if ended is None else ended, dtype=torch.int64, device=device)
        self.running = torch.tensor(schedule.last_running_error, dtype=torch.float64, device=device)
        self.host_warming = schedule.warming_up  # what the host knew at its last read

    def lr(self, after_warmup: torch.Tensor) -> torch.Tensor:
        """This step's lr (device): the warm-up lr while warming up, else the schedule's."""
        if self.warmup_lr is None:
            return after_warmup
        return torch.where(self.warming, self.warmup_lr, after_warmup)

    def record(self, wrong: torch.Tensor) -> None:
        """Inside the step: this iteration's training error (%) into the ring, while warming up."""
        if self.warmup_lr is None:
            return
        err = (wrong.double() * self.scale).float()  # the eager path stores a double into a float32 ring
        idx = (self.seen % self.window).view(1)
        self.ring.index_copy_(0, idx, torch.where(self.warming, err, self.ring.index_select(0, idx)))
        self.seen.add_(self.warming.long())

    def check(self, iteration: int, reduce: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
        """Outside the graph, every CHECK_EVERY iterations: end the warm-up once the running error is low enough."""
        if self.warmup_lr is None or not self.host_warming or iteration % CHECK_EVERY:
            return
        ready = self.warming & (self.seen >= self.window)
        running = self.ring.mean()
        running = (reduce(running) if reduce is not None else running).double()
        self.running.copy_(torch.where(ready, running, self.running))
        end = ready & (running < self.threshold)
        self.ended_at.copy_(torch.where(end, iteration, self.ended_at))
        self.warming.logical_and_(~end)

    def read_into(self, schedule: LRSchedule) -> tuple[int, float] | None:
        """Copy the device state into ``schedule`` (one host read); (iteration, running error) if the warm-up
        ended since the last read."""
        if self.warmup_lr is None:
            return None
        flat = torch.cat([torch.stack([self.warming.double(), self.ended_at.double(), self.running,
                                       self.seen.double()]), self.ring.double()]).cpu()  # fmt: skip
        warming, ended_at, running, seen = flat[:4].tolist()
        schedule._errors.copy_(flat[4:].float())
        schedule._seen, schedule.last_running_error = int(seen), running
        was, self.host_warming = self.host_warming, bool(warming)
        schedule.warming_up = bool(warming)
        schedule.warmup_ended_at = None if ended_at < 0 else int(ended_at)
        if was and not warming:
            return int(ended_at), running
        return None


class GraphedStep:
    """The training step with its state on the device; captured on CUDA, run as is on the CPU.

    ``run(iteration)`` does one iteration: the next batch into the static buffers, the schedule's lr if it
    changed, then the step (eager warm-up iterations, the capture, replays). The caller counts the
    iteration and the window row (``window.filled``) on the host.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: LRSchedule,
        loader: Any,
        rt: Runtime,
        window: LossWindow,
        *,
        capture: bool,
        warmup_iters: int = WARMUP_ITERS,
    ) -> None:
        self.net, self.optimizer, self.schedule, self.loader, self.rt = net, optimizer, schedule, loader, rt
        self.window, self.capture, self.eager_left = window, capture, warmup_iters
        dev = rt.device
        self.x: torch.Tensor | None = None  # the static batch, laid out as the eager step's first batch
        self.y: torch.Tensor | None = None
        self.warmup = DeviceWarmup(schedule, dev, window.per_rank)
        self._sched_value = math.nan
        self.sched_lr = torch.zeros((), dtype=torch.float32, device=dev)  # fused SGD reads a float32 lr
        self.lr = torch.zeros((), dtype=torch.float32, device=dev)
        self.host_groups = [{k: g.get(k) for k in ("lr", "foreach", "fused")} for g in optimizer.param_groups]
        for g in optimizer.param_groups:
            # CUDA: fused SGD reads the lr tensor in its kernel. CPU: the eager step's for-loop SGD (it turns
            # the 0-dim lr into the same float), so the weights match the eager step bit for bit.
            g["lr"], g["foreach"], g["fused"] = self.lr, False, dev.type == "cuda"
        self.graph: Any = None

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.rt.autocast_dtype is None:
            return contextlib.nullcontext()
        # Autocast's weight cache would hold tensors from outside the graph's memory pool.
        return torch.autocast(self.rt.device.type, dtype=self.rt.autocast_dtype, cache_enabled=False)

    def step(self) -> None:
        """The captured work: lr choice, forward, loss, backward, SGD, meters, warm-up ring. No host reads."""
        assert self.x is not None and self.y is not None  # the static batch, placed before any step
        self.lr.copy_(self.warmup.lr(self.sched_lr))
        with self._autocast():
            logits = self.net(self.x)
        loss = F.cross_entropy(logits.float(), self.y)
        self.optimizer.zero_grad(set_to_none=True)  # the backward then allocates the grads (in the graph pool)
        loss.backward()
        self.optimizer.step()
        wrong = (logits.detach().argmax(dim=1) != self.y).sum()
        self.window.add_on_device(loss, wrong)
        self.warmup.record(wrong)

    def run(self, iteration: int, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Iteration ``iteration`` (0-based): batch, lr, step; then the warm-up check it is due for."""
        if self.x is None:
            x, y = self.loader.next()
            x = x.contiguous(memory_format=torch.channels_last) if self.rt.channels_last else x.contiguous()
            self.x, self.y = x.clone(), y.clone()  # clone keeps the strides (a 1-channel batch may be NHWC)
        else:
            self.loader.next_into(self.x, self.y)
        value = self.schedule.lr_after_warmup(iteration)
        if value != self._sched_value:
            self.sched_lr.fill_(value)
            self._sched_value = value
        if not self.capture:
            self.step()
        elif self.graph is not None:
            self.graph.replay()
        elif self.eager_left > 0:
            self.eager_left -= 1
            side = torch.cuda.Stream(self.rt.device)
            side.wait_stream(torch.cuda.current_stream(self.rt.device))
            with torch.cuda.stream(side):
                self.step()
            torch.cuda.current_stream(self.rt.device).wait_stream(side)
        else:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.step()  # recorded, not run: the replay below runs this iteration
            self.graph.replay()
        self.warmup.check(iteration + 1, reduce)

    def read_back(self) -> tuple[int, float] | None:
        """Device warm-up state into the schedule (at log/eval/checkpoint points); see DeviceWarmup.read_into."""
        return self.warmup.read_into(self.schedule)

    def last_lr(self) -> float:
        """The lr of the last step (one host read), as the host's float it came from (0.001, not 0.0010000000475)."""
        value = float(self.lr.item())
        for host in (self._sched_value, self.warmup.warmup_lr):
            if host is not None and float(torch.tensor(host, dtype=torch.float32)) == value:
                return host
        return value

    def host_optimizer_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """An optimizer ``state_dict`` with the eager step's plain-float lr and flags (the checkpoint format)."""
        lr = self.last_lr()
        groups = [{**g, **h, "lr": lr} for g, h in zip(state["param_groups"], self.host_groups, strict=True)]
        return {**state, "param_groups": groups}
