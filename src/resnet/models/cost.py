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
    out = (conv_out(hw[0], kernel, stride, kernel // 2), conv_out(hw[1], kernel, stride, kernel // 2))
    macs = out[0] * out[1] * c_out * c_in * kernel * kernel
    return Cost(c_in * c_out * kernel * kernel + 2 * c_out, macs), out


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


# -- the budget: a net's size checked before anything is allocated -------------------------------------------------

#: Parameters any net built here may have: 500M floats are 2 GB in float32. The largest paper nets hold 60.2M
#: (ResNet-152, 1,000 classes) and 19.4M (ResNet-1202), so every one fits with 8x to spare; a 1,000,000-class
#: ResNet-152 (2.1G, 8.2 GB) or a CIFAR net of depth 600,002 (9.7G) does not.
MAX_PARAMS = 500_000_000
#: Elements of all convolution outputs for one image: what a forward pass (and training's backward) keeps.
#: Counted by :func:`architecture_size`: ResNet-152 needs 0.022G at 224x224 and 0.24G at the paper's largest test
#: scale (shorter side 640 of a 4:3 image), ResNet-1202 0.011G on CIFAR; 2G (8 GB of float32 for one image)
#: leaves room for every paper setting.
MAX_ACTIVATIONS = 2_000_000_000


@dataclass(frozen=True)
class Size:
    """What a net needs before any tensor exists: parameters, and convolution output elements per image."""

    params: int
    activations: int


def _block_size(arch: Architecture, c_in: int, planes: int, stride: int, hw: tuple[int, int]) -> tuple[Size, int]:
    """One block's parameters and output elements (branch and projection) and its output channels."""
    cost, c_out = _block(arch, c_in, planes, stride, hw)
    out = (conv_out(hw[0], 1, stride), conv_out(hw[1], 1, stride))
    if arch.block == "basic":
        elements = 2 * planes * out[0] * out[1]
    else:
        first = hw if arch.bottleneck_stride == "3x3" else out
        elements = planes * first[0] * first[1] + planes * out[0] * out[1] + c_out * out[0] * out[1]
    if arch.residual and (arch.shortcut == "C" or (arch.shortcut == "B" and (stride != 1 or c_in != c_out))):
        elements += c_out * out[0] * out[1]
    return Size(cost.params, elements), c_out


def architecture_size(arch: Architecture, input_hw: Sequence[int]) -> Size:
    """Parameters and activation elements of ``arch`` in time proportional to its stages, not its blocks:
    every block after a stage's first repeats the same shapes (a CIFAR depth of 600,002 is counted at once)."""
    hw = (int(input_hw[0]), int(input_hw[1]))
    if arch.stem == "imagenet":
        stem, hw = conv_bn(arch.in_channels, arch.stem_width, 7, 2, hw)
        elements = arch.stem_width * hw[0] * hw[1]
        hw = (conv_out(hw[0], 3, 2, 1), conv_out(hw[1], 3, 2, 1))
    else:
        stem, hw = conv_bn(arch.in_channels, arch.stem_width, 3, 1, hw)
        elements = arch.stem_width * hw[0] * hw[1]
    params, c_in = stem.params, arch.stem_width
    for i, (blocks, width) in enumerate(zip(arch.layers, arch.widths, strict=True)):
        stride = 2 if i > 0 else 1
        first, c_in = _block_size(arch, c_in, width, stride, hw)
        hw = (conv_out(hw[0], 1, stride), conv_out(hw[1], 1, stride))
        rest = _block_size(arch, c_in, width, 1, hw)[0] if blocks > 1 else Size(0, 0)
        params += first.params + (blocks - 1) * rest.params
        elements += first.activations + (blocks - 1) * rest.activations
    params += c_in * arch.num_classes + arch.num_classes
    return Size(params, elements + arch.num_classes)


def check_budget(arch: Architecture, input_hw: Sequence[int], what: str = "this model") -> Size:
    """Refuse, in one line with the figure, a net too large to build or run (see :data:`MAX_PARAMS`,
    :data:`MAX_ACTIVATIONS`); its size otherwise. Raises ``ValueError`` (a ``UserError``)."""
    from resnet.errors import UserError

    try:
        size = architecture_size(arch, input_hw)
    except ValueError as e:
        raise UserError(f"{what}: {e}") from None
    if size.params > MAX_PARAMS:
        raise UserError(
            f"{what} would have {size.params:,} parameters ({4 * size.params / 1e9:.1f} GB in float32), more than "
            f"the {MAX_PARAMS:,} any net here may have (the paper's largest has 60.2M): check the depth and classes"
        )
    if size.activations > MAX_ACTIVATIONS:
        raise UserError(
            f"{what} on {input_hw[0]}x{input_hw[1]} inputs would compute {size.activations:,} activations per image "
            f"({4 * size.activations / 1e9:.1f} GB), more than the {MAX_ACTIVATIONS:,} allowed: use a smaller input"
        )
    return size
