"""``resnet reproduce EXPERIMENT``: the paper's experiments (and a user's) as commands that end in a report.

Experiments register themselves (:mod:`resnet.experiments.registry`); nothing here lists them. While one
runs, each recipe is read once and each dataset loaded once (:func:`resnet.experiments.runner.recipe_cache`,
:func:`resnet.data.datasets.dataset_cache`), however many runs and reports ask for them.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path

from resnet.errors import UserError
from resnet.experiments.registry import Experiment, Options, discover
from resnet.experiments.runner import recipe_cache


def get_experiment(name: str) -> Experiment:
    """The registered experiment ``name``, or a one-line ``UserError`` naming the close matches."""
    known = discover()
    if name not in known:
        close = difflib.get_close_matches(name, list(known), n=2)
        hint = f"did you mean {', '.join(close)}?" if close else f"choose one of {', '.join(known)}"
        raise UserError(f"unknown experiment {name!r}; {hint}")
    return known[name]


def reproduce(name: str, opts: Options) -> Path:
    """Run (or re-report) one experiment; returns the path of its REPORT.md."""
    exp = get_experiment(name)
    unknown = sorted(set(opts.extra) - set(exp.defaults()))
    if unknown:
        raise UserError(f"{name} takes no option {', '.join(unknown)}; `resnet reproduce --help` lists them")
    opts = dataclasses.replace(opts, extra={**exp.defaults(), **opts.extra})
    with recipe_cache(), _dataset_cache(exp):
        return exp.run(opts)


def _dataset_cache(exp: Experiment):  # noqa: ANN202  (a context manager)
    """The dataset cache (imports numpy and the readers; a torch-free experiment does without it)."""
    if exp.torch_free:
        import contextlib

        return contextlib.nullcontext()
    from resnet.data.datasets import dataset_cache

    return dataset_cache()
