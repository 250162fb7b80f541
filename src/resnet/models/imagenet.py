"""The ImageNet nets of Table 1: ResNet-18/34/50/101/152 and their plain twins.

Stem: 7x7/2 conv (64 filters) and 3x3/2 max pool; stages conv2_x..conv5_x with c = 64, 128, 256, 512 on
56, 28, 14, 7 maps; head: global average pool and a 1000-way fc. 18/34 use basic blocks, 50/101/152
bottlenecks. Option B shortcuts by default (the paper's choice for its deeper nets, and torchvision's
layout: a torchvision state_dict loads with ``strict=True``; use ``bottleneck_stride="3x3"`` for 50/101/152).
"""

from __future__ import annotations

import functools

from resnet.models.blocks import BasicBlock, Bottleneck
from resnet.models.network import ResNet
from resnet.models.registry import ModelInfo, register_model
from resnet.paper import TABLE1_LAYERS

IMAGENET_WIDTHS = (64, 128, 256, 512)
IMAGENET_KWARGS_RESIDUAL = ("num_classes", "in_channels", "shortcut", "bottleneck_stride", "zero_init_residual")
IMAGENET_KWARGS_PLAIN = ("num_classes", "in_channels", "bottleneck_stride")


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
    if depth not in TABLE1_LAYERS:
        raise ValueError(f"ImageNet depth must be one of {', '.join(map(str, TABLE1_LAYERS))}; got {depth}")
    block = BasicBlock if depth < 50 else Bottleneck
    if bottleneck_stride not in ("1x1", "3x3"):
        raise ValueError(f"unknown bottleneck_stride {bottleneck_stride!r}; choose one of 1x1, 3x3")
    return ResNet(
        block,
        TABLE1_LAYERS[depth],
        IMAGENET_WIDTHS,
        stem="imagenet",
        num_classes=num_classes,
        in_channels=in_channels,
        residual=residual,
        shortcut=shortcut,
        bottleneck_stride=bottleneck_stride,
        zero_init_residual=zero_init_residual,
    )


for _depth in TABLE1_LAYERS:
    for _residual in (True, False):
        _kind = "resnet" if _residual else "plain"
        register_model(
            ModelInfo(
                name=f"{_kind}{_depth}",
                family="imagenet",
                builder=functools.partial(imagenet_resnet, _depth, residual=_residual),
                kwargs=IMAGENET_KWARGS_RESIDUAL if _residual else IMAGENET_KWARGS_PLAIN,
                input_size=(3, 224, 224),
                depth=_depth,
                residual=_residual,
                doc=f"ImageNet {'ResNet' if _residual else 'plain net'}-{_depth} (Table 1)",
            )
        )
