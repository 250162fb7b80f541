"""The network skeleton shared by every net in the paper: stem, stages, head.

- **stem**: ``conv1`` + ``bn1`` + ReLU (7x7/2 and a 3x3/2 max pool on ImageNet, section 3.4 / Table 1;
  a single 3x3 conv with 16 filters on CIFAR, section 4.2).
- **stages**: ``layer1`` .. ``layerK``, each a run of blocks; every stage after the first halves the map
  and (on ImageNet / CIFAR alike) doubles the width, with the stride on its first block.
- **head**: global average pool + ``fc``.

The class takes explicit arguments only and never reads a global config.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from resnet.models.arch import IMAGENET_STEM_WIDTH, Architecture
from resnet.models.blocks import BLOCK_MODULES, BasicBlock, Bottleneck, init_weights, make_stage


class ResNet(nn.Module):
    """A plain or residual network in the paper's layout.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: number of blocks in each stage, e.g. ``(3, 4, 6, 3)`` for ResNet-34/50.
        widths: base width ``c`` of each stage (a bottleneck outputs ``4c``).
        stem: ``"imagenet"`` (7x7/2 conv with 64 filters, then 3x3/2 max pool) or ``"cifar"`` (3x3 conv with
            ``widths[0]`` filters).
        num_classes: outputs of the final fc layer.
        in_channels: channels of the input image.
        residual: ``False`` builds the plain twin (no shortcuts at all).
        shortcut: option ``"A"``, ``"B"`` or ``"C"`` (section 3.3); ignored for plain nets.
        bottleneck_stride: ``"1x1"`` (paper) or ``"3x3"`` (torchvision v1.5); only bottlenecks use it.
        zero_init_residual: start every residual branch at zero (not in the paper).
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        widths: Sequence[int],
        *,
        stem: str,
        num_classes: int = 1000,
        in_channels: int = 3,
        residual: bool = True,
        shortcut: str = "B",
        bottleneck_stride: str = "1x1",
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if len(layers) != len(widths):
            raise ValueError(f"layers {tuple(layers)} and widths {tuple(widths)} differ in length")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"unknown stem {stem!r}; choose 'imagenet' or 'cifar'")
        if num_classes < 1 or in_channels < 1:
            raise ValueError(f"num_classes and in_channels must be positive (got {num_classes}, {in_channels})")
        self.residual, self.shortcut = residual, shortcut
        self.stem_kind = stem

        stem_width = IMAGENET_STEM_WIDTH if stem == "imagenet" else widths[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, stem_width, kernel_size=7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()

        block_kwargs: dict[str, object] = {"residual": residual, "shortcut": shortcut}
        if issubclass(block, Bottleneck):  # a registered kind built on the bottleneck takes its stride too
            block_kwargs["stride_on"] = bottleneck_stride
        in_planes = stem_width
        self.num_stages = len(layers)
        for i, (n, width) in enumerate(zip(layers, widths, strict=True)):
            stage = make_stage(block, in_planes, width, n, 1 if i == 0 else 2, **block_kwargs)
            setattr(self, f"layer{i + 1}", stage)
            in_planes = width * block.expansion
        self.num_features = in_planes

        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        init_weights(self, zero_init_residual=zero_init_residual)

    @classmethod
    def from_architecture(cls, arch: Architecture, *, zero_init_residual: bool = False) -> ResNet:
        """The net an :class:`~resnet.models.arch.Architecture` describes (how every built-in net is made)."""
        return cls(
            BLOCK_MODULES[arch.block],  # type: ignore[arg-type]  (any registered kind, not only these two)
            arch.layers,
            arch.widths,
            stem=arch.stem,
            num_classes=arch.num_classes,
            in_channels=arch.in_channels,
            residual=arch.residual,
            shortcut=arch.shortcut,
            bottleneck_stride=arch.bottleneck_stride,
            zero_init_residual=zero_init_residual,
        )

    @property
    def stages(self) -> list[nn.Sequential]:
        """The stages in order (``layer1`` .. ``layerK``): conv2_x..conv5_x on ImageNet."""
        return [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 + BN + ReLU (+ max pool on ImageNet)."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output, for backbone use (spec section 6).

        ImageNet nets return C2..C5 (strides 4, 8, 16, 32); CIFAR nets return their three stages
        (strides 1, 2, 4).
        """
        feats = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pool + fc on the last stage's map."""
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x)
