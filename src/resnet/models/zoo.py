"""The ``resnet models`` table: every net's layout, parameters and multiply-adds beside the paper's figure.

Counted from each net's :class:`~resnet.models.arch.Architecture` (:mod:`resnet.models.cost`): no module is
built, no forward pass runs and torch is not imported. A model registered without an architecture is
built on the meta device and counted with hooks instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from resnet.models.arch import Architecture
from resnet.models.cost import architecture_cost
from resnet.models.registry import ModelInfo, model_info
from resnet.paper import CIFAR_PARAMS, TABLE1_GMACS, TABLE6

BLOCK_NAMES = {"basic": "BasicBlock", "bottleneck": "Bottleneck"}


def paper_figure(info: ModelInfo) -> str:
    """Table 1's multiply-adds for ImageNet nets, section 4.2's parameters (Table 6) for CIFAR nets."""
    if info.family == "imagenet":
        # Table 1 describes the residual nets; plain-18/34 are stated to cost the same (section 3.3).
        in_paper = info.residual or info.depth in (18, 34)
        return f"Table 1: {TABLE1_GMACS[info.depth]} GMACs" if in_paper else ""
    if info.depth in TABLE6 and info.residual:
        exact = f" ({CIFAR_PARAMS[info.depth]:,})" if info.depth in CIFAR_PARAMS else ""
        return f"Table 6: {TABLE6[info.depth][0]}M params{exact}"
    return ""


def _layout(info: ModelInfo) -> tuple[str, list[int], str, int, int]:
    """Block name, blocks per stage, shortcut, parameters and MACs of a registered net at its native input."""
    if info.architecture is not None:
        arch: Architecture = info.architecture()
        cost = architecture_cost(arch, info.input_size[1:])
        shortcut = arch.shortcut if arch.residual else "none"
        return BLOCK_NAMES[arch.block], list(arch.layers), shortcut, cost.params, cost.macs
    from resnet.models.complexity import count_macs, count_params, meta_instance

    model = meta_instance(info.name)
    stages = [len(s) for s in getattr(model, "stages", [])]
    block = type(model.stages[0][0]).__name__ if stages else type(model).__name__
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
            f"{params:>12,} {macs / 1e9:>7.{1 if macs >= 1e9 else 3}f}  {paper_figure(info)}"
        )
    return "\n".join(lines)
