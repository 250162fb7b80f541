"""``resnet reproduce EXPERIMENT``: the paper's experiments as commands that end in a report.

Importing the experiment modules registers them (:func:`resnet.experiments.registry.experiment`).
"""

from __future__ import annotations

import difflib
from pathlib import Path

from resnet.errors import UserError
from resnet.experiments import cifar, imagenet, table1  # noqa: F401  (they register their experiments)
from resnet.experiments.registry import EXPERIMENTS, Options


def reproduce(name: str, opts: Options) -> Path:
    """Run (or re-report) one experiment; returns the path of its REPORT.md."""

    if name not in EXPERIMENTS:
        close = difflib.get_close_matches(name, list(EXPERIMENTS), n=2)
        hint = f"did you mean {', '.join(close)}?" if close else f"choose one of {', '.join(EXPERIMENTS)}"
        raise UserError(f"unknown experiment {name!r}; {hint}")
    return EXPERIMENTS[name](opts)
