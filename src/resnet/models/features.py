"""Backbone use, timm's way: ``create_model(name, features_only=True, out_indices=...)``.

A :class:`FeatureExtractor` holds the stem and the stages of a :class:`~resnet.models.network.ResNet` (the
same modules, so the same weights and state_dict keys, without the head) and returns the feature maps at
``out_indices``, indexed as timm indexes its ResNets:

- ``0``: the stem's activation (conv1 + BN + ReLU), before the ImageNet max pool (stride 2 on ImageNet nets,
  1 on CIFAR nets);
- ``1`` .. ``K``: the output of stage ``i`` (ImageNet: C2..C5 at strides 4, 8, 16, 32; CIFAR: strides 1, 2, 4).

``feature_info.channels()`` and ``feature_info.reduction()`` describe them, as timm's do. Negative indices
count from the last stage; an int ``n`` takes the last ``n`` maps (timm's convention, as in
``ResNet.forward_intermediates``). Stages after the deepest requested index are not kept (nor computed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from resnet.models.blocks import BasicBlock, Bottleneck
from resnet.models.network import ResNet
from resnet.models.pretrained_cfg import PretrainedCfg


@dataclass(frozen=True)
class FeatureInfo:
    """Channels, stride (reduction) and module name of every returned feature map, in order."""

    num_chs: tuple[int, ...]
    reductions: tuple[int, ...]
    modules: tuple[str, ...]

    def channels(self) -> list[int]:
        return list(self.num_chs)

    def reduction(self) -> list[int]:
        return list(self.reductions)

    def module_name(self) -> list[str]:
        return list(self.modules)

    def __len__(self) -> int:
        return len(self.num_chs)


def feature_indices(num_stages: int, out_indices: int | Sequence[int] | None) -> tuple[int, ...]:
    """``out_indices`` checked and made non-negative (``None``: the stem and every stage; an int: the last n)."""
    n = num_stages + 1
    if out_indices is None:
        return tuple(range(n))
    if isinstance(out_indices, int):  # timm's convention: an int n takes the last n feature maps
        if not 1 <= out_indices <= n:
            raise ValueError(f"out_indices={out_indices} asks for the last {out_indices} of {n} feature maps")
        return tuple(range(n - out_indices, n))
    idx = [int(i) + n if int(i) < 0 else int(i) for i in out_indices]
    if not idx or any(i < 0 or i >= n for i in idx) or len(set(idx)) != len(idx):
        raise ValueError(
            f"out_indices {tuple(out_indices)} must be distinct values in 0..{n - 1} "
            f"(0 the stem, 1..{num_stages} the stages) or negative from the end"
        )
    return tuple(sorted(idx))


class FeatureExtractor(nn.Module):
    """The stem and stages of ``model``; ``forward(x)`` returns the feature maps at ``out_indices``.

    ``resnet.create_model(..., features_only=True)`` also gives it the model's ``pretrained_cfg``."""

    pretrained_cfg: PretrainedCfg

    def __init__(self, model: ResNet, out_indices: int | Sequence[int] | None = None) -> None:
        super().__init__()
        if not isinstance(model, ResNet):
            raise TypeError(f"features_only needs a resnet.models.ResNet, got {type(model).__name__}")
        self.out_indices = feature_indices(model.num_stages, out_indices)
        self.conv1, self.bn1, self.relu, self.maxpool = model.conv1, model.bn1, model.relu, model.maxpool
        self.num_stages = max(self.out_indices)
        for i in range(1, self.num_stages + 1):
            setattr(self, f"layer{i}", getattr(model, f"layer{i}"))
        stride = model.conv1.stride[0]
        chs, reds, names = [model.conv1.out_channels], [stride], ["act1"]
        stride *= 2 if model.stem_kind == "imagenet" else 1  # the 3x3/2 max pool
        for i, stage in enumerate(model.stages, start=1):
            stride *= _block_stride(stage[0])
            chs.append(_out_channels(stage[-1]))
            reds.append(stride)
            names.append(f"layer{i}")
        pick = self.out_indices
        self.feature_info = FeatureInfo(
            tuple(chs[i] for i in pick), tuple(reds[i] for i in pick), tuple(names[i] for i in pick)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        out = [x] if 0 in self.out_indices else []
        x = self.maxpool(x)
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
            if i in self.out_indices:
                out.append(x)
        return out


def _block_stride(block: nn.Module) -> int:
    """The stride of a block: the product of its branch's (conv1, conv2 and a bottleneck's conv3)."""
    stride = 1
    for name in ("conv1", "conv2", "conv3"):
        conv = getattr(block, name, None)
        if isinstance(conv, nn.Conv2d):
            stride *= conv.stride[0]
    return stride


def _out_channels(block: nn.Module) -> int:
    if not isinstance(block, BasicBlock | Bottleneck):  # every registered block kind subclasses one of them
        raise TypeError(f"features_only needs the paper's blocks, got {type(block).__name__}")
    return block.last_bn().num_features
