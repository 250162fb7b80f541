"""Errors as the paper reports them: top-k error in percent, per class, and the result of one evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from resnet.errors import UserError


def check_finite_logits(logits: torch.Tensor, what: str = "the model") -> torch.Tensor:
    """``logits`` when every value is a number; a ``UserError`` otherwise: a probability or an error rate
    computed from NaN/Inf (damaged or overflowing weights, a broken graph) is never reported."""
    bad = ~torch.isfinite(logits)
    if bool(bad.any()):
        rows = int(bad.reshape(len(logits), -1).any(dim=1).sum()) if logits.ndim else 1
        raise UserError(
            f"{what} produced NaN/Inf outputs for {rows} of {len(logits) if logits.ndim else 1} input(s): its weights "
            "are damaged or overflow; no score or error rate is computed from them"
        )
    return logits


@dataclass(frozen=True)
class EvalResult:
    """The errors of one evaluation (top-1/top-5 in %, mean loss over ``n`` images, per class); frozen: a
    result is a record of what was measured."""

    n: int
    loss: float
    error: float  # top-1, %
    top5_error: float
    per_class: list[float] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # unreadable images left out (image folders)
    # Per image: the top-1 predicted class and the true one (CPU int64), for confusion matrices.
    predictions: torch.Tensor | None = field(default=None, repr=False, compare=False)
    labels: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def confusion(self, num_classes: int) -> torch.Tensor:
        """Counts of (true class, predicted class): row i is class i's images, column j what they were called."""
        if self.predictions is None or self.labels is None:
            raise ValueError("this result holds no per-image predictions")
        return confusion_matrix(self.predictions, self.labels, num_classes)

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


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """num_classes x num_classes int64 counts; rows are true classes, columns predicted ones."""
    flat = labels.long().cpu() * num_classes + predictions.long().cpu()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_error(wrong: torch.Tensor, target: torch.Tensor, num_classes: int) -> list[float]:
    """Error (%) of each class; NaN for a class with no samples."""
    counts = torch.bincount(target, minlength=num_classes).double()
    errors = torch.bincount(target, weights=wrong.double(), minlength=num_classes)
    return [float("nan") if c == 0 else float(100.0 * e / c) for e, c in zip(errors, counts, strict=True)]
