"""Learning-rate schedule in iterations, with the paper's error-triggered warm-up.

Section 4.2: lr 0.1, divided by 10 at 32k and 48k iterations, stop at 64k. For ResNet-110 (and 1202):
"we use 0.01 to warm up the training until the training error is below 80% (about 400 iterations), and
then go back to 0.1". The warm-up ends on a measurement, not after a fixed count: the running training
error over the last ``window`` iterations, checked every ``CHECK_EVERY`` iterations. (akamaster's popular
reproduction never restores 0.1 after its warm-up, ANCHORS.md d.5; a test guards against that here.)
"""

from __future__ import annotations

import bisect
from typing import Any

import torch

from resnet.config import ScheduleConfig

CHECK_EVERY = 10  # iterations between warm-up checks (each one reads a value from the device)


class LRSchedule:
    """lr(iteration) = base * gamma^(milestones passed), or the warm-up lr until the warm-up has ended."""

    def __init__(self, cfg: ScheduleConfig, base_lr: float, device: torch.device) -> None:
        self.cfg, self.base_lr = cfg, base_lr
        self.warming_up = cfg.warmup_lr is not None
        self.warmup_ended_at: int | None = None
        self.window = max(1, cfg.warmup_window)
        self._errors = torch.zeros(self.window, device=device)  # ring of recent per-iteration errors (%)
        self._seen = 0

    def lr(self, iteration: int) -> float:
        if self.warming_up:
            assert self.cfg.warmup_lr is not None
            return self.cfg.warmup_lr
        # Divide rather than multiply by gamma^k, so 0.1 -> 0.01 -> 0.001 exactly as printed in the paper.
        return self.base_lr / (1.0 / self.cfg.gamma) ** bisect.bisect_right(self.cfg.milestones, iteration)

    def observe(self, iteration: int, batch_error: torch.Tensor) -> bool:
        """Record one iteration's training error (%, a device scalar); True when the warm-up just ended.

        ``iteration`` is the number of completed iterations including this one.
        """
        if not self.warming_up:
            return False
        self._errors[self._seen % self.window] = batch_error.detach()
        self._seen += 1
        if self._seen >= self.window and iteration % CHECK_EVERY == 0:
            running = self._errors.mean().item()
            if running < self.cfg.warmup_until_error:
                self.warming_up = False
                self.warmup_ended_at = iteration
                return True
        return False

    def running_error(self) -> float:
        n = min(self._seen, self.window)
        return float(self._errors[:n].mean().item()) if n else float("nan")

    def state_dict(self) -> dict[str, Any]:
        return {
            "warming_up": self.warming_up,
            "warmup_ended_at": self.warmup_ended_at,
            "errors": self._errors.detach().cpu(),
            "seen": self._seen,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.warming_up = bool(state["warming_up"])
        self.warmup_ended_at = state["warmup_ended_at"]
        self._errors.copy_(state["errors"].to(self._errors.device))
        self._seen = int(state["seen"])
