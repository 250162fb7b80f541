"""The paper's networks as data: one :class:`Architecture` says everything that fixes a net's layers.

Every built-in net is described here first and built from this description (``ResNet.from_architecture``),
so the module tree and the cost counted from the description alone (:mod:`resnet.models.cost`) cannot
drift apart. This module imports no torch: listing the zoo and counting Table 1 need no tensor library.

- CIFAR-10 (section 4.2): depth 6n+2, a 3x3 stem conv with 16 filters, three stages of n basic blocks
  with 16, 32, 64 filters on 32x32, 16x16, 8x8 maps, option A shortcuts.
- ImageNet (Table 1): a 7x7/2 stem conv with 64 filters and a 3x3/2 max pool, four stages conv2_x..conv5_x
  with c = 64, 128, 256, 512; basic blocks for 18/34 layers, bottlenecks (4c outputs) for 50/101/152;
  option B shortcuts (the paper's choice for its deeper nets, and torchvision's layout).
"""

from __future__ import annotations

from dataclasses import dataclass

from resnet.paper import TABLE1_LAYERS

SHORTCUT_OPTIONS = ("A", "B", "C")
BOTTLENECK_STRIDES = ("1x1", "3x3")
#: Output channels of each block kind per unit of its base width; a new kind adds itself
#: (:func:`resnet.models.blocks.register_block`).
BLOCK_EXPANSION = {"basic": 1, "bottleneck": 4}
STEMS = ("imagenet", "cifar")
CIFAR_WIDTHS = (16, 32, 64)
IMAGENET_WIDTHS = (64, 128, 256, 512)
#: The ImageNet stem has 64 filters whatever the stage widths (Table 1, conv1).
IMAGENET_STEM_WIDTH = 64
#: ImageNet owns these names although they are (for 50 and 152) of the form 6n+2.
IMAGENET_DEPTHS = tuple(TABLE1_LAYERS)


@dataclass(frozen=True)
class Architecture:
    """What fixes a net's layers: block kind, blocks and width per stage, stem, shortcut, input and output size.

    ``shortcut`` is ignored for plain nets and ``bottleneck_stride`` for basic blocks, as in the paper
    (a plain net has no shortcuts; only a bottleneck has a 1x1 conv the stride could sit on).
    """

    block: str  # "basic" or "bottleneck"
    layers: tuple[int, ...]  # blocks per stage, e.g. (3, 4, 6, 3) for ResNet-34/50
    widths: tuple[int, ...]  # base width c of each stage (a bottleneck outputs 4c)
    stem: str  # "imagenet" or "cifar"
    residual: bool = True
    shortcut: str = "B"
    bottleneck_stride: str = "1x1"
    num_classes: int = 1000
    in_channels: int = 3

    def __post_init__(self) -> None:
        if self.block not in BLOCK_EXPANSION:
            raise ValueError(f"unknown block {self.block!r}; choose one of {', '.join(BLOCK_EXPANSION)}")
        if len(self.layers) != len(self.widths):
            raise ValueError(f"layers {tuple(self.layers)} and widths {tuple(self.widths)} differ in length")
        if self.stem not in STEMS:
            raise ValueError(f"unknown stem {self.stem!r}; choose 'imagenet' or 'cifar'")
        if self.num_classes < 1 or self.in_channels < 1:
            raise ValueError(
                f"num_classes and in_channels must be positive (got {self.num_classes}, {self.in_channels})"
            )
        check_option("shortcut", self.shortcut, SHORTCUT_OPTIONS)
        check_option("bottleneck_stride", self.bottleneck_stride, BOTTLENECK_STRIDES)
        if self.residual and self.shortcut == "A":
            channels = [self.stem_width, *(w * self.expansion for w in self.widths)]
            for before, after in zip(channels, channels[1:], strict=False):
                if after < before:  # zero padding can add channels, never remove them (section 3.3)
                    raise ValueError(f"option A cannot reduce channels ({before} -> {after}); use option B or C")

    @property
    def expansion(self) -> int:
        """Output channels of a block per unit of its base width (1 basic, 4 bottleneck)."""
        return BLOCK_EXPANSION[self.block]

    @property
    def stem_width(self) -> int:
        return IMAGENET_STEM_WIDTH if self.stem == "imagenet" else self.widths[0]

    @property
    def num_features(self) -> int:
        """Channels entering the fc layer."""
        return self.widths[-1] * self.expansion


def check_option(what: str, value: str, choices: tuple[str, ...]) -> None:
    """``ValueError`` naming the valid choices when ``value`` is not one of them."""
    if value not in choices:
        label = "shortcut option" if what == "shortcut" else what
        raise ValueError(f"unknown {label} {value!r}; choose one of {', '.join(choices)}")


def check_cifar_depth(depth: int) -> int:
    """Blocks per stage ``n`` for a CIFAR depth, or ``ValueError`` if the depth is not 6n+2 with n >= 1."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR depth must be 6n+2 with n >= 1 (8, 14, 20, 26, 32, ..., 56, 110, 1202); got {depth}")
    return (depth - 2) // 6


def cifar_architecture(
    depth: int, residual: bool = True, *, num_classes: int = 10, in_channels: int = 3, shortcut: str = "A"
) -> Architecture:
    """A CIFAR net of depth 6n+2 (section 4.2); option A shortcuts by default, as in the paper."""
    n = check_cifar_depth(depth)
    return Architecture(
        "basic",
        (n, n, n),
        CIFAR_WIDTHS,
        "cifar",
        residual=residual,
        shortcut=shortcut,
        num_classes=num_classes,
        in_channels=in_channels,
    )


def imagenet_architecture(
    depth: int,
    residual: bool = True,
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    shortcut: str = "B",
    bottleneck_stride: str = "1x1",
) -> Architecture:
    """A Table 1 net; ``bottleneck_stride`` only affects the bottleneck nets (50/101/152)."""
    if depth not in TABLE1_LAYERS:
        raise ValueError(f"ImageNet depth must be one of {', '.join(map(str, TABLE1_LAYERS))}; got {depth}")
    return Architecture(
        "basic" if depth < 50 else "bottleneck",
        TABLE1_LAYERS[depth],
        IMAGENET_WIDTHS,
        "imagenet",
        residual=residual,
        shortcut=shortcut,
        bottleneck_stride=bottleneck_stride,
        num_classes=num_classes,
        in_channels=in_channels,
    )
