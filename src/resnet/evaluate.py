"""Evaluation: top-1 (and top-5) error and per-class error on a split, and ``resnet eval``.

CIFAR test protocol (section 4.2): "we only evaluate the single view of the original 32x32 image". BN
uses its running statistics (eval mode). Errors are in percent, as in the paper's tables.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet.data.loader import eval_batches
from resnet.data.preprocess import Normalizer
from resnet.errors import UserError
from resnet.metrics import per_class_error, topk_wrong


@dataclass
class EvalResult:
    n: int
    loss: float
    error: float  # top-1, %
    top5_error: float
    per_class: list[float] = field(default_factory=list)

    def as_record(self) -> dict[str, Any]:
        return {"loss": self.loss, "error": self.error, "top5_error": self.top5_error, "n": self.n}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    normalizer: Normalizer,
    *,
    batch_size: int = 1000,
    num_classes: int | None = None,
    autocast: contextlib.AbstractContextManager | None = None,
    channels_last: bool = False,
) -> EvalResult:
    """Evaluate on uint8 images already on the model's device; restores the model's train/eval mode."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=images.device)
    wrong1, wrong5 = [], []
    try:
        for x, y in eval_batches(images, labels, batch_size, normalizer):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast or contextlib.nullcontext():
                logits = model(x)
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
            wrong1.append(topk_wrong(logits, y, 1))
            wrong5.append(topk_wrong(logits, y, 5))
    finally:
        model.train(was_training)
    n = len(labels)
    if n == 0:
        raise UserError("cannot evaluate on an empty split")
    w1, w5 = torch.cat(wrong1), torch.cat(wrong5)
    k = num_classes or int(labels.max().item()) + 1
    return EvalResult(
        n=n,
        loss=loss_sum.item() / n,
        error=100.0 * w1.float().mean().item(),
        top5_error=100.0 * w5.float().mean().item(),
        per_class=per_class_error(w1.cpu(), labels.cpu(), k),
    )


def evaluate_checkpoint(path: str | Path, split: str = "test", data_dir: str | None = None) -> dict[str, Any]:
    """``resnet eval``: rebuild the model, preprocessing and data of a run from its checkpoint and evaluate."""
    from resnet.checkpoint import is_training_checkpoint, load_checkpoint
    from resnet.config import from_dict
    from resnet.data.datasets import load_dataset
    from resnet.models import create_model

    ckpt = load_checkpoint(path)
    if not is_training_checkpoint(ckpt) or "config" not in ckpt:
        raise UserError(f"{path}: not a training checkpoint of this project (use `resnet convert` for others)")
    cfg = from_dict(ckpt["config"])
    if data_dir:
        cfg.data.data_dir = data_dir
    if cfg.data.dataset not in ("cifar10", "cifar100", "digits", "synthetic"):
        raise UserError(f"`resnet eval` on {cfg.data.dataset} runs takes --protocol; see `resnet eval --help`")
    data = load_dataset(cfg.data)
    x, y = data.split(split)
    model = create_model(ckpt["model_name"], **ckpt["model_kwargs"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise UserError(f"{path}: weights do not fit {ckpt['model_name']} ({str(e).splitlines()[0]})") from None
    normalizer = Normalizer.from_state_dict(ckpt["preprocessing"])
    res = evaluate(model, torch.from_numpy(x), torch.from_numpy(y), normalizer, num_classes=data.num_classes)
    return {
        "checkpoint": str(path),
        "model": ckpt["model_name"],
        "iteration": ckpt.get("iteration"),
        "split": split,
        "result": res,
        "classes": data.classes,
    }


def format_eval(report: dict[str, Any]) -> str:
    res: EvalResult = report["result"]
    lines = [
        f"{report['model']} at iteration {report['iteration']}, {report['split']} split ({res.n} images)",
        f"top-1 error: {res.error:.2f}%   top-5 error: {res.top5_error:.2f}%   loss: {res.loss:.4f}",
        "",
        f"{'class':<14} {'error %':>8}",
    ]
    for name, err in zip(report["classes"], res.per_class, strict=False):
        lines.append(f"{name:<14} {err:>8.2f}")
    return "\n".join(lines)
