"""The train state: everything that changes while training and must survive a restart, saved as one dict.

A run is continued bit-identically on CPU from ``TrainState.state_dict()``: model and optimizer tensors, the
warm-up/plateau schedule, the data stream's position, the RNG, the metrics so far and the training time.
The model's description (name, kwargs, preprocessing, classes, recipe) is what :class:`Checkpoint` adds
around it (see :meth:`resnet.train.trainer.Trainer.describe`, which ``Trainer.checkpoint`` saves).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from resnet.config import Config
from resnet.data.sources import TrainStream
from resnet.train.schedule import LRSchedule


def model_kwargs(cfg: Config, num_classes: int, in_channels: int) -> dict[str, Any]:
    """``create_model`` keywords of a recipe: the data's classes and channels, and the model section."""
    kwargs: dict[str, Any] = {"num_classes": num_classes, "in_channels": in_channels}
    for key in ("shortcut", "bottleneck_stride"):
        if getattr(cfg.model, key) is not None:
            kwargs[key] = getattr(cfg.model, key)
    if cfg.model.zero_init_residual:
        kwargs["zero_init_residual"] = True
    return {**kwargs, **cfg.model.kwargs}


def build_optimizer(cfg: Config, model: nn.Module, device: torch.device) -> torch.optim.SGD:
    """SGD with momentum 0.9 and weight decay 1e-4 on every parameter (section 4.2); foreach kernels on CUDA."""
    o = cfg.optim
    return torch.optim.SGD(
        model.parameters(),
        lr=o.lr,
        momentum=o.momentum,
        weight_decay=o.weight_decay,
        nesterov=o.nesterov,
        foreach=device.type == "cuda",
    )


class TrainState:
    """Model, optimizer, schedule, data position, RNG, metrics and training time of one run."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: LRSchedule,
        loader: TrainStream,
        device: torch.device,
    ) -> None:
        self.model, self.optimizer, self.schedule, self.loader, self.device = model, optimizer, schedule, loader, device
        self.iteration = 0
        self.records: list[dict[str, Any]] = []  # the metrics log's records (the same list)
        self.seconds_before = 0.0  # training time of earlier invocations
        self.clock_start = time.perf_counter()
        self.saved_window: dict[str, Any] | None = None  # the unlogged loss window of a stop (see LossWindow)
        self.origin: str | None = None  # what model.init_from loaded (announced; not saved: the run has it)

    def start_clock(self) -> None:
        self.clock_start = time.perf_counter()

    def train_seconds(self) -> float:
        """Time inside the training loop, over every invocation of this run."""
        return self.seconds_before + time.perf_counter() - self.clock_start

    def state_dict(self) -> dict[str, Any]:
        cuda = self.device.type == "cuda"
        return {
            "model": self.model.state_dict(),
            "iteration": self.iteration,
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "loader": self.loader.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(self.device) if cuda else None},
            "metrics": self.records,
            "train_seconds": self.train_seconds(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.loader.load_state_dict(state["loader"])
        self.iteration = int(state["iteration"])
        self.records = list(state["metrics"])
        self.seconds_before = float(state.get("train_seconds", 0.0))
        self.saved_window = state.get("window")
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)

    def weights_finite(self) -> bool:
        """Whether every weight is finite and not huge: a step that wrecks the weights shows only in the *next*
        loss, so this is checked before saving. The squared norm overflows float32 above |w| ~ 1e19 (healthy
        nets: below 1e3), which counts as wrecked too."""
        norms = torch.stack([p.detach().float().square().sum() for p in self.model.parameters()])
        return bool(norms.sum().isfinite().item())
