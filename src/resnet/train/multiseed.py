"""Several seeds of one recipe trained at once, as one wider step (Table 6: "best (mean±std) of 5 runs").

A CIFAR ResNet at batch 128 leaves a GPU mostly idle (the step is launch-bound), so K runs that differ only
in their seed cost little more than one when they run as one step. The K replicas' parameters and BN
buffers are stacked along a new first dimension and the network runs under ``torch.func.vmap`` over that
dimension (PyTorch lowers a batched convolution to one grouped convolution; BN keeps each replica's own
batch statistics and running averages, since every replica's channels see only its own batch).

Each replica is exactly a single run with its seed: the model is initialised under
``torch.manual_seed(seed)`` as :func:`resnet.train.loop.init_state` does, its data stream is the
:class:`DeviceLoader` of that seed (same order, crops and flips; the uint8 images are shared, not copied),
and it has its own :class:`LRSchedule`, so the warm-up of ResNet-110 ends for each replica when *its*
running error falls below the threshold. The lr is therefore per replica, and so is SGD (momentum,
weight decay and Nesterov as ``torch.optim.SGD`` computes them, with the lr as a K-vector). Replicas never
mix: the summed loss has a block-diagonal gradient. In float64 each replica equals its single run to 3e-11
(relative) after 50 iterations across the warm-up switch (tests/test_multiseed.py). In float32 they are
not bit-identical (a grouped convolution sums in another order than a plain one: 1e-5 after 5
iterations), and training amplifies any rounding difference: there the replica is as close to its single
run as the same run in another memory layout is (both about 0.3 after 50 iterations at lr 0.1).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from resnet.config import Config, OptimConfig
from resnet.data.loader import DeviceLoader
from resnet.data.preprocess import Normalizer
from resnet.models import build_network
from resnet.train.runtime import Runtime
from resnet.train.schedule import LRSchedule
from resnet.train.state import build_optimizer, model_kwargs


class StackedSGD:
    """SGD over stacked parameters (K x ...), with one lr per replica; ``torch.optim.SGD``'s arithmetic."""

    def __init__(self, params: Sequence[torch.Tensor], cfg: OptimConfig) -> None:
        self.params, self.cfg = list(params), cfg
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        """One update; ``lr`` holds the K replicas' learning rates (on the parameters' device)."""
        o = self.cfg
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad if o.weight_decay == 0 else p.grad.add(p, alpha=o.weight_decay)
            if o.momentum != 0:
                buf = self.buffers[i]
                if buf is None:
                    buf = self.buffers[i] = g.detach().clone()
                else:
                    buf.mul_(o.momentum).add_(g)
                g = g.add(buf, alpha=o.momentum) if o.nesterov else buf
            p.addcmul_(g, lr.view(-1, *([1] * (p.dim() - 1))).to(p.dtype), value=-1)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


class ReplicaStack:
    """K models of one architecture as stacked tensors, run as one network under ``vmap``."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        self.k = len(models)
        self.params, self.buffers = stack_module_state(list(models))  # params: leaves with requires_grad
        self.base = copy.deepcopy(models[0]).to("meta")  # the architecture; its own tensors are never used

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: K x B x C x H x W (replica k's batch at [k]) -> K x B x classes."""

        def one(params: dict, buffers: dict, xb: torch.Tensor) -> torch.Tensor:
            return functional_call(self.base, (params, buffers), (xb,))

        return vmap(one)(self.params, self.buffers, x)

    def train(self, mode: bool = True) -> None:
        self.base.train(mode)

    def state_dict(self, k: int) -> dict[str, torch.Tensor]:
        """Replica ``k``'s weights and BN buffers, in the single model's state_dict layout."""
        return {name: t[k].detach().clone() for name, t in {**self.params, **self.buffers}.items()}


