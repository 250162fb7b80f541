"""Test-time BN statistics as true averages over training batches, instead of the moving averages.

The paper's released models were evaluated with BN statistics "computed using average, not moving average"
(the authors' deep-residual-networks README): after training, the mean and variance of every BN layer are
averaged with equal weight over a number of training batches. The moving average (momentum 0.1) instead
weighs the last few dozen batches most, and those batches saw weights that were still changing.

:func:`recompute_bn` works on a copy, so the trained model and its checkpoint are left as they are; it takes
any iterator of normalised input batches, so training (``train.recompute_bn``) and ``resnet eval
--recompute-bn N`` share it. :func:`training_batches` gives such an iterator over in-memory images.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from resnet.data.preprocess import Normalizer
from resnet.errors import UserError


@torch.no_grad()
def recompute_bn(model: nn.Module, batches: Iterable[torch.Tensor], num_batches: int) -> tuple[nn.Module, int]:
    """A copy of ``model`` (in eval mode) whose BN running statistics are the equal-weight averages of the
    batch statistics over the first ``num_batches`` of ``batches``; returns it and the batches used."""
    if num_batches < 1:
        raise UserError(f"--recompute-bn needs at least 1 batch, got {num_batches}")
    twin = copy.deepcopy(model)
    norms = [m for m in twin.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise UserError("the model has no BatchNorm layers; there are no statistics to recompute")
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()  # running mean 0, var 1, num_batches_tracked 0
        m.momentum = None  # cumulative average: batch k enters with weight 1/k, so all count equally
    twin.train()
    used = 0
    for x in batches:
        if used == num_batches:
            break
        twin(x)
        used += 1
    if used == 0:
        raise UserError("no training batches to recompute the BN statistics from")
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    return twin.eval(), used


def training_batches(
    images: torch.Tensor, normalizer: Normalizer, batch_size: int, *, seed: int = 0
) -> Iterator[torch.Tensor]:
    """Full batches of uint8 ``N x C x H x W`` training images in a seeded random order, normalised as at
    test time (the statistics serve the test view, so no crops or flips), on the images' device."""
    if len(images) < batch_size:
        batch_size = len(images)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed)).to(images.device)
    norm = normalizer.to(images.device)
    for i in range(0, len(images) - batch_size + 1, batch_size):
        yield norm(images[order[i : i + batch_size]])
