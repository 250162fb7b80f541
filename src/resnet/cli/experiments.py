"""``resnet demo`` and ``resnet reproduce``: the embedded demo and the paper's experiments."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from resnet.cli.recipes import add_force
from resnet.errors import TrainingInterrupted, UserError
from resnet.io import read_input_text
from resnet.ranges import check_flag

#: The demo's report is a page of markdown; a file far bigger is not the one the demo just wrote.
MAX_REPORT_BYTES = 1 << 20


def cmd_demo(args: argparse.Namespace) -> int:
    from resnet.experiments.demo import run_demo

    depths = tuple(args.depths)
    for d in depths:
        from resnet.models.arch import check_cifar_depth

        check_cifar_depth(d)
    if len(depths) < 2:
        raise UserError("--depths needs at least two depths to compare, e.g. --depths 20 56")
    check_flag("--jobs", args.jobs)
    try:
        report = run_demo(args.out, depths=depths, iterations=args.iterations, jobs=args.jobs)
    except TrainingInterrupted as e:
        return stopped(e, args.argv)
    print(key_results(report))
    print(f"report: {report} (plot: {report.parent / 'curves.png'})")
    return 0


def key_results(report: Path) -> str:
    """The report's key table (its first markdown table) and its verdicts, for the terminal."""
    lines = read_input_text(report, max_bytes=MAX_REPORT_BYTES, errors="replace").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    table: list[str] = []
    if start is not None:
        for line in lines[start:]:
            if not line.startswith("|"):
                break
            if not line.startswith("|---"):
                table.append(line)
    caveat = [line.lstrip("> ") for line in lines if line.startswith("> **Not a reproduction")]
    verdicts = [line for line in lines if line.startswith("- **") and "Criterion:" in line]
    verdicts = [v.split(". Criterion:")[0] for v in verdicts]  # the criteria stay in the report
    return "\n".join([*caveat, *table, *verdicts])


def stopped(e: TrainingInterrupted, argv: list[str]) -> int:
    """The message for a stopped multi-run command; the runs keep their checkpoints."""
    print(
        f"resnet: stopped by {e.signal_name}; finished runs are kept and interrupted ones wrote a checkpoint. "
        f"Resume with: {shlex.join(argv)}",
        file=sys.stderr,
    )
    return e.exit_code


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="plain vs residual nets on real digits: the degradation problem in minutes",
        description="Train plain and residual twins at two depths on scikit-learn's bundled handwritten digits "
        "and write REPORT.md with a Fig. 6-style plot: the deeper plain net trains worse, the deeper ResNet "
        "does not (section 4.1). About 2.5 minutes on 2 CPU cores; finished runs are reused.",
    )
    p.add_argument("--out", default="runs/demo", help="where runs and the report go (finished runs are reused)")
    p.add_argument("--depths", type=int, nargs="+", default=[20, 56], help="CIFAR-style depths 6n+2 to compare")
    p.add_argument("--iterations", type=int, default=500, help="training iterations of every run")
    p.add_argument("--jobs", type=int, default=2, help="runs trained in parallel (one process each)")
    add_force(p)
    p.set_defaults(handler=cmd_demo)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from resnet.experiments.registry import Options
    from resnet.experiments.reproduce import get_experiment, reproduce

    exp = get_experiment(args.experiment)
    # Another experiment's option given a value is refused, not silently ignored.
    foreign = [o for o in _experiment_options() if o.dest not in exp.defaults() and getattr(args, o.dest) != o.default]
    if foreign:
        raise UserError(f"{foreign[0].flag} is not an option of {exp.name}; `resnet reproduce --help` lists them")
    opts = Options(
        out=Path(args.out) if args.out else exp.out,
        data_dir=args.data_dir,
        iterations=args.iterations,
        only=args.only,
        seeds=args.seeds,
        batch_seeds=args.batch_seeds,
        device=args.device,
        jobs=args.jobs,
        report_only=args.report_only,
        sets=list(args.set or []),
        extra={dest: getattr(args, dest) for dest in exp.defaults()},
    )
    check_flag("--seeds", opts.seeds)
    check_flag("--jobs", opts.jobs)
    try:
        report = reproduce(args.experiment, opts)
    except TrainingInterrupted as e:
        return stopped(e, args.argv)
    print(key_results(report))
    print(f"report: {report}")
    return 0


def _experiment_options() -> list:  # noqa: ANN202  (registry Options; imported lazily)
    """Every registered experiment's own options, each flag once."""
    from resnet.experiments.registry import discover

    seen: dict[str, object] = {}
    for exp in discover().values():
        for option in exp.options:
            seen.setdefault(option.flag, option)
    return list(seen.values())


class _ReproduceParser(argparse.ArgumentParser):
    """``reproduce``'s parser: the experiments (and their options) are discovered when it parses, so no other
    command pays for importing them."""

    _complete = False

    def parse_known_args(self, args=None, namespace=None):  # noqa: ANN001, ANN201  (argparse's signature)
        if not self._complete:
            self._complete = True
            _add_experiments(self)
        return super().parse_known_args(args, namespace)


def _add_experiments(p: argparse.ArgumentParser) -> None:
    """The registered experiments in ``--help``, and their own options (registered by each experiment)."""
    from resnet.experiments.registry import discover

    experiments = discover()
    users = {o.flag: [e.name for e in experiments.values() if o in e.options] for o in _experiment_options()}
    for option in _experiment_options():
        help_text = f"{', '.join(users[option.flag])}: {option.help}"
        if option.default is False:
            p.add_argument(option.flag, action="store_true", help=help_text)
        else:
            kind = type(option.default) if option.default is not None else str
            p.add_argument(option.flag, type=kind, default=option.default, choices=option.choices or None,
                           help=help_text)  # fmt: skip
    listing = "; ".join(f"{e.name}: {e.help}" for e in experiments.values())
    p.description = f"Experiments: {listing}."


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="run one of the paper's experiments and write its report")
    p.__class__ = _ReproduceParser  # argparse builds every subparser with one class; this one discovers late
    p.add_argument("experiment", help="the experiment to run (listed above), e.g. table1 or cifar-fig6")
    p.add_argument("--out", default=None, help="experiment directory, runs shared inside it (default experiments/...)")
    p.add_argument("--data-dir", default=None, help="dataset folder (CIFAR-10 python release or image folder)")
    p.add_argument("--iterations", type=int, default=None, help="shorten the schedule (the report says so)")
    p.add_argument("--only", nargs="+", default=None, help="train only these nets or runs, e.g. resnet56")
    p.add_argument("--seeds", type=int, default=1, help="runs per net; Table 6 reports best and mean±std")
    p.add_argument("--batch-seeds", action="store_true", help="train each net's seeds together as one step")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: each recipe's)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained in parallel processes (CPU)")
    p.add_argument("--report-only", action="store_true", help="re-make the report from existing runs")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe key in every run")
    add_force(p)
    p.set_defaults(handler=cmd_reproduce)
