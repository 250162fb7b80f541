"""Errors as the paper reports them: top-k error in percent, per class, and the result of one evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class EvalResult:
    n: int
    loss: float
    error: float  # top-1, %
    top5_error: float
    per_class: list[float] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # unreadable images left out (image folders)

    def as_record(self) -> dict[str, Any]:
        record = {"loss": self.loss, "error": self.error, "top5_error": self.top5_error, "n": self.n}
        if self.skipped:  # unreadable images left out: the error is over n images, not the whole split
            record["skipped"] = len(self.skipped)
        return record


def topk_wrong(logits: torch.Tensor, target: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Per-sample bool: the target is not among the top ``k`` scores."""
    k = min(k, logits.shape[-1])
    top = logits.topk(k, dim=-1).indices
    return ~(top == target[:, None]).any(dim=-1)


def per_class_error(wrong: torch.Tensor, target: torch.Tensor, num_classes: int) -> list[float]:
    """Error (%) of each class; NaN for a class with no samples."""
    counts = torch.bincount(target, minlength=num_classes).double()
    errors = torch.bincount(target, weights=wrong.double(), minlength=num_classes)
    return [float("nan") if c == 0 else float(100.0 * e / c) for e, c in zip(errors, counts, strict=True)]
