"""The CIFAR-10 nets of section 4.2: depth 6n+2, three stages of 2n 3x3 layers.

The first layer is a 3x3 conv with 16 filters; then stages on 32x32, 16x16 and 8x8 maps with 16, 32 and 64
filters (n basic blocks each); global average pool and a fc layer. Option A shortcuts by default, so plain
and residual nets have exactly the same parameters (ResNet-20: 269,722). The layout itself is
:func:`resnet.models.arch.cifar_architecture`; the names are registered in :mod:`resnet.models.catalog`.
"""

from __future__ import annotations

from resnet.models.arch import cifar_architecture
from resnet.models.network import ResNet


def cifar_resnet(
    depth: int,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    shortcut: str = "A",
    zero_init_residual: bool = False,
) -> ResNet:
    """Residual CIFAR net of depth 6n+2 (section 4.2), option A by default as in the paper."""
    arch = cifar_architecture(depth, True, num_classes=num_classes, in_channels=in_channels, shortcut=shortcut)
    return ResNet.from_architecture(arch, zero_init_residual=zero_init_residual)


def cifar_plain(depth: int, *, num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """Plain CIFAR net of depth 6n+2: the residual net's exact layers without shortcuts (Fig. 6 left)."""
    return ResNet.from_architecture(cifar_architecture(depth, False, num_classes=num_classes, in_channels=in_channels))
