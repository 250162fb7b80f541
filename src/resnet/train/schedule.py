"""Learning-rate schedules in iterations: milestones or plateaus, with the paper's error-triggered warm-up.

Section 4.2 (CIFAR): lr 0.1, divided by 10 at 32k and 48k iterations, stop at 64k. For ResNet-110 (and
1202): "we use 0.01 to warm up the training until the training error is below 80% (about 400 iterations),
and then go back to 0.1". The warm-up ends on a measurement, not after a fixed count: the running training
error over the last ``window`` iterations, checked every ``CHECK_EVERY`` iterations. (akamaster's popular
reproduction never restores 0.1 after its warm-up; a test guards against that here.)

Section 3.4 (ImageNet): "the learning rate starts from 0.1 and is divided by 10 when the error plateaus"
(``kind: plateau``, driven by the validation error of each evaluation), or, as most reproductions do, at
fixed epochs (``milestone_unit: epochs``, e.g. 30 and 60 of 90).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

import torch

from resnet.config import Config, ScheduleConfig

CHECK_EVERY = 10  # iterations between warm-up checks (each one reads a value from the device)


def total_iterations(cfg: ScheduleConfig, steps_per_epoch: int) -> int:
    """The run's length: ``epochs`` x steps per epoch when epochs are given, else ``iterations``."""
    return cfg.epochs * steps_per_epoch if cfg.epochs else cfg.iterations