class MultiSeedTrainer:
    """The K seeds of ``cfg`` on one device: models, data streams, schedules and one stacked SGD.

    ``images``/``labels`` are the uint8 training split and its labels on the device, ``normalizer`` the
    recipe's preprocessing (shared: it is estimated from the data, not from the seed). ``dtype`` float64
    makes the replicas equal their single runs to rounding (tests), float32 is the recipe.
    """

    def __init__(
        self,
        cfg: Config,
        seeds: Sequence[int],
        images: torch.Tensor,
        labels: torch.Tensor,
        normalizer: Normalizer,
        rt: Runtime,
        num_classes: int,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if len(set(seeds)) != len(seeds) or not seeds:
            raise ValueError(f"seeds must be distinct and at least one, got {list(seeds)}")
        self.cfg, self.seeds, self.rt, self.dtype = cfg, list(seeds), rt, dtype
        self.kwargs = kwargs = model_kwargs(cfg, num_classes, images.shape[1])
        models = []
        for seed in self.seeds:
            torch.manual_seed(seed)  # as init_state: the same He initialisation as the single run
            models.append(build_network(cfg.model.name, **kwargs).to(rt.device, dtype))
        self.stack = ReplicaStack(models)
        self.optimizer = StackedSGD(list(self.stack.params.values()), cfg.optim)
        d = cfg.data
        self.loaders = [
            DeviceLoader(
                images, labels, cfg.train.batch_size, normalizer, augment=d.augment, pad=d.pad, flip=d.flip, seed=seed
            )  # fmt: skip
            for seed in self.seeds
        ]
        spe = self.loaders[0].steps_per_epoch
        self.schedules = [LRSchedule(cfg.schedule, cfg.optim.lr, rt.device, spe) for _ in self.seeds]
        self.iteration = 0
        self.last_lrs = self.lrs()  # each replica's lr of the last step (what a single run logs and saves)
        self._lr: torch.Tensor | None = None
        self.warmup_ended: dict[int, int] = {}  # seed -> iteration its warm-up ended

    def lrs(self) -> list[float]:
        return [s.lr(self.iteration) for s in self.schedules]

    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step of every replica on its own next batch; (losses, wrong counts), K each, on the device."""
        batches = [loader.next() for loader in self.loaders]
        if self.rt.channels_last:  # K x B x C x H x W, each image channels-last (as the single run's batch)
            x = torch.stack([b[0].permute(0, 2, 3, 1) for b in batches]).permute(0, 1, 4, 2, 3)
        else:
            x = torch.stack([b[0].contiguous() for b in batches])
        x, y = x.to(self.dtype), torch.stack([b[1] for b in batches])
        lrs = self.lrs()
        if lrs != self.last_lrs or self._lr is None:  # rebuilt only when it changes: a host->device copy waits
            self._lr = torch.tensor(lrs, dtype=torch.float64, device=self.rt.device)
        self.last_lrs, lr = lrs, self._lr
        self.stack.train()
        with self.rt.autocast():
            logits = self.stack.forward(x)
        # Mean cross-entropy per replica, as the single run's loss; their sum has each replica's gradient.
        losses = torch.stack([F.cross_entropy(logits[k].float(), y[k]) for k in range(self.stack.k)])
        self.optimizer.zero_grad()
        losses.sum().backward()
        self.optimizer.step(lr)
        wrong = (logits.detach().argmax(dim=2) != y).sum(dim=1)
        self.iteration += 1
        per = 100.0 / y.shape[1]
        for k, schedule in enumerate(self.schedules):
            if schedule.observe(self.iteration, wrong[k].double() * per):
                self.warmup_ended[self.seeds[k]] = self.iteration
        return losses.detach(), wrong

    def run(self, iterations: int) -> list[dict[str, Any]]:
        """``iterations`` steps; one record per iteration (losses and errors per seed, read at the end)."""
        out = [self.step() for _ in range(iterations)]
        b = self.cfg.train.batch_size
        start = self.iteration - iterations
        return [
            {"iteration": start + i + 1, "loss": loss.tolist(), "error": (100.0 * wrong.double() / b).tolist()}
            for i, (loss, wrong) in enumerate(out)
        ]

    def replica_state_dict(self, k: int) -> dict[str, torch.Tensor]:
        """Replica ``k``'s model state_dict (load it into ``build_network(cfg.model.name, ...)``)."""
        return self.stack.state_dict(k)

    def replica_model(self, k: int) -> tuple[nn.Module, torch.optim.SGD]:
        """Replica ``k`` as the single run's objects: its model, and ``build_optimizer``'s SGD holding its
        momentum and lr (whose ``state_dict`` is what a single run's checkpoint holds)."""
        model = build_network(self.cfg.model.name, **self.kwargs).to(self.rt.device)
        model.load_state_dict(self.replica_state_dict(k))
        opt = build_optimizer(self.cfg, model, self.rt.device)
        for p, buf in zip(model.parameters(), self.optimizer.buffers, strict=True):
            if buf is not None:
                opt.state[p]["momentum_buffer"] = buf[k].detach().clone()
        opt.param_groups[0]["lr"] = self.last_lrs[k]
        return model, opt

    def load_replica(self, k: int, model: dict[str, torch.Tensor], training: dict[str, Any]) -> None:
        """Replica ``k`` from a single run's checkpoint (its model state_dict and TrainState dict)."""
        with torch.no_grad():
            for name, t in {**self.stack.params, **self.stack.buffers}.items():
                t[k].copy_(model[name])
            moments = training["optimizer"]["state"]
            for i, p in enumerate(self.optimizer.params):
                if i in moments and "momentum_buffer" in moments[i]:
                    buf = self.optimizer.buffers[i]
                    if buf is None:
                        buf = self.optimizer.buffers[i] = torch.zeros_like(p)
                    buf[k].copy_(moments[i]["momentum_buffer"])
        self.schedules[k].load_state_dict(training["schedule"])
        self.loaders[k].load_state_dict(training["loader"])
        self.last_lrs[k] = training["optimizer"]["param_groups"][0]["lr"]
        self._lr = None
