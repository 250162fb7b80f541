"""``resnet reproduce EXPERIMENT``: the paper's experiments as commands that end in a report.

Experiments: ``table1`` (complexity, seconds anywhere), ``cifar-table6``, ``cifar-fig6``, ``fig7`` (CIFAR-10,
the paper's recipe), and ``imagenet-table2`` / ``imagenet-table3`` (with an image folder). The CIFAR ones
share one pool of run directories under ``OUT/runs`` (a ResNet-56 trained for Fig. 6 also serves Table 6
and Fig. 7), reuse finished runs, resume interrupted ones, and can be run piecewise (``--only resnet56``).
Reports (REPORT.md + CSV + PNG in ``OUT/EXPERIMENT/``) are made from the run directories alone, so
``--report-only`` re-makes them without training. ``--iterations N`` shortens the schedule (milestones at
N/2 and 3N/4, like 32k/48k of 64k); the report then says plainly that it is not a reproduction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from resnet.analysis.report import RunRecord, read_run
from resnet.errors import UserError
from resnet.runner import RunSpec, train_runs

PAPER_ITERATIONS = 64_000
CIFAR_TRAIN_IMAGES = 50_000


@dataclass
class Options:
    out: Path = Path("experiments/cifar10")
    data_dir: str | None = None
    iterations: int | None = None
    only: list[str] | None = None
    seeds: int = 1
    device: str | None = None
    jobs: int = 1
    report_only: bool = False
    with_110: bool = False
    with_1202: bool = False
    sets: list[str] = field(default_factory=list)
    protocol: str = "10crop"  # ImageNet experiments


def cifar_models(experiment: str, opts: Options) -> list[str]:
    """The nets an experiment needs, in the paper's terms."""
    if experiment == "cifar-table6":
        return ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"] + (
            ["resnet1202"] if opts.with_1202 else []
        )
    if experiment == "cifar-fig6":
        extra = ["plain110", "resnet110"] if opts.with_110 else []
        return [f"{k}{d}" for k in ("plain", "resnet") for d in (20, 32, 44, 56)] + extra
    if experiment == "fig7":
        return ["plain20", "plain56", "resnet20", "resnet56", "resnet110"]
    raise UserError(f"{experiment} is not a CIFAR experiment")


def cifar_specs(models: list[str], opts: Options, seeds: int, longest_first: bool = True) -> list[RunSpec]:
    """One RunSpec per (model, seed); shortened schedules get their own run directories."""
    n = opts.iterations
    suffix = f"-it{n}" if n and n != PAPER_ITERATIONS else ""
    base: list[str] = []
    if opts.data_dir:
        base.append(f"data.data_dir={opts.data_dir}")
    if opts.device:
        base.append(f"train.device={opts.device}")
    if n:
        # The paper's schedule evaluates 32 times (every 2000); very short runs evaluate at least 50 apart,
        # or evaluation (15k images) would cost more than training.
        evals = max(n // 32, min(n, 50))
        base += [
            f"schedule.iterations={n}",
            f"schedule.milestones=[{n // 2}, {n * 3 // 4}]",
            f"train.eval_every={evals}",
            f"train.log_every={max(1, min(100, n // 64))}",
            f"train.checkpoint_every={max(evals, n // 8)}",
        ]
    specs = []
    # Longest first, so parallel workers finish together; reports keep the paper's order.
    order = sorted(models, key=lambda m: -int("".join(c for c in m if c.isdigit()))) if longest_first else models
    for model in order:
        for seed in range(seeds):
            name = f"{model}-s{seed}"
            specs.append(
                RunSpec(
                    name,
                    f"cifar10/{model}",
                    opts.out / "runs" / f"{name}{suffix}",
                    (*base, f"train.seed={seed}", *opts.sets),
                )
            )
    if opts.only:
        wanted = set(opts.only)
        specs = [s for s in specs if s.name in wanted or s.name.rsplit("-s", 1)[0] in wanted]
        if not specs:
            raise UserError(f"--only {' '.join(opts.only)} matches none of {', '.join(models)}")
    return specs


def run_cifar(experiment: str, opts: Options, seeds: int = 1) -> list[RunRecord]:
    specs = cifar_specs(cifar_models(experiment, opts), opts, seeds)
    if not opts.report_only:

        def announce(r: dict) -> None:
            err = r.get("test_error")
            print(
                f"  {r['name']}: {r['iterations']} iterations, test error {err:.2f}%" if err is not None else r["name"]
            )

        print(f"{experiment}: {len(specs)} run(s) in {opts.out / 'runs'}")
        train_runs(specs, jobs=opts.jobs, echo=True, on_done=announce)
    every = cifar_specs(
        cifar_models(experiment, opts), dataclasses.replace(opts, only=None), seeds, longest_first=False
    )
    return [read_run(s.name, s.out) for s in every]


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


def reproduce(name: str, opts: Options) -> Path:
    """Run (or re-report) one experiment; returns the path of its REPORT.md."""
    import difflib

    # The report modules register their experiments on import.
    from resnet.analysis import cifar_reports, imagenet_reports, table1  # noqa: F401

    if name not in EXPERIMENTS:
        close = difflib.get_close_matches(name, list(EXPERIMENTS), n=2)
        hint = f"did you mean {', '.join(close)}?" if close else f"choose one of {', '.join(EXPERIMENTS)}"
        raise UserError(f"unknown experiment {name!r}; {hint}")
    return EXPERIMENTS[name](opts)
