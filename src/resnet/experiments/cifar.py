"""The CIFAR-10 experiments (section 4.2): Table 6, Fig. 6 and Fig. 7 share one pool of run directories.

Each experiment trains what is missing (a ResNet-56 trained for Fig. 6 also serves Table 6 and Fig. 7), then
hands the run directories to :mod:`resnet.analysis.cifar` for the report. Training and the reports import
torch inside the functions that need it, so registering these experiments costs nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from pathlib import Path

from resnet.analysis.report import RunRecord, read_run
from resnet.config import shortened_schedule
from resnet.errors import UserError
from resnet.experiments.registry import Option, Options, experiment
from resnet.experiments.runner import RunSpec, load_recipe, select_only, train_runs
from resnet.paper import CIFAR_ITERATIONS, CIFAR_TRAIN_IMAGES

logger = logging.getLogger(__name__)

#: Where the CIFAR experiments keep their shared runs and their reports.
OUT = "experiments/cifar10"


def cifar_models(experiment: str, opts: Options) -> list[str]:
    """The nets an experiment needs, in the paper's terms."""
    if experiment == "cifar-table6":
        return ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"] + (
            ["resnet1202"] if opts.extra.get("with_1202") else []
        )
    if experiment == "cifar-fig6":
        extra = ["plain110", "resnet110"] if opts.extra.get("with_110") else []
        return [f"{k}{d}" for k in ("plain", "resnet") for d in (20, 32, 44, 56)] + extra
    if experiment == "fig7":
        return ["plain20", "plain56", "resnet20", "resnet56", "resnet110"]
    raise UserError(f"{experiment} is not a CIFAR experiment")


def cifar_specs(models: list[str], opts: Options, seeds: int, longest_first: bool = True) -> list[RunSpec]:
    """One RunSpec per (model, seed); shortened schedules get their own run directories."""
    n = opts.iterations
    suffix = scope_suffix(opts)
    base: list[str] = []
    if opts.data_dir:
        base.append(f"data.data_dir={opts.data_dir}")
    if opts.device:
        base.append(f"train.device={opts.device}")
    specs = []
    # Longest first, so parallel workers finish together; reports keep the paper's order.
    order = sorted(models, key=lambda m: -int("".join(c for c in m if c.isdigit()))) if longest_first else models
    for model in order:
        # The one scaling `resnet train --iterations` uses too (milestones at N/2 and 3N/4, ...).
        scaled = [f"{k}={v}" for k, v in shortened_schedule(load_recipe(f"cifar10/{model}"), n).items()] if n else []
        for seed in range(seeds):
            name = f"{model}-s{seed}"
            specs.append(
                RunSpec(
                    name,
                    f"cifar10/{model}",
                    opts.out / "runs" / f"{name}{suffix}",
                    (*base, *scaled, f"train.seed={seed}", *opts.sets),
                )
            )
    return select_only(specs, opts.only, models)


def train_batched(specs: list[RunSpec], on_done: Callable[[dict], None]) -> None:
    """Each net's unfinished seeds as one step (``fit_seeds``), net after net. Seeds that are finished (e.g.
    seed 0 of a net Fig. 6 trained) are left alone; a net whose runs stand at different points trains its
    seeds one by one instead."""
    from resnet.train.multiseed_fit import fit_seeds

    groups: dict[str, list[RunSpec]] = {}
    for spec in specs:
        groups.setdefault(spec.recipe, []).append(spec)
    for recipe, group in groups.items():
        pending = [s for s in group if read_run(s.name, s.out).status != "finished"]
        started = {(s.out / "checkpoint.pt").is_file() for s in pending}
        if len(pending) < 2 or len(started) > 1:
            train_runs(pending, echo=True, on_done=on_done)
            continue
        overrides = [o for o in pending[0].overrides if not o.startswith("train.seed=")]
        cfg = load_recipe(recipe, overrides)
        outs = {int(s.name.rsplit("-s", 1)[1]): s.out for s in pending}
        argv = ["resnet", "train", recipe, *overrides, "--seeds", ",".join(map(str, outs))]
        for seed, summary in fit_seeds(cfg, outs, argv=argv).items():
            on_done({"name": next(s.name for s in pending if s.out == outs[seed]), **summary})


