"""Layer responses (the paper's Fig. 7): the std of each 3x3 layer's output after BN, before ReLU/addition.

Section 4.2: "The responses are the outputs of each 3x3 layer, after BN and before other nonlinearity
(ReLU/addition) ... ResNets have generally smaller responses than their plain counterparts", which
supports residual functions being closer to zero than non-residual ones. The std of a layer is taken over
every element of its output on the whole evaluation set (images x channels x positions), accumulated
exactly in float64 (sum and sum of squares), in eval mode (BN running statistics), with forward hooks on
the modules :func:`~resnet.models.response_layer_names` finds, so the model itself is not changed.
"""

from __future__ import annotations

import torch
from torch import nn

from resnet.data.loader import eval_batches
from resnet.data.preprocess import Normalizer
from resnet.models import response_layer_names


@torch.no_grad()
def response_stds(
    model: nn.Module,
    images: torch.Tensor,
    normalizer: Normalizer,
    *,
    batch_size: int = 500,
    layers: list[str] | None = None,
) -> dict[str, float]:
    """{layer name: std of its response over ``images``} in network order (uint8 images on the model's device)."""
    names = layers if layers is not None else response_layer_names(model)
    modules = dict(model.named_modules())
    stats = {n: torch.zeros(3, dtype=torch.float64, device=images.device) for n in names}  # count, sum, sum sq

    def hook(name: str):
        def fn(_m: nn.Module, _i: tuple, out: torch.Tensor) -> None:
            o = out.detach().double()
            stats[name] += torch.stack(
                [torch.tensor(o.numel(), dtype=torch.float64, device=o.device), o.sum(), o.square().sum()]
            )

        return fn

    handles = [modules[n].register_forward_hook(hook(n)) for n in names]
    was_training = model.training
    model.eval()
    try:
        for x, _ in eval_batches(images, torch.zeros(len(images), dtype=torch.long), batch_size, normalizer):
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    out = {}
    for n in names:
        count, total, total_sq = stats[n].tolist()
        mean = total / count
        out[n] = max(total_sq / count - mean * mean, 0.0) ** 0.5
    return out
