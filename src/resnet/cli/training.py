"""``resnet train``, ``resnet eval`` and ``resnet data download``."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from resnet.cli.recipes import HelpFormatter
from resnet.errors import UserError

if TYPE_CHECKING:  # the commands import the heavy modules lazily
    from resnet.config import Config


def cmd_train(args: argparse.Namespace) -> int:
    from resnet.cli.recipes import format_recipes
    from resnet.cli.rundirs import resolve_target

    if args.list:
        print(format_recipes())
        return 0
    if not args.config:
        raise UserError(
            "name a recipe or a run directory, e.g. `resnet train cifar10/resnet20 --data-dir D` or "
            "`resnet train runs/cifar10-resnet20`; `resnet recipes` lists the recipes"
        )
    cfg, out, _ = resolve_target(args)
    # Checked before anything runs: a seed refused after its run was trained wastes the run.
    seeds = parse_seeds(args.seeds, args.seed) if args.seeds is not None else None
    if args.print_config:
        import yaml

        from resnet.analysis.report import applicable_nested

        # Only the keys that apply (no image-folder keys for CIFAR, no plateau settings on a step schedule).
        print("# resolved recipe; keys that do not apply to this dataset and model are left out")
        print(yaml.safe_dump(applicable_nested(cfg.to_dict()), sort_keys=False), end="")
        return 0
    if args.dry_run:
        from resnet.train.plan import format_plan, plan_run

        print(format_plan(plan_run(cfg, out)))
        return 0
    from resnet.train import distributed

    try:
        return _train(args, cfg, out, seeds)
    except distributed.RankError as e:  # every rank raised it: one line per node, from its first process
        if os.environ.get("LOCAL_RANK", "0") == "0":
            print(f"resnet: error: {e}", file=sys.stderr)
        return 2
    except UserError as e:
        if not distributed.launched_by_torchrun():
            raise
        named = str(e) if str(e).startswith("rank ") else f"rank {distributed.env_rank()}: {e}"
        print(f"resnet: error: {named}", file=sys.stderr)  # this rank alone failed
        return 2
    except RuntimeError as e:
        line = distributed.lost_peer_line(e)
        if line is None:
            raise
        print(f"resnet: error: {line}", file=sys.stderr)
        return 1


def _train(args: argparse.Namespace, cfg: Config, out: Path, seeds: list[int] | None) -> int:
    from resnet.cli.rundirs import resume_command
    from resnet.errors import TrainingInterrupted
    from resnet.train import distributed
    from resnet.train.loop import fit

    try:
        if seeds is not None:
            if args.restart:
                raise UserError("--restart takes one run directory, not --seeds")
            from resnet.train.multiseed_fit import fit_seeds
            from resnet.train.runtime import apply_threads

            apply_threads("auto" if args.threads is None else args.threads)
            fit_seeds(cfg, {s: f"{out}-s{s}" for s in seeds}, argv=args.argv)
        else:
            fit(
                cfg,
                out,
                argv=args.argv,
                restart=args.restart,
                threads="auto" if args.threads is None else args.threads,
            )
    except TrainingInterrupted as e:
        if distributed.is_main():
            # Several seeds write OUT-s<seed> each; they resume together with the same command.
            where = f"{out}-s*/checkpoint.pt" if args.seeds else str(Path(out) / "checkpoint.pt")
            again = shlex.join(args.argv) if args.seeds else resume_command(Path(out))
            print(
                f"resnet: stopped by {e.signal_name} at iteration {e.iteration}; checkpoint written to "
                f"{where}. Resume with: {again}",
                file=sys.stderr,
            )
        return e.exit_code
    finally:
        distributed.cleanup()
    return 0


def parse_seeds(text: str, seed: int | None) -> list[int]:
    """``--seeds 0,1,2`` -> [0, 1, 2] (distinct, each a valid ``train.seed``, not with --seed)."""
    from resnet.ranges import check_flag, check_range

    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise UserError(f"--seeds takes comma-separated integers (e.g. 0,1,2,3,4), got {text!r}") from None
    if seed is not None or len(set(seeds)) != len(seeds):
        raise UserError("--seeds takes distinct seeds and replaces --seed (each seed gets OUT-s<seed>)")
    check_flag("--seeds", len(seeds))
    for s in seeds:
        try:
            check_range("train.seed", s)
        except UserError:
            raise UserError(f"--seeds {text}: {s} is not a seed; seeds are whole numbers in [0, 2^63)") from None
    return seeds


def cmd_eval(args: argparse.Namespace) -> int:
    from resnet.cli.views import check_confusion_target, eval_document, write_confusion
    from resnet.interop.evaluate import evaluate, format_eval

    check_confusion_target(args.confusion, args.run, args.split)  # before minutes of evaluation, not after
    if args.recompute_bn:  # 0: off
        from resnet.ranges import check_flag

        check_flag("--recompute-bn", args.recompute_bn)
    report = evaluate(
        args.run,
        args.data_dir,
        split=args.split,
        protocol=args.protocol,
        limit=args.limit,
        scores=args.scores,
        device=args.device,
        workers=args.workers,
        recompute_bn=args.recompute_bn,
        backend=args.backend,
        precision=args.precision,
        compile=args.compile,
        progress=True,
    )
    written = write_confusion(report, args.run, args.confusion) if args.confusion is not None else []
    if args.json:
        import json

        print(json.dumps(eval_document(report, written), indent=2))
        return 0
    print(format_eval(report))
    for path in written:
        print(f"confusion matrix: {path}")
    return 0


def cmd_data_download(args: argparse.Namespace) -> int:
    from resnet.data.download import download_dataset

    folder = download_dataset(
        args.dataset, args.to, url=args.url, md5=args.md5, progress=not args.quiet, deadline=args.deadline
    )
    print(f"{args.dataset} is ready in {folder}; train with --data-dir {folder}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a recipe, or continue a run directory",
        description="Train a recipe into a run directory; an existing run directory is resumed from its "
        "checkpoint. `resnet train RUN_DIR` continues a run with everything it recorded (recipe, data folder, "
        "overrides).",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "config",
        nargs="?",
        default=None,
        help="a recipe name such as cifar10/resnet56 (`resnet recipes` lists them), a YAML file, or a run directory",
    )
    p.add_argument(
        "--data-dir", default=None, help="dataset folder or archive (default: the recipe's, or the run directory's)"
    )
    p.add_argument("--out", default=None, help="run directory (default runs/<recipe>); an existing one is resumed")
    p.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="total iterations, the schedule scaled to them (default: the recipe's schedule.iterations, "
        "64,000 on CIFAR-10)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of init, data order and augmentation (default: the recipe's train.seed, 0)",
    )
    p.add_argument("--seeds", default=None, help="several seeds as one step, e.g. 0,1,2,3,4: run dirs OUT-s<seed>")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (train.device)")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        help="iterations between checkpoints (default: the recipe's train.checkpoint_every, 2,000 on CIFAR-10; "
        "1/8 of a run shortened by --iterations)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch's intra-op CPU threads (default: OMP_NUM_THREADS if set, else the free cores: the cores "
        "this process may use minus the load average and the decode workers)",
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any config key (repeatable)")
    p.add_argument(
        "--restart",
        action="store_true",
        help="a run whose checkpoint is gone: train it again from iteration 0 (old metrics kept as metrics.jsonl.old)",
    )
    p.add_argument("--list", action="store_true", help="list the recipes and exit")
    p.add_argument("--print-config", action="store_true", help="print the resolved recipe (YAML) and exit")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="resolve data, model and schedule, print them and exit without training or writing a run directory",
    )
    p.set_defaults(handler=cmd_train)
    _add_eval(sub)
    _add_data(sub)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="top-1 and per-class error of a run or checkpoint")
    p.add_argument(
        "run",
        help="run directory, checkpoint (ours, converted, .safetensors) or .onnx / .pt2 file from `resnet export`",
    )
    p.add_argument(
        "--data-dir", default=None, help="dataset folder (default: the one recorded in the checkpoint's recipe)"
    )
    p.add_argument("--split", default="test", choices=("val", "test"), help="image folders: always val")
    p.add_argument(
        "--protocol",
        default=None,
        choices=("center", "10crop", "multiscale"),
        help="image folders (section 3.4): centre crop, 10-crop, or multi-scale fully convolutional",
    )
    p.add_argument("--limit", type=int, default=None, help="evaluate a fixed random subset of this many images")
    p.add_argument("--scores", default="softmax", choices=("softmax", "logits"), help="how views are averaged")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int, default=None, help="decode workers (image folders; default: the run's)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    p.add_argument(
        "--confusion",
        nargs="?",
        const="",
        default=None,
        metavar="PNG",
        help="also write the confusion matrix as PNG and CSV (default file: RUN_DIR/confusion-SPLIT.png)",
    )
    from resnet.cli.recipes import add_force

    add_force(p)
    p.add_argument(
        "--recompute-bn",
        type=int,
        default=0,
        metavar="N",
        help="also evaluate with BN statistics averaged over N training batches (the paper's released models)",
    )
    from resnet.cli.interop import add_backend_flags

    add_backend_flags(p)
    p.set_defaults(handler=cmd_eval)


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="dataset utilities")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    d = data_sub.add_parser("download", help="fetch, md5-check and extract an official archive")
    d.add_argument("dataset", help="which official archive: cifar10, cifar100 (or a registered dataset's)")
    d.add_argument("--to", default="data", help="destination folder")
    d.add_argument("--url", default=None, help="a mirror of the official archive")
    d.add_argument("--md5", default=None, help="expected md5 of the archive at --url")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.add_argument("--deadline", type=float, default=3600.0, metavar="SECONDS", help="give up after SECONDS in all")
    from resnet.cli.recipes import add_force

    add_force(d)  # an archive of that name resnet did not write is refused without it
    d.set_defaults(handler=cmd_data_download)
