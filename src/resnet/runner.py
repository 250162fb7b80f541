"""Train several runs of a recipe, in this process or in parallel worker processes, reusing finished ones.

Used by ``resnet demo`` and ``resnet reproduce``. A run that is already complete returns its summary at
once (``fit`` on a finished run directory trains nothing), an interrupted one resumes. On a CPU, several
one-thread processes beat one multi-thread process for the paper's small convolutions (1.7x on 2 cores
for ResNet-20 on 8x8 digits, measured); on a GPU, runs go one after another (``jobs=1``).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunSpec:
    name: str  # e.g. "resnet56-s0"
    recipe: str  # config name or path, e.g. "cifar10/resnet56"
    out: Path  # run directory
    overrides: tuple[str, ...] = field(default_factory=tuple)  # --set style key=value


def _train(job: tuple[RunSpec, int, bool]) -> dict[str, Any]:
    spec, threads, echo = job
    import torch

    from resnet.config import load_config
    from resnet.train import fit

    if threads:
        torch.set_num_threads(threads)
    cfg = load_config(spec.recipe, list(spec.overrides))
    summary = fit(cfg, spec.out, argv=["resnet", "train", spec.recipe, *spec.overrides], progress=echo, echo=echo)
    return {"name": spec.name, **summary}


def train_runs(
    specs: Sequence[RunSpec],
    jobs: int = 1,
    echo: bool = False,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Train every spec (longest first is the caller's ordering); returns {name: summary}."""
    cores = os.cpu_count() or 1
    jobs = max(1, min(jobs, len(specs) or 1, cores))
    threads = max(1, cores // jobs) if jobs > 1 else 0
    results: dict[str, dict[str, Any]] = {}
    work = [(s, threads, echo and jobs == 1) for s in specs]
    if jobs == 1:
        for w in work:
            r = _train(w)
            results[r["name"]] = r
            if on_done:
                on_done(r)
    else:
        # spawn, not fork: a forked child of a process that already ran torch ops can deadlock in OpenMP.
        with mp.get_context("spawn").Pool(jobs) as pool:
            for r in pool.imap_unordered(_train, work):
                results[r["name"]] = r
                if on_done:
                    on_done(r)
    return results