@functools.lru_cache(maxsize=8)
def _training_images(overrides: tuple[str, ...], required: bool) -> int | None:
    from resnet.data.datasets import load_dataset

    try:
        return len(load_dataset(load_recipe("cifar10/resnet20", list(overrides)).data).train_x)
    except UserError as e:
        if not required:
            return None
        raise UserError(f"{e} (runs and reports are kept apart by training-set size, so it is needed)") from None


def training_images(opts: Options) -> int | None:
    """How many images the runs train on (after any validation hold-out), read from the data itself; None
    when no --data-dir was given and no default one exists (``--report-only`` on the paper's 50k then)."""
    overrides = [f"data.data_dir={opts.data_dir}"] if opts.data_dir else []
    sets = tuple(overrides + [o for o in opts.sets if o.startswith("data.")])
    return _training_images(sets, bool(opts.data_dir))


def scope_suffix(opts: Options) -> str:
    """``-it20-n5085`` for 20 iterations on 5,085 training images; empty for the paper's 64k on 50k.

    Runs and reports of different lengths or data live side by side instead of overwriting each other.
    """
    n, images = opts.iterations, training_images(opts)
    size = f"-n{images}" if images is not None and images != CIFAR_TRAIN_IMAGES else ""
    return (f"-it{n}" if n and n != CIFAR_ITERATIONS else "") + size


def run_cifar(experiment: str, opts: Options, seeds: int = 1) -> list[RunRecord]:
    specs = cifar_specs(cifar_models(experiment, opts), opts, seeds)
    if not opts.report_only:

        def announce(r: dict) -> None:
            err = r.get("test_error")
            logger.info(
                f"  {r['name']}: {r['iterations']} iterations, test error {err:.2f}%" if err is not None else r["name"]
            )

        logger.info("%s: %d run(s) in %s", experiment, len(specs), opts.out / "runs")
        if opts.batch_seeds and seeds > 1:
            train_batched(specs, announce)
        else:
            train_runs(specs, jobs=opts.jobs, echo=True, on_done=announce)
    every = cifar_specs(
        cifar_models(experiment, opts), dataclasses.replace(opts, only=None), seeds, longest_first=False
    )
    return [read_run(s.name, s.out) for s in every]


@experiment(
    "cifar-table6",
    help="Table 6: CIFAR-10 test error of ResNet-20/32/44/56/110 (best and mean±std over --seeds)",
    out=OUT,
    options=(Option("--with-1202", "also train ResNet-1202 (section 4.2's 1202-layer net)"),),
)
def cifar_table6(opts: Options) -> Path:
    from resnet.analysis.cifar import table6_report

    runs = run_cifar("cifar-table6", opts, seeds=opts.seeds)
    return table6_report(runs, opts.out / f"cifar-table6{scope_suffix(opts)}")


@experiment(
    "cifar-fig6",
    help="Fig. 6: training curves of plain nets and ResNets of 20-56 layers on CIFAR-10",
    out=OUT,
    options=(Option("--with-110", "also train plain-110 and ResNet-110"),),
)
def cifar_fig6(opts: Options) -> Path:
    from resnet.analysis.cifar import fig6_report

    return fig6_report(run_cifar("cifar-fig6", opts), opts.out / f"cifar-fig6{scope_suffix(opts)}")


@experiment("fig7", help="Fig. 7: std of the layer responses of plain nets and ResNets on CIFAR-10", out=OUT)
def fig7(opts: Options) -> Path:
    from resnet.analysis.cifar import fig7_report

    return fig7_report(run_cifar("fig7", opts), opts.out / f"fig7{scope_suffix(opts)}", opts.data_dir)
