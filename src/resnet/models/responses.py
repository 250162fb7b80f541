"""Where the paper's Fig. 7 "responses" live in a model.

Section 4.2: "The responses are the outputs of each 3x3 layer, after BN and before other nonlinearity
(ReLU/addition)." In our models that is the output of the ``BatchNorm2d`` registered right after each 3x3
``Conv2d`` (the stem's conv1 on CIFAR nets, both convs of a basic block, the middle conv of a bottleneck),
so a forward hook on those modules reads the responses without changing the model.
"""

from __future__ import annotations

from torch import nn


def response_layer_names(model: nn.Module) -> list[str]:
    """Names of the BN modules that follow a 3x3 conv, in network order (``conv1`` before ``layer1.0.bn1``)."""
    names: list[str] = []
    previous: nn.Module | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d) and isinstance(previous, nn.Conv2d):
            if tuple(previous.kernel_size) == (3, 3):
                names.append(name)
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
            previous = module
    return names
