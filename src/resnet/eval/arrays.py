"""Evaluation of in-memory image arrays (CIFAR, digits): top-1, top-5 and per-class error of one split.

CIFAR test protocol (section 4.2): "we only evaluate the single view of the original 32x32 image". BN
uses its running statistics (eval mode). Errors are in percent, as in the paper's tables.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from resnet.data.loader import eval_batches
from resnet.data.preprocess import Normalizer
from resnet.errors import UserError
from resnet.eval.metrics import EvalResult, check_finite_logits, per_class_error, topk_wrong


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
    wrong1, wrong5, predicted = [], [], []
    try:
        for x, y in eval_batches(images, labels, batch_size, normalizer):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast or contextlib.nullcontext():
                logits = model(x)
            logits = check_finite_logits(logits.float())
            loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
            wrong1.append(topk_wrong(logits, y, 1))
            wrong5.append(topk_wrong(logits, y, 5))
            predicted.append(logits.argmax(dim=1))
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
        predictions=torch.cat(predicted).cpu(),
        labels=labels.cpu(),
    )
