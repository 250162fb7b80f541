"""Parameters and multiply-adds counted from an :class:`~resnet.models.arch.Architecture` alone.

No module is built and no tensor exists: the map size is propagated through the stem, every block and the
head with the convolution arithmetic, so ``resnet models`` and ``resnet reproduce table1`` answer in well
under a second, without torch, however busy the cores are. What is counted is the paper's "FLOPs"
(Table 1: multiply-adds of the convolutions and the fc layer; BN, ReLU, pooling and the shortcut additions
are not) and every parameter (BN's weight and bias included, its running statistics not), exactly as
:func:`resnet.models.complexity.count_macs` and ``count_params`` count a built module; the tests check the
two against each other for every registered net and shortcut option.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from resnet.models.arch import Architecture


@dataclass(frozen=True)
class Cost:
    """Parameters and multiply-adds of one net for one image."""

    params: int
    macs: int

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.params + other.params, self.macs + other.macs)


ZERO = Cost(0, 0)


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution or pooling window along one axis (PyTorch's floor rule)."""
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise ValueError(f"a {kernel}x{kernel}/{stride} window cannot slide over a map of {size} pixels")
    return out


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int, hw: tuple[int, int]) -> tuple[Cost, tuple[int, int]]:
    """A bias-free k x k conv (padding k // 2, as every conv of the paper's nets) and its BN; the output map."""
    out = tuple(conv_out(s, kernel, stride, kernel // 2) for s in hw)
    macs = out[0] * out[1] * c_out * c_in * kernel * kernel
    return Cost(c_in * c_out * kernel * kernel + 2 * c_out, macs), out  # type: ignore[return-value]


#: A block kind's residual branch: (arch, c_in, planes, stride, hw) -> (cost, output channels).
BranchCost = Callable[[Architecture, int, int, int, tuple[int, int]], tuple[Cost, int]]


def basic_branch(arch: Architecture, c_in: int, planes: int, stride: int, hw: tuple[int, int]) -> tuple[Cost, int]:
    """Two 3x3 convs, the stride on the first."""
    first, mid = conv_bn(c_in, planes, 3, stride, hw)
    return first + conv_bn(planes, planes, 3, 1, mid)[0], planes


def bottleneck_branch(arch: Architecture, c_in: int, planes: int, stride: int, hw: tuple[int, int]) -> tuple[Cost, int]:
    """1x1 reduce, 3x3, 1x1 restore to 4x; the stride on the first 1x1 or on the 3x3."""
    c_out = planes * arch.expansion
    s1, s3 = (stride, 1) if arch.bottleneck_stride == "1x1" else (1, stride)
    first, mid = conv_bn(c_in, planes, 1, s1, hw)
    second, mid = conv_bn(planes, planes, 3, s3, mid)
    return first + second + conv_bn(planes, c_out, 1, 1, mid)[0], c_out


#: The branch cost of every block kind (a new kind adds its own: :func:`resnet.models.blocks.register_block`).
BRANCH_COSTS: dict[str, BranchCost] = {"basic": basic_branch, "bottleneck": bottleneck_branch}


def _block(arch: Architecture, c_in: int, planes: int, stride: int, hw: tuple[int, int]) -> tuple[Cost, int]:
    """One block's branch and shortcut; returns its cost and output channels (the map is ``hw`` / stride)."""
    cost, c_out = BRANCH_COSTS[arch.block](arch, c_in, planes, stride, hw)
    changes_shape = stride != 1 or c_in != c_out
    # Section 3.3: B projects where the shape changes, C everywhere, A never (zero padding is free).
    if arch.residual and (arch.shortcut == "C" or (arch.shortcut == "B" and changes_shape)):
        cost = cost + conv_bn(c_in, c_out, 1, stride, hw)[0]
    return cost, c_out


def architecture_cost(arch: Architecture, input_hw: Sequence[int]) -> Cost:
    """Parameters and multiply-adds of ``arch`` for one image of ``input_hw`` = (H, W) pixels."""
    hw = (int(input_hw[0]), int(input_hw[1]))
    if arch.stem == "imagenet":
        total, hw = conv_bn(arch.in_channels, arch.stem_width, 7, 2, hw)
        hw = (conv_out(hw[0], 3, 2, 1), conv_out(hw[1], 3, 2, 1))  # the 3x3/2 max pool
    else:
        total, hw = conv_bn(arch.in_channels, arch.stem_width, 3, 1, hw)
    c_in = arch.stem_width
    for i, (blocks, width) in enumerate(zip(arch.layers, arch.widths, strict=True)):
        for j in range(blocks):
            stride = 2 if i > 0 and j == 0 else 1
            cost, c_in = _block(arch, c_in, width, stride, hw)
            total = total + cost
            hw = (conv_out(hw[0], 1, stride), conv_out(hw[1], 1, stride))
    fc = Cost(c_in * arch.num_classes + arch.num_classes, c_in * arch.num_classes)
    return total + fc
