"""The CIFAR-10 nets of section 4.2: depth 6n+2, three stages of 2n 3x3 layers.

The first layer is a 3x3 conv with 16 filters; then stages on 32x32, 16x16 and 8x8 maps with 16, 32 and 64
filters (n basic blocks each); global average pool and a fc layer. Option A shortcuts by default, so plain
and residual nets have exactly the same parameters (ResNet-20: 269,722).

Registered: resnet20/32/44/56/110/1202 and plain20/32/44/56/110; any other 6n+2 depth resolves by name
(``create_model("resnet38")``) or through :func:`cifar_resnet` / :func:`cifar_plain`.
"""

from __future__ import annotations

import functools

from resnet.models.blocks import BasicBlock
from resnet.models.network import ResNet
from resnet.models.registry import ModelInfo, register_family, register_model

CIFAR_WIDTHS = (16, 32, 64)
CIFAR_KWARGS_RESIDUAL = ("num_classes", "in_channels", "shortcut", "zero_init_residual")
CIFAR_KWARGS_PLAIN = ("num_classes", "in_channels")
REGISTERED_RESIDUAL = (20, 32, 44, 56, 110, 1202)
REGISTERED_PLAIN = (20, 32, 44, 56, 110)
#: ImageNet owns these names although they are (for 50 and 152) of the form 6n+2.
IMAGENET_DEPTHS = (18, 34, 50, 101, 152)


def check_cifar_depth(depth: int) -> int:
    """Blocks per stage ``n`` for a CIFAR depth, or ``ValueError`` if the depth is not 6n+2 with n >= 1."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR depth must be 6n+2 with n >= 1 (8, 14, 20, 26, 32, ..., 56, 110, 1202); got {depth}")
    return (depth - 2) // 6


def _build(
    depth: int,
    residual: bool,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    shortcut: str = "A",
    zero_init_residual: bool = False,
) -> ResNet:
    n = check_cifar_depth(depth)
    return ResNet(
        BasicBlock,
        (n, n, n),
        CIFAR_WIDTHS,
        stem="cifar",
        num_classes=num_classes,
        in_channels=in_channels,
        residual=residual,
        shortcut=shortcut,
        zero_init_residual=zero_init_residual,
    )


def cifar_resnet(
    depth: int,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    shortcut: str = "A",
    zero_init_residual: bool = False,
) -> ResNet:
    """Residual CIFAR net of depth 6n+2 (section 4.2), option A by default as in the paper."""
    return _build(
        depth,
        True,
        num_classes=num_classes,
        in_channels=in_channels,
        shortcut=shortcut,
        zero_init_residual=zero_init_residual,
    )


def cifar_plain(depth: int, *, num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """Plain CIFAR net of depth 6n+2: the residual net's exact layers without shortcuts (Fig. 6 left)."""
    return _build(depth, False, num_classes=num_classes, in_channels=in_channels)


def _info(depth: int, residual: bool) -> ModelInfo:
    kind = "resnet" if residual else "plain"
    builder = cifar_resnet if residual else cifar_plain
    return ModelInfo(
        name=f"{kind}{depth}",
        family="cifar",
        builder=functools.partial(builder, depth),
        kwargs=CIFAR_KWARGS_RESIDUAL if residual else CIFAR_KWARGS_PLAIN,
        input_size=(3, 32, 32),
        depth=depth,
        residual=residual,
        doc=f"CIFAR {'ResNet' if residual else 'plain net'}-{depth} (section 4.2, n={(depth - 2) // 6})",
    )


def _resolve(name: str, depth: int, residual: bool) -> ModelInfo | None:
    if depth in IMAGENET_DEPTHS:
        return None
    check_cifar_depth(depth)  # raises the 6n+2 message for e.g. resnet40
    return _info(depth, residual)


for _d in REGISTERED_RESIDUAL:
    register_model(_info(_d, True))
for _d in REGISTERED_PLAIN:
    register_model(_info(_d, False))
register_family("cifar", _resolve)
