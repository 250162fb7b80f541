"""One SGD step: forward, cross-entropy, backward, update. The unit every training path runs."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn


def train_one_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    autocast: contextlib.AbstractContextManager | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step at learning rate ``lr``; returns (loss, number of wrong top-1 predictions) on the device.

    The loss is computed in float32 even under bf16 autocast (the logits are cast back first).
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast or contextlib.nullcontext():
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), (logits.detach().argmax(dim=1) != y).sum()