class LRSchedule:
    """lr(iteration): the warm-up lr until the warm-up ends, then base / (1/gamma)^(drops so far)."""

    def __init__(self, cfg: ScheduleConfig, base_lr: float, device: torch.device, steps_per_epoch: int = 1) -> None:
        self.cfg, self.base_lr = cfg, base_lr
        unit = steps_per_epoch if cfg.milestone_unit == "epochs" else 1
        self.milestones = [m * unit for m in cfg.milestones]
        self.warming_up = cfg.warmup_lr is not None
        self.warmup_ended_at: int | None = None
        self.window = max(1, cfg.warmup_window)
        self._errors = torch.zeros(self.window, device=device)  # ring of recent per-iteration errors (%)
        self._seen = 0
        self.last_running_error = float("nan")  # at the last check (over all ranks under DDP)
        # Plateau state: best validation error, evaluations since it improved, iterations of the drops.
        self.best: float | None = None
        self.stale = 0
        self.drops: list[int] = []

    def lr(self, iteration: int) -> float:
        if self.warming_up:
            assert self.cfg.warmup_lr is not None
            return self.cfg.warmup_lr
        return self.lr_after_warmup(iteration)

    def lr_after_warmup(self, iteration: int) -> float:
        """The lr at ``iteration`` once the warm-up is over (a captured step picks between the two on the device)."""
        if self.cfg.kind == "plateau":
            k = len(self.drops)
        else:
            k = bisect.bisect_right(self.milestones, iteration)
        # Divide rather than multiply by gamma^k, so 0.1 -> 0.01 -> 0.001 exactly as printed in the paper.
        return self.base_lr / (1.0 / self.cfg.gamma) ** k

    def observe(
        self,
        iteration: int,
        batch_error: torch.Tensor,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> bool:
        """Record one iteration's training error (%, a device scalar); True when the warm-up just ended.

        ``iteration`` is the number of completed iterations including this one. ``reduce`` combines the
        running error over DDP ranks (every rank must then call this at the same iterations, which it does).
        """
        if not self.warming_up:
            return False
        self._errors[self._seen % self.window] = batch_error.detach()
        self._seen += 1
        if self._seen >= self.window and iteration % CHECK_EVERY == 0:
            running_t = self._errors.mean()
            running = (reduce(running_t) if reduce is not None else running_t).item()
            self.last_running_error = running
            if running < self.cfg.warmup_until_error:
                self.warming_up = False
                self.warmup_ended_at = iteration
                return True
        return False

    def on_eval(self, iteration: int, val_error: float) -> bool:
        """Plateau schedules: feed a validation error; True when this evaluation triggers a drop."""
        if self.cfg.kind != "plateau" or self.warming_up:
            return False
        if self.best is None or val_error < self.best - self.cfg.plateau_min_delta:
            self.best, self.stale = val_error, 0
            return False
        self.stale += 1
        if self.stale >= self.cfg.plateau_patience:
            self.drops.append(iteration)
            self.stale, self.best = 0, None  # measure the next plateau from the new level
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {
            "warming_up": self.warming_up,
            "warmup_ended_at": self.warmup_ended_at,
            "errors": self._errors.detach().cpu(),
            "seen": self._seen,
            "best": self.best,
            "stale": self.stale,
            "drops": list(self.drops),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.warming_up = bool(state["warming_up"])
        self.warmup_ended_at = state["warmup_ended_at"]
        self._errors.copy_(state["errors"].to(self._errors.device))
        self._seen = int(state["seen"])
        self.best, self.stale = state.get("best"), int(state.get("stale", 0))
        self.drops = list(state.get("drops", []))


def lr_drops(milestones: list[int], base_lr: float, gamma: float, total: int) -> list[tuple[int, int, float]]:
    """The drops a run of ``total`` iterations reaches: (iteration, how many milestones fall there, lr after).

    Coinciding milestones (a 2-iteration run puts 32k/64k and 48k/64k both at iteration 1) are one drop by
    (1/gamma)^k, and milestones at or beyond the last iteration are none, so a description never lists an
    lr the run does not reach.
    """
    drops: list[tuple[int, int, float]] = []
    k = 0
    for m in sorted(milestones):
        if m >= total:
            break
        k += 1
        if drops and drops[-1][0] == m:
            drops[-1] = (m, drops[-1][1] + 1, base_lr / (1.0 / gamma) ** k)
        else:
            drops.append((m, 1, base_lr / (1.0 / gamma) ** k))
    return drops


def format_drops(drops: list[tuple[int, int, float]], gamma: float, at: str = "") -> str:
    """``/10 at 32,000 (lr 0.01), /10 at 48,000 (lr 0.001)``; coinciding ones as ``/100 at 1 (lr 0.001)``
    (``at="iteration "`` names the unit)."""
    return ", ".join(f"/{round((1 / gamma) ** n, 6):g} at {at}{m:,} (lr {lr:g})" for m, n, lr in drops)


def plural(n: int, word: str) -> str:
    """``1 iteration``, ``2 iterations`` (thousands separated)."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def describe_schedule(cfg: Config, steps_per_epoch: int | None = None) -> str:
    """One line: the lr schedule and the eval/log/checkpoint intervals, as a run will use them."""
    sc, tr = cfg.schedule, cfg.train
    unreached = ""
    length = f"{plural(sc.epochs, 'epoch')}" if sc.epochs is not None else plural(sc.iterations, "iteration")
    # Milestones in epochs and epoch-long schedules become iterations only once the steps per epoch are known.
    known = bool(steps_per_epoch) or (sc.epochs is None and sc.milestone_unit == "iterations")
    total = total_iterations(sc, steps_per_epoch or 1) if known else None
    if steps_per_epoch and sc.epochs is not None:
        length += f" ({plural(sc.epochs * steps_per_epoch, 'iteration')})"
    if sc.kind == "plateau":
        drops = f"/{1 / sc.gamma:g} when val error plateaus ({sc.plateau_patience} evals)"
    elif sc.milestones and total is not None:
        unit = steps_per_epoch if sc.milestone_unit == "epochs" and steps_per_epoch else 1
        reached = lr_drops([m * unit for m in sc.milestones], cfg.optim.lr, sc.gamma, total)
        beyond = [m for m in sc.milestones if m * unit >= total]
        drops = format_drops(reached, sc.gamma) if reached else "constant"
        if beyond:
            where = ", ".join(f"{m:,}" for m in beyond) + (" epochs" if sc.milestone_unit == "epochs" else "")
            unreached = f" (milestone{'s' if len(beyond) > 1 else ''} {where} not reached)"
    elif sc.milestones:
        unit_name = "" if sc.milestone_unit == "iterations" else " epochs"
        drops = f"/{1 / sc.gamma:g} at {', '.join(f'{m:,}' for m in sc.milestones)}{unit_name}"
    else:
        drops = "constant"
    warm = f", warm-up {sc.warmup_lr:g} until train error < {sc.warmup_until_error:g}%" if sc.warmup_lr else ""
    return (
        f"schedule: lr {cfg.optim.lr:g} {drops} over {length}{unreached}{warm}; eval every {tr.eval_every:,}, "
        f"log every {tr.log_every:,}, checkpoint every {tr.checkpoint_every:,}"
    )
