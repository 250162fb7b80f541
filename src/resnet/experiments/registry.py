"""The registry of the paper's experiments (``resnet reproduce EXPERIMENT``) and the options they share.

Experiments: ``table1`` (complexity, seconds anywhere), ``cifar-table6``, ``cifar-fig6``, ``fig7`` (CIFAR-10,
the paper's recipe), and ``imagenet-table2`` / ``imagenet-table3`` (with an image folder). The CIFAR ones
share one pool of run directories under ``OUT/runs`` (a ResNet-56 trained for Fig. 6 also serves Table 6
and Fig. 7), reuse finished runs, resume interrupted ones, and can be run piecewise (``--only resnet56``).
Reports (REPORT.md + CSV + PNG in ``OUT/EXPERIMENT/``) are made from the run directories alone, so
``--report-only`` re-makes them without training. ``--iterations N`` shortens the schedule (milestones at
N/2 and 3N/4, like 32k/48k of 64k); the report then says plainly that it is not a reproduction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Options:
    out: Path = Path("experiments/cifar10")
    data_dir: str | None = None
    iterations: int | None = None
    only: list[str] | None = None
    seeds: int = 1
    batch_seeds: bool = False  # train each net's seeds as one step (resnet.train.multiseed_fit)
    device: str | None = None
    jobs: int = 1
    report_only: bool = False
    with_110: bool = False
    with_1202: bool = False
    sets: list[str] = field(default_factory=list)
    protocol: str = "10crop"  # ImageNet experiments


EXPERIMENTS: dict[str, Callable[[Options], Path]] = {}


def experiment(name: str) -> Callable[[Callable[[Options], Path]], Callable[[Options], Path]]:
    def register(fn: Callable[[Options], Path]) -> Callable[[Options], Path]:
        EXPERIMENTS[name] = fn
        return fn

    return register


def default_out(name: str) -> Path:
    """Where an experiment keeps its runs and report unless told otherwise."""
    if name.startswith("imagenet"):
        return Path("experiments/imagenet")
    return Path("experiments") if name == "table1" else Path("experiments/cifar10")
