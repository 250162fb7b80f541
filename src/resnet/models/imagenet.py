"""The ImageNet nets of Table 1: ResNet-18/34/50/101/152 and their plain twins.

Stem: 7x7/2 conv (64 filters) and 3x3/2 max pool; stages conv2_x..conv5_x with c = 64, 128, 256, 512 on
56, 28, 14, 7 maps; head: global average pool and a 1000-way fc. 18/34 use basic blocks, 50/101/152
bottlenecks. Option B shortcuts by default (the paper's choice for its deeper nets, and torchvision's
layout: a torchvision state_dict loads with ``strict=True``; use ``bottleneck_stride="3x3"`` for 50/101/152).
The layout itself is :func:`resnet.models.arch.imagenet_architecture`.
"""

from __future__ import annotations

from resnet.models.arch import imagenet_architecture
from resnet.models.network import ResNet


def imagenet_resnet(
    depth: int,
    *,
    residual: bool = True,
    num_classes: int = 1000,
    in_channels: int = 3,
    shortcut: str = "B",
    bottleneck_stride: str = "1x1",
    zero_init_residual: bool = False,
) -> ResNet:
    """A Table 1 network. ``bottleneck_stride`` only affects the bottleneck nets (50/101/152)."""
    arch = imagenet_architecture(
        depth,
        residual,
        num_classes=num_classes,
        in_channels=in_channels,
        shortcut=shortcut,
        bottleneck_stride=bottleneck_stride,
    )
    return ResNet.from_architecture(arch, zero_init_residual=zero_init_residual)
