"""``resnet train``, ``resnet eval`` and ``resnet data download``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def cmd_train(args: argparse.Namespace) -> int:
    from resnet.config import load_config
    from resnet.train.loop import TrainingInterrupted, fit

    overrides = list(args.set or [])
    for flag, key in (
        ("data_dir", "data.data_dir"),
        ("iterations", "schedule.iterations"),
        ("seed", "train.seed"),
        ("device", "train.device"),
        ("checkpoint_every", "train.checkpoint_every"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = load_config(args.config, overrides)
    out = args.out or default_run_dir(args.config, cfg)
    from resnet.train import distributed

    try:
        fit(cfg, out, argv=args.argv)
    except TrainingInterrupted as e:
        resume = args.argv if args.out else [*args.argv, "--out", str(out)]
        if distributed.is_main():
            print(
                f"resnet: stopped by {e.signal_name} at iteration {e.iteration}; checkpoint written to "
                f"{Path(out) / 'checkpoint.pt'}. Resume with: {shlex.join(resume)}",
                file=sys.stderr,
            )
        return e.exit_code
    finally:
        distributed.cleanup()
    return 0


def default_run_dir(config: str | None, cfg: object) -> Path:
    """``runs/<recipe>`` for ``configs/cifar10/resnet56.yaml`` (or a file elsewhere): runs/cifar10-resnet56."""
    if not config:
        return Path("runs") / "default"
    path = Path(config)
    stem = path.stem if path.suffix else path.name
    parent = path.parent.name if path.parent.name not in ("", ".", "configs") else ""
    return Path("runs") / (f"{parent}-{stem}" if parent else stem)


def cmd_eval(args: argparse.Namespace) -> int:
    from resnet.interop.evaluate import evaluate_checkpoint, format_eval

    report = evaluate_checkpoint(
        args.run,
        split=args.split,
        data_dir=args.data_dir,
        protocol=args.protocol,
        limit=args.limit,
        scores=args.scores,
        device=args.device,
        workers=args.workers,
        backend=args.backend,
        precision=args.precision,
    )
    print(format_eval(report))
    return 0


def cmd_data_download(args: argparse.Namespace) -> int:
    from resnet.data.download import download_dataset

    folder = download_dataset(args.dataset, args.to, url=args.url, md5=args.md5, progress=not args.quiet)
    print(f"{args.dataset} is ready in {folder}; train with --data-dir {folder}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a recipe (resumes an existing run directory)")
    p.add_argument("config", help="recipe: a YAML path or a name such as cifar10/resnet56")
    p.add_argument("--data-dir", default=None, help="dataset folder or archive")
    p.add_argument("--out", default=None, help="run directory (default runs/<recipe>); an existing one is resumed")
    p.add_argument("--iterations", type=int, default=None, help="total iterations (schedule.iterations)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--checkpoint-every", type=int, default=None, help="iterations between checkpoints")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any config key (repeatable)")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("eval", help="top-1 and per-class error of a run or checkpoint")
    p.add_argument("run", help="run directory, checkpoint file or .onnx file from `resnet export`")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--split", default="test", choices=("val", "test"), help="image folders: always val")
    p.add_argument(
        "--protocol",
        default=None,
        choices=("center", "10crop", "multiscale"),
        help="image folders (section 3.4): centre crop, 10-crop, or multi-scale fully convolutional",
    )
    p.add_argument("--limit", type=int, default=None, help="evaluate a fixed random subset of this many images")
    p.add_argument("--scores", default="softmax", choices=("softmax", "logits"), help="how views are averaged")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=None, help="decode workers (image folders; default: the run's)")
    from resnet.cli.interop import add_backend_flags

    add_backend_flags(p)
    p.set_defaults(handler=cmd_eval)

    p = sub.add_parser("data", help="dataset utilities")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    d = data_sub.add_parser("download", help="fetch, md5-check and extract an official archive")
    d.add_argument("dataset", choices=("cifar10", "cifar100"))
    d.add_argument("--to", default="data", help="destination folder (default ./data)")
    d.add_argument("--url", default=None, help="a mirror of the official archive")
    d.add_argument("--md5", default=None, help="expected md5 of the archive at --url")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(handler=cmd_data_download)
