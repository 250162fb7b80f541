"""Building blocks of the paper's networks: convolutions, shortcuts, the basic block and the bottleneck.

He et al. 2016, section 3: a block computes y = relu(F(x) + shortcut(x)) (eq. 1 and 2), with BN right after
every convolution and the ReLU applied after the addition. A *plain* block is the same stack without the
shortcut, so plain and residual twins have identical layers, parameters and cost.

Module names follow torchvision (``conv1``/``bn1``/.../``downsample.0``/``downsample.1``) so that an option-B
ImageNet net loads a torchvision state_dict unchanged. Shortcut options (section 3.3):

- ``"A"``: identity; where the shape changes, subsample with stride and zero-pad the new channels. No parameters.
- ``"B"``: 1x1 projection + BN only where the shape changes, identity elsewhere.
- ``"C"``: 1x1 projection + BN on every block.

All operations are out-of-place on purpose: a forward hook on any BN (the paper's Fig. 7 "response", taken
before the ReLU and before the addition) may keep a reference to its output and still see the right values.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet.models.arch import BLOCK_EXPANSION, BOTTLENECK_STRIDES, SHORTCUT_OPTIONS
from resnet.models.cost import BRANCH_COSTS, BranchCost


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (BN follows every conv, section 3.4)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A: parameter-free identity that subsamples and zero-pads channels when the shape changes.

    The paper: "the shortcut still performs identity mapping, with extra zero entries padded for increasing
    dimensions ... performed with a stride of 2". Subsampling takes every other pixel (x[:, :, ::2, ::2]);
    the new channels are appended after the existing ones. The module holds no parameters and no buffers,
    so option-A nets have exactly the parameter count (and state_dict keys) of their plain twins.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        if out_planes < in_planes:
            raise ValueError(f"option A cannot reduce channels ({in_planes} -> {out_planes})")
        self.in_planes, self.out_planes, self.stride = in_planes, out_planes, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_planes - self.in_planes
        if extra:
            # F.pad pads the last dimensions first: (W_left, W_right, H_top, H_bottom, C_front, C_back).
            x = F.pad(x, (0, 0, 0, 0, 0, extra))
        return x

    def extra_repr(self) -> str:
        return f"{self.in_planes}->{self.out_planes}, stride={self.stride}"


def make_shortcut(option: str, in_planes: int, out_planes: int, stride: int) -> nn.Module | None:
    """The shortcut of one block: ``None`` for a pure identity, else a module mapping x to the block's shape.

    Option B/C projections are ``Sequential(conv1x1, BN)``, torchvision's ``downsample`` layout.
    """
    if option not in SHORTCUT_OPTIONS:
        raise ValueError(f"unknown shortcut option {option!r}; choose one of {', '.join(SHORTCUT_OPTIONS)}")
    changes_shape = stride != 1 or in_planes != out_planes
    if option == "C" or (option == "B" and changes_shape):
        return nn.Sequential(conv1x1(in_planes, out_planes, stride), nn.BatchNorm2d(out_planes))
    if option == "A" and changes_shape:
        return ZeroPadShortcut(in_planes, out_planes, stride)
    return None


class _Block(nn.Module):
    """Shared forward logic: residual branch F(x), optional shortcut, ReLU after the addition."""

    expansion = 1

    def __init__(self, residual: bool, shortcut: str) -> None:
        super().__init__()
        if shortcut not in SHORTCUT_OPTIONS:
            raise ValueError(f"unknown shortcut option {shortcut!r}; choose one of {', '.join(SHORTCUT_OPTIONS)}")
        self.residual, self.shortcut = residual, shortcut

    def _add_shortcut(self, in_planes: int, out_planes: int, stride: int) -> None:
        # Registered after the branch's layers, as in torchvision, so module order is network order.
        # torchvision calls the projection "downsample"; keep that name so its state_dicts load.
        # Option A and pure identities hold no module with tensors, plain blocks hold no shortcut at all.
        self.downsample = make_shortcut(self.shortcut, in_planes, out_planes, stride) if self.residual else None

    def branch(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return F.relu(out)

    def last_bn(self) -> nn.BatchNorm2d:
        """The BN closing the residual branch (the one ``zero_init_residual`` sets to zero)."""
        raise NotImplementedError  # pragma: no cover - overridden


class BasicBlock(_Block):
    """Two 3x3 convolutions (Table 1, ResNet-18/34 and every CIFAR net); the stride sits on the first."""

    expansion = 1

    def __init__(
        self, in_planes: int, planes: int, stride: int = 1, *, residual: bool = True, shortcut: str = "B"
    ) -> None:
        super().__init__(residual, shortcut)
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self._add_shortcut(in_planes, planes, stride)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2


class Bottleneck(_Block):
    """1x1 reduce, 3x3, 1x1 restore to 4x the width (Table 1, ResNet-50/101/152; Fig. 5 right).

    ``stride_on="1x1"`` puts the downsampling stride on the first 1x1 conv, as in the paper's released Caffe
    models ("v1", 3.8 GMACs for ResNet-50); ``"3x3"`` puts it on the 3x3 conv, as torchvision does ("v1.5",
    4.1 GMACs, slightly more accurate).
    """

    expansion = 4

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        *,
        residual: bool = True,
        shortcut: str = "B",
        stride_on: str = "1x1",
    ) -> None:
        if stride_on not in BOTTLENECK_STRIDES:
            raise ValueError(f"unknown bottleneck_stride {stride_on!r}; choose one of {', '.join(BOTTLENECK_STRIDES)}")
        out_planes = planes * self.expansion
        super().__init__(residual, shortcut)
        s1, s3 = (stride, 1) if stride_on == "1x1" else (1, stride)
        self.conv1 = conv1x1(in_planes, planes, s1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, s3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out_planes)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self._add_shortcut(in_planes, out_planes, stride)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3


#: A block kind's module: the basic block, the bottleneck, or a subclass of one (their constructor's arguments).
BlockModule = type[BasicBlock] | type[Bottleneck]

#: The module of every block kind an :class:`~resnet.models.arch.Architecture` names.
BLOCK_MODULES: dict[str, BlockModule] = {"basic": BasicBlock, "bottleneck": Bottleneck}


def register_block(name: str, module: BlockModule, branch_cost: BranchCost) -> None:
    """Add a block kind in one call: its module (a subclass of :class:`BasicBlock` or :class:`Bottleneck`,
    taking ``(in_planes, planes, stride, *, residual, shortcut)``), its ``expansion`` (the module's) and its
    branch's cost (:data:`resnet.models.cost.BranchCost`) for the torch-free counts. Architectures may then
    say ``block=name``; shortcuts (options A/B/C) come with the base class."""
    if name in BLOCK_MODULES:
        raise ValueError(f"block {name!r} is already registered")
    BLOCK_MODULES[name] = module
    BLOCK_EXPANSION[name] = module.expansion
    BRANCH_COSTS[name] = branch_cost


def make_stage(
    block: BlockModule,
    in_planes: int,
    planes: int,
    blocks: int,
    stride: int,
    **block_kwargs: Any,
) -> nn.Sequential:
    """One stage (conv2_x ... conv5_x, or a CIFAR 2n-layer stage): the first block downsamples.

    ``block_kwargs`` go to the block's constructor as they are (``stride_on`` only for bottleneck kinds)."""
    layers: list[nn.Module] = []
    for i in range(blocks):
        layers.append(block(in_planes, planes, stride if i == 0 else 1, **block_kwargs))
        in_planes = planes * block.expansion
    return nn.Sequential(*layers)


def init_weights(model: nn.Module, zero_init_residual: bool = False) -> None:
    """He et al. 2015 initialisation (Kaiming normal, fan_out, ReLU); BN weight 1, bias 0; fc as PyTorch's default.

    ``zero_init_residual`` zeroes the last BN of each residual branch so every block starts as the identity
    (Goyal et al. 2017); off by default because the paper does not do it. Meta tensors (models built only
    to count shapes and costs) hold no data and are skipped.
    """
    if any(p.is_meta for p in model.parameters()):
        return
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, _Block):
                nn.init.zeros_(m.last_bn().weight)
