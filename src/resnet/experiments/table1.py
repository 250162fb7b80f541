"""``resnet reproduce table1``: complexity of the ImageNet nets beside Table 1 (no training, no data)."""

from __future__ import annotations

from pathlib import Path

from resnet.analysis.table1 import table1_report
from resnet.experiments.registry import Options, experiment


@experiment(
    "table1",
    help="Table 1: layers, parameters and multiply-adds of the ImageNet nets (no training, no data, seconds)",
    out="experiments",
    torch_free=True,
)
def table1(opts: Options) -> Path:
    return table1_report(opts.out / "table1")
