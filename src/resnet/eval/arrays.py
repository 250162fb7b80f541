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
from resnet.eval.shards import merge, mine


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
    shard: bool = False,
) -> EvalResult:
    """Evaluate on uint8 images already on the model's device; restores the model's train/eval mode.

    ``shard``: under a process group, every rank evaluates its share of the batches and all ranks get the
    whole split's result, equal to one process's (see :mod:`resnet.eval.shards`).
    """
    n = len(labels)
    if n == 0:
        raise UserError("cannot evaluate on an empty split")
    was_training = model.training
    model.eval()
    dev = images.device
    parts = {  # per image; filled where this rank evaluated, zero elsewhere
        "loss": torch.zeros(n, dtype=torch.float64, device=dev),
        "wrong1": torch.zeros(n, dtype=torch.int64, device=dev),
        "wrong5": torch.zeros(n, dtype=torch.int64, device=dev),
        "predicted": torch.zeros(n, dtype=torch.int64, device=dev),
    }
    seen = torch.zeros(n, dtype=torch.int64, device=dev)
    try:
        for b, start in enumerate(range(0, n, batch_size)):
            if shard and not mine(b):
                continue
            at = slice(start, start + batch_size)
            x, y = next(eval_batches(images[at], labels[at], batch_size, normalizer))
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast or contextlib.nullcontext():
                logits = model(x)
            logits = check_finite_logits(logits.float())
            parts["loss"][at] = F.cross_entropy(logits, y, reduction="none").double()
            parts["wrong1"][at] = topk_wrong(logits, y, 1).long()
            parts["wrong5"][at] = topk_wrong(logits, y, 5).long()
            parts["predicted"][at] = logits.argmax(dim=1)
            seen[at] += 1
    finally:
        model.train(was_training)
    if shard:
        merge(parts, seen)
    w1, w5 = parts["wrong1"].bool(), parts["wrong5"].bool()
    k = num_classes or int(labels.max().item()) + 1
    return EvalResult(
        n=n,
        loss=parts["loss"].sum().item() / n,
        error=100.0 * w1.float().mean().item(),
        top5_error=100.0 * w5.float().mean().item(),
        per_class=per_class_error(w1.cpu(), labels.cpu(), k),
        predictions=parts["predicted"].cpu(),
        labels=labels.cpu(),
    )
