"""The ``resnet models`` table: every net's layout, parameters and multiply-adds beside the paper's figure.

The figure is the entry's own ``paper`` field (:class:`~resnet.models.catalog.ModelInfo`), empty for nets
the paper does not describe.

Counted from each net's :class:`~resnet.models.arch.Architecture` (:mod:`resnet.models.cost`): no module is
built, no forward pass runs and torch is not imported. A model registered without an architecture is
built on the meta device and counted with hooks instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from resnet.models.arch import Architecture
from resnet.models.cost import architecture_cost
from resnet.models.registry import ModelInfo, model_info

BLOCK_NAMES = {"basic": "BasicBlock", "bottleneck": "Bottleneck"}


def _layout(info: ModelInfo) -> tuple[str, list[int], str, int, int]:
    """Block name, blocks per stage, shortcut, parameters and MACs of a registered net at its native input."""
    if info.architecture is not None:
        arch: Architecture = info.architecture()
        cost = architecture_cost(arch, info.input_size[1:])
        shortcut = arch.shortcut if arch.residual else "none"
        return BLOCK_NAMES.get(arch.block, arch.block), list(arch.layers), shortcut, cost.params, cost.macs
    from resnet.models.complexity import count_macs, count_params, meta_instance

    model = meta_instance(info.name)
    stage_list = getattr(model, "stages", [])  # a ResNet's; another family's module may have none
    stages = [len(s) for s in stage_list]
    block = type(stage_list[0][0]).__name__ if stages else type(model).__name__
    shortcut = getattr(model, "shortcut", "?") if info.residual else "none"
    return block, stages, shortcut, count_params(model), count_macs(model, info.input_size)


def zoo_table(names: Sequence[str]) -> str:
    """The ``resnet models`` table for ``names`` (registered model names), one line each."""
    header = (
        f"{'model':<11} {'family':<8} {'input':<9} {'block':<10} {'blocks per stage':<17} {'shortcut':<8} "
        f"{'params':>12} {'GMACs':>7}  paper"
    )
    lines = [header, "-" * (len(header) + 14)]
    for name in names:
        info = model_info(name)
        block, stages, shortcut, params, macs = _layout(info)
        size = "x".join(map(str, info.input_size[1:]))
        lines.append(
            f"{name:<11} {info.family:<8} {size:<9} {block:<10} {str(stages):<17} {shortcut:<8} "
            f"{params:>12,} {macs / 1e9:>7.{1 if macs >= 1e9 else 3}f}  {info.paper}"
        )
    return "\n".join(lines)
