"""The registry of experiments (``resnet reproduce EXPERIMENT``): each one registers itself, with its options.

An experiment is a function ``run(opts) -> REPORT.md path`` declared with :func:`experiment` (or
:func:`register_experiment` from outside the package), together with its one-line help, its default
experiment directory and its own command-line options (:class:`Option`). :func:`discover` imports every
module of this package (modules here import nothing heavy at the top, so listing the experiments needs no
torch) and then the user's plugins (:mod:`resnet.plugins`); ``reproduce`` and the CLI read the registry only.

The paper's experiments: ``table1`` (complexity, seconds anywhere), ``cifar-table6``, ``cifar-fig6``,
``fig7`` (CIFAR-10, the paper's recipe), and ``imagenet-table2`` / ``imagenet-table3`` (with an image
folder). The CIFAR ones share one pool of run directories under ``OUT/runs`` (a ResNet-56 trained for Fig. 6
also serves Table 6 and Fig. 7), reuse finished runs, resume interrupted ones, and can be run piecewise
(``--only resnet56``). Reports (REPORT.md + CSV + PNG in ``OUT/EXPERIMENT/``) are made from the run
directories alone, so ``--report-only`` re-makes them without training. ``--iterations N`` shortens the
schedule (milestones at N/2 and 3N/4, like 32k/48k of 64k); the report then says plainly that it is not a
reproduction.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Options:
    """What every experiment takes; an experiment's own options are in ``extra`` (filled with their defaults)."""

    out: Path = Path("experiments/cifar10")
    data_dir: str | None = None
    iterations: int | None = None
    only: list[str] | None = None
    seeds: int = 1
    batch_seeds: bool = False  # train each net's seeds as one step (resnet.train.multiseed_fit)
    device: str | None = None
    jobs: int = 1
    report_only: bool = False
    sets: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # the experiment's own options, by dest name


@dataclass(frozen=True)
class Option:
    """One command-line option of an experiment: ``Option("--with-110", "add plain-110 and ResNet-110")``.

    ``default`` False makes a switch; otherwise the value is read with ``type(default)`` (or one of
    ``choices``). Two experiments may share an option (the same flag, default and choices).
    """

    flag: str
    help: str
    default: Any = False
    choices: tuple[Any, ...] = ()

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: what ``reproduce`` runs and what ``resnet reproduce --help`` says of it."""

    name: str
    run: Callable[[Options], Path]
    help: str
    out: Path  # default experiment directory (runs shared inside it)
    options: tuple[Option, ...] = ()
    torch_free: bool = False  # runs without torch (arithmetic only): the CLI then does not import it

    def defaults(self) -> dict[str, Any]:
        return {o.dest: o.default for o in self.options}


EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(exp: Experiment) -> Experiment:
    """Add an experiment (names are unique; registering the same function again is a no-op)."""
    known = EXPERIMENTS.get(exp.name)
    if known is not None and known.run is not exp.run:
        raise ValueError(f"experiment {exp.name!r} is already registered (by {known.run.__module__})")
    for option in exp.options:
        if option.dest in {f.name for f in Options.__dataclass_fields__.values()}:
            raise ValueError(f"experiment {exp.name!r}: option {option.flag} clashes with a common option")
    EXPERIMENTS[exp.name] = exp
    return exp


def experiment(
    name: str,
    *,
    help: str = "",
    out: str | Path = "experiments",
    options: tuple[Option, ...] = (),
    torch_free: bool = False,
) -> Callable[[Callable[[Options], Path]], Callable[[Options], Path]]:
    """Decorator registering ``fn(opts) -> REPORT.md path`` as experiment ``name``."""

    def register(fn: Callable[[Options], Path]) -> Callable[[Options], Path]:
        doc = help or next(iter((fn.__doc__ or "").strip().splitlines()), "")
        register_experiment(Experiment(name, fn, doc, Path(out), tuple(options), torch_free))
        return fn

    return register


_discovered = {"done": False}
_lock = threading.Lock()


def discover() -> dict[str, Experiment]:
    """Every experiment: this package's modules (imported once; none imports torch at the top), then plugins."""
    from resnet.plugins import load_plugins

    with _lock:
        if not _discovered["done"]:
            for module in pkgutil.iter_modules(_package_path()):
                importlib.import_module(f"resnet.experiments.{module.name}")
            _discovered["done"] = True
    load_plugins()  # each plugin once; asked every time, so one named in RESNET_PLUGINS later is found too
    return EXPERIMENTS


def _package_path() -> list[str]:
    import resnet.experiments

    return list(resnet.experiments.__path__)


def find_experiment(name: str) -> Experiment | None:
    """The registered experiment ``name`` (after :func:`discover`), or None."""
    return discover().get(name)


def default_out(name: str) -> Path:
    """Where an experiment keeps its runs and report unless told otherwise."""
    exp = find_experiment(name)
    return exp.out if exp is not None else Path("experiments")
