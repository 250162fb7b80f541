"""The ``resnet`` command line: one subcommand per job, each a thin wrapper over the library.

Bad input raises :class:`~resnet.errors.UserError` (or ``ValueError``/``OSError`` from the library); this
module turns those into one ``error: ...`` line and exit status 2, never a traceback. Set
``RESNET_DEBUG=1`` to see the traceback anyway.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from resnet.errors import UserError

Handler = Callable[[argparse.Namespace], int]


def cmd_models(args: argparse.Namespace) -> int:
    from resnet.analysis.complexity import zoo_table
    from resnet.models import list_models

    names = list_models(args.pattern)
    if not names:
        raise UserError(f"no registered model matches {args.pattern!r}; run `resnet models` for the list")
    print(zoo_table(names))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from resnet.analysis.complexity import format_table, layer_table
    from resnet.models import create_model, model_info

    info = model_info(args.name)
    kwargs = {k: v for k, v in (("shortcut", args.shortcut), ("bottleneck_stride", args.bottleneck_stride)) if v}
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    model = create_model(args.name, **kwargs)
    shape = tuple(args.input_size) if args.input_size else info.input_size
    print(f"{args.name}: {info.doc}; input {'x'.join(map(str, shape))}")
    print(format_table(layer_table(model, shape)))
    return 0


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model zoo with parameters, GMACs and the paper's figures")
    p.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'resnet*' or 'plain?0'")
    p.set_defaults(handler=cmd_models)

    p = sub.add_parser("summary", help="per-layer table of one model: output shape, params, MACs")
    p.add_argument("name", help="model name, e.g. resnet50 or resnet56")
    p.add_argument("--shortcut", choices=("A", "B", "C"), default=None, help="shortcut option (residual nets)")
    p.add_argument("--bottleneck-stride", choices=("1x1", "3x3"), default=None, help="ImageNet nets only")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"), default=None)
    p.set_defaults(handler=cmd_summary)


def cmd_train(args: argparse.Namespace) -> int:
    from resnet.config import load_config
    from resnet.train import TrainingInterrupted, fit

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
    from resnet import distributed

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
    from resnet.evaluate import evaluate_checkpoint, format_eval

    report = evaluate_checkpoint(
        args.run,
        split=args.split,
        data_dir=args.data_dir,
        protocol=args.protocol,
        limit=args.limit,
        scores=args.scores,
        device=args.device,
        workers=args.workers,
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
    p.add_argument("run", help="run directory or checkpoint file")
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


def cmd_demo(args: argparse.Namespace) -> int:
    from resnet.demo import run_demo

    depths = tuple(args.depths)
    for d in depths:
        from resnet.models.cifar import check_cifar_depth

        check_cifar_depth(d)
    if len(depths) < 2:
        raise UserError("--depths needs at least two depths to compare, e.g. --depths 20 56")
    report = run_demo(args.out, depths=depths, iterations=args.iterations, jobs=args.jobs)
    print(f"report: {report} (plot: {report.parent / 'curves.png'})")
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="plain vs residual nets on real digits: the degradation problem in minutes")
    p.add_argument("--out", default="runs/demo", help="where runs and the report go (finished runs are reused)")
    p.add_argument("--depths", type=int, nargs="+", default=[20, 56], help="CIFAR-style depths 6n+2 to compare")
    p.add_argument("--iterations", type=int, default=500)
    p.add_argument("--jobs", type=int, default=2, help="runs trained in parallel (one process each)")
    p.set_defaults(handler=cmd_demo)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from resnet.reproduce import Options, default_out, reproduce

    opts = Options(
        out=Path(args.out) if args.out else default_out(args.experiment),
        data_dir=args.data_dir,
        iterations=args.iterations,
        only=args.only,
        seeds=args.seeds,
        device=args.device,
        jobs=args.jobs,
        report_only=args.report_only,
        with_110=args.with_110,
        with_1202=args.with_1202,
        sets=list(args.set or []),
        protocol=args.protocol,
    )
    if opts.seeds < 1 or opts.jobs < 1:
        raise UserError("--seeds and --jobs must be at least 1")
    report = reproduce(args.experiment, opts)
    print(f"report: {report}")
    return 0


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="run one of the paper's experiments and write its report")
    p.add_argument("experiment", help="table1, cifar-table6, cifar-fig6, fig7, imagenet-table2 or imagenet-table3")
    p.add_argument("--out", default=None, help="experiment directory, runs shared inside it (default experiments/...)")
    p.add_argument("--data-dir", default=None, help="dataset folder (CIFAR-10 python release or image folder)")
    p.add_argument("--iterations", type=int, default=None, help="shorten the schedule (the report says so)")
    p.add_argument("--only", nargs="+", default=None, help="train only these nets or runs, e.g. resnet56")
    p.add_argument("--seeds", type=int, default=1, help="runs per net; Table 6 reports best and mean±std")
    p.add_argument("--device", default=None)
    p.add_argument("--jobs", type=int, default=1, help="runs trained in parallel processes (CPU)")
    p.add_argument("--report-only", action="store_true", help="re-make the report from existing runs")
    p.add_argument("--with-110", action="store_true", help="cifar-fig6: add plain-110 and ResNet-110")
    p.add_argument("--with-1202", action="store_true", help="cifar-table6: add ResNet-1202")
    p.add_argument("--protocol", default="10crop", choices=("center", "10crop", "multiscale"))
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe key in every run")
    p.set_defaults(handler=cmd_reproduce)


def cmd_convert(args: argparse.Namespace) -> int:
    from resnet.convert import convert_file

    ckpt, notes, _ = convert_file(args.src, args.to, model=args.model, bottleneck_stride=args.bottleneck_stride)
    kwargs = ", ".join(f"{k}={v}" for k, v in ckpt["model_kwargs"].items())
    print(
        f"{args.to}: {ckpt['model_name']}({kwargs}), {len(ckpt['model'])} tensors, "
        f"{len(ckpt['classes'])} classes ({ckpt['dataset']}), input {'x'.join(map(str, ckpt['input_size']))}"
    )
    for note in notes:
        print(f"note: {note}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import json

    from resnet.predict import Predictor, find_images, format_report

    predictor = Predictor.from_file(args.checkpoint)
    predictor.check_protocol(args.protocol)  # before reading any image
    paths = find_images(args.images)
    if not paths:
        raise UserError(f"no image files in {', '.join(args.images)}")
    report = predictor.predict(
        paths,
        topk=args.topk,
        protocol=args.protocol,
        batch_size=args.batch_size,
        warn=lambda line: print(f"resnet: {line}", file=sys.stderr),
    )
    if not report.predictions:
        raise UserError(f"none of the {len(paths)} files could be read as an image")
    if args.json:
        doc = {
            "checkpoint": str(args.checkpoint),
            "model": predictor.model_name,
            "protocol": args.protocol,
            "predictions": [p.as_dict() for p in report.predictions],
            "skipped": [{"path": p, "error": e} for p, e in report.skipped],
        }
        print(json.dumps(doc, indent=2))
    else:
        print(format_report(report))
    return 1 if report.skipped else 0


def cmd_export(args: argparse.Namespace) -> int:
    from resnet.convert import load_any
    from resnet.export import default_output, export_checkpoint

    ckpt, _, model = load_any(args.checkpoint)
    out = args.out or default_output(args.checkpoint, args.format)
    res = export_checkpoint(ckpt, args.format, out, dynamic_batch=args.dynamic_batch, model=model)
    batch = "dynamic batch" if args.dynamic_batch or args.format == "torchscript" else "batch 1"
    line = f"{out}: {args.format}, {ckpt['model_name']}, input Nx{'x'.join(map(str, res['input']))} ({batch})"
    err = res.get("max_rel_error")
    if err is not None:
        line += f"; onnxruntime matches PyTorch (max relative error {err:.1e})"
    print(line)
    return 0


def _add_interop(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="torchvision, DataParallel or own weights -> checked checkpoint or safetensors")
    p.add_argument("src", help="weights: torchvision .pth, a state_dict, our checkpoint or run directory, .safetensors")
    p.add_argument("--to", required=True, help="output: a .pt checkpoint, or .safetensors for the weights alone")
    p.add_argument("--model", default=None, help="model name when the weights cannot tell (plain vs option A)")
    p.add_argument(
        "--bottleneck-stride",
        choices=("1x1", "3x3"),
        default=None,
        help="stride placement of bare bottleneck weights (default 3x3, torchvision's)",
    )
    p.set_defaults(handler=cmd_convert)

    p = sub.add_parser("predict", help="classify images: top-k class names and probabilities")
    p.add_argument("images", nargs="+", help="image files and/or folders (searched recursively)")
    p.add_argument("--checkpoint", required=True, help="checkpoint, run directory, torchvision .pth or .safetensors")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument(
        "--protocol", choices=("center", "10crop"), default="center", help="test views (10crop: ImageNet nets)"
    )
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser("export", help="export a checkpoint to ONNX (verified with onnxruntime) or TorchScript")
    p.add_argument("--checkpoint", required=True, help="checkpoint, run directory, torchvision .pth or .safetensors")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--dynamic-batch", action="store_true", help="symbolic batch dimension (ONNX)")
    p.add_argument("--out", default=None, help="output file (default: next to the checkpoint)")
    p.set_defaults(handler=cmd_export)


#: Subcommand registrars, in the order ``resnet --help`` lists them.
REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_demo,
    _add_models,
    _add_train,
    _add_reproduce,
    _add_interop,
]


def build_parser() -> argparse.ArgumentParser:
    from resnet import __version__

    parser = argparse.ArgumentParser(
        prog="resnet",
        description="Deep Residual Learning for Image Recognition (He et al., 2016): models, training, "
        "reproduction of the paper's experiments.",
    )
    parser.add_argument("--version", action="version", version=f"resnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in REGISTRARS:
        register(sub)
    return parser


def _suggest_command(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """If the first word is a misspelt subcommand, a one-line hint naming the close matches."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if argv and not argv[0].startswith("-") and argv[0] not in sub.choices:
        close = difflib.get_close_matches(argv[0], list(sub.choices), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"choose one of {', '.join(sub.choices)}"
        return f"unknown command {argv[0]!r}; {hint}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``resnet`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    hint = _suggest_command(parser, argv)
    if hint:
        print(f"resnet: error: {hint}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    args.argv = ["resnet", *argv]  # recorded in run directories and used in resume hints
    try:
        return args.handler(args)
    except (UserError, ValueError, OSError) as e:
        if os.environ.get("RESNET_DEBUG"):
            raise
        print(f"resnet: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("resnet: interrupted", file=sys.stderr)
        return 130
