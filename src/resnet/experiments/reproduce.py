"""``resnet reproduce EXPERIMENT``: the paper's experiments as commands that end in a report.

Importing an experiment's module registers it (:func:`resnet.experiments.registry.experiment`); only the
module of the experiment asked for is imported, so ``table1`` (pure arithmetic) starts without torch.
"""

from __future__ import annotations

import difflib
import importlib
from pathlib import Path

from resnet.errors import UserError
from resnet.experiments.registry import EXPERIMENTS, Options

#: The module that registers each experiment.
MODULES = {
    "cifar-table6": "resnet.experiments.cifar",
    "cifar-fig6": "resnet.experiments.cifar",
    "fig7": "resnet.experiments.cifar",
    "imagenet-table2": "resnet.experiments.imagenet",
    "imagenet-table3": "resnet.experiments.imagenet",
    "table1": "resnet.experiments.table1",
}
#: Experiments that run without torch (counting from the architectures).
TORCH_FREE = frozenset({"table1"})


def reproduce(name: str, opts: Options) -> Path:
    """Run (or re-report) one experiment; returns the path of its REPORT.md."""

    if name not in MODULES:
        close = difflib.get_close_matches(name, list(MODULES), n=2)
        hint = f"did you mean {', '.join(close)}?" if close else f"choose one of {', '.join(MODULES)}"
        raise UserError(f"unknown experiment {name!r}; {hint}")
    importlib.import_module(MODULES[name])
    return EXPERIMENTS[name](opts)
