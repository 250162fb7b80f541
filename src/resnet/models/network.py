"""The network skeleton shared by every net in the paper: stem, stages, head.

- **stem**: ``conv1`` + ``bn1`` + ReLU (7x7/2 and a 3x3/2 max pool on ImageNet, section 3.4 / Table 1;
  a single 3x3 conv with 16 filters on CIFAR, section 4.2).
- **stages**: ``layer1`` .. ``layerK``, each a run of blocks; every stage after the first halves the map
  and (on ImageNet / CIFAR alike) doubles the width, with the stride on its first block.
- **head**: global average pool + ``fc`` (with an optional dropout before ``fc``; not in the paper, off by default).

The class takes explicit arguments only and never reads a global config. It also speaks timm's model interface
(``num_classes``, ``num_features``, ``get_classifier``, ``reset_classifier``, ``forward_head``,
``forward_intermediates``) so that code written for timm's ResNets runs on it; ``forward_features`` keeps this
project's contract (every stage's map, for backbone use).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet.models.arch import IMAGENET_STEM_WIDTH, Architecture
from resnet.models.blocks import BLOCK_MODULES, BlockModule, Bottleneck, init_weights, make_stage


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
        drop_rate: dropout probability before ``fc`` (timm's ``drop_rate``); 0, the paper's, by default.
        global_pool: the head's pooling; only ``"avg"`` (the paper's global average pool).
    """

    def __init__(
        self,
        block: BlockModule,
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
        drop_rate: float = 0.0,
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        check_global_pool(global_pool)
        self.drop_rate = check_drop_rate(drop_rate)
        self.global_pool = global_pool
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

        block_kwargs: dict[str, Any] = {"residual": residual, "shortcut": shortcut}
        if issubclass(block, Bottleneck):  # a registered kind built on the bottleneck takes its stride too
            block_kwargs["stride_on"] = bottleneck_stride
        in_planes = stem_width
        self.num_stages = len(layers)
        for i, (n, width) in enumerate(zip(layers, widths, strict=True)):
            stage = make_stage(block, in_planes, width, n, 1 if i == 0 else 2, **block_kwargs)
            setattr(self, f"layer{i + 1}", stage)
            in_planes = width * block.expansion
        self.num_features = in_planes

        self.num_classes = num_classes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        init_weights(self, zero_init_residual=zero_init_residual)

    @classmethod
    def from_architecture(cls, arch: Architecture, *, zero_init_residual: bool = False, **head: Any) -> ResNet:
        """The net an :class:`~resnet.models.arch.Architecture` describes (how every built-in net is made)."""
        return cls(
            BLOCK_MODULES[arch.block],
            arch.layers,
            arch.widths,
            stem=arch.stem,
            num_classes=arch.num_classes,
            in_channels=arch.in_channels,
            residual=arch.residual,
            shortcut=arch.shortcut,
            bottleneck_stride=arch.bottleneck_stride,
            zero_init_residual=zero_init_residual,
            **head,
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
        """Global average pool (+ dropout when ``drop_rate`` > 0) + fc on the last stage's map."""
        return self.forward_head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x)

    # timm's model interface -------------------------------------------------------------------------------

    def get_classifier(self) -> nn.Module:
        """The classifier (``fc``), as timm's ``get_classifier``."""
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh classifier for ``num_classes`` outputs (0: none, the model then returns pooled features).

        ``global_pool`` may only be ``"avg"`` (or ``None``: unchanged); timm's other poolings are not the paper's.
        """
        if global_pool is not None:
            check_global_pool(global_pool)
            self.global_pool = global_pool
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be 0 (no classifier) or more, got {num_classes!r}")
        self.num_classes = num_classes
        ref = self.conv1.weight  # the new layer lives where the net does, in its dtype (PyTorch's default init)
        if num_classes:
            self.fc = nn.Linear(self.num_features, num_classes, device=ref.device, dtype=ref.dtype)
        else:  # timm's convention: no classifier, forward returns the pooled features
            self.fc = nn.Identity()  # type: ignore[assignment]  # fc is typed as the Linear it is but here

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool the last stage's map (N x ``num_features`` x H x W); ``pre_logits`` stops before ``fc``."""
        x = torch.flatten(self.avgpool(x), 1)
        if self.drop_rate > 0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's ``forward_intermediates``: the maps at ``indices`` and, unless ``intermediates_only``, the
        last stage's map (what ``forward_head`` takes).

        Feature points as timm numbers its ResNets: 0 the stem's activation (before the ImageNet max pool),
        1..K the stages. ``indices``: ``None`` all, an int ``n`` the last ``n``, a sequence those (negative from
        the end). ``stop_early`` skips the stages after the deepest one taken (the final map is then that one).
        ``norm`` changes nothing (a ResNet has no final norm layer); ``output_fmt`` is ``"NCHW"`` only.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt {output_fmt!r} is not supported; ResNet feature maps are 'NCHW'")
        take = intermediate_indices(self.num_stages + 1, indices)
        last = max(take) if stop_early else self.num_stages
        out = []
        x = self.relu(self.bn1(self.conv1(x)))
        if 0 in take:
            out.append(x)
        x = self.maxpool(x)
        for i in range(1, last + 1):
            x = getattr(self, f"layer{i}")(x)
            if i in take:
                out.append(x)
        return out if intermediates_only else (x, out)


def check_global_pool(global_pool: str) -> None:
    if global_pool != "avg":
        raise ValueError(
            f"global_pool {global_pool!r} is not supported: the paper's head is a global average pool ('avg')"
        )


def check_drop_rate(drop_rate: float) -> float:
    if isinstance(drop_rate, bool) or not isinstance(drop_rate, int | float) or not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate!r}")
    return float(drop_rate)


def intermediate_indices(n: int, indices: int | Sequence[int] | None) -> tuple[int, ...]:
    """timm's index rules over ``n`` feature points: ``None`` all, an int the last that many, a sequence those
    (negative from the end); sorted, checked."""
    if indices is None:
        return tuple(range(n))
    if isinstance(indices, int):
        if not 1 <= indices <= n:
            raise ValueError(f"indices={indices} asks for the last {indices} of {n} feature maps")
        return tuple(range(n - indices, n))
    take = [int(i) + n if int(i) < 0 else int(i) for i in indices]
    if not take or any(not 0 <= i < n for i in take):
        raise ValueError(f"indices {tuple(indices)} must lie in 0..{n - 1} (or -{n}..-1)")
    return tuple(sorted(set(take)))
