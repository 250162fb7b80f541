"""``resnet convert``, ``resnet predict`` and ``resnet export``: weights in and out, deployment."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resnet.cli.recipes import add_force
from resnet.errors import UserError


def cmd_convert(args: argparse.Namespace) -> int:
    from resnet.interop.convert import convert_file
    from resnet.interop.stats import preprocessing_stats
    from resnet.io import check_output

    check_output(args.to)  # before any reading: an existing file resnet did not write is refused (--force)
    stats = preprocessing_stats(args.preprocessing, args.mean, args.std)
    ckpt, notes, _ = convert_file(
        args.src,
        args.to,
        model=args.model,
        bottleneck_stride=args.bottleneck_stride,
        source=args.source,
        preprocessing=stats,
    )
    kwargs = ", ".join(f"{k}={v}" for k, v in ckpt.model_kwargs.items())
    print(
        f"{args.to}: {ckpt.model_name}({kwargs}), {len(ckpt.state_dict)} tensors, "
        f"{len(ckpt.classes)} classes ({ckpt.dataset}), input {'x'.join(map(str, ckpt.input_size))}"
    )
    for note in notes:
        print(f"note: {note}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import json

    from resnet.interop.predict import Predictor, find_images, format_report

    paths = find_images(args.images)
    if not paths:
        raise UserError(f"no image files in {', '.join(args.images)}")
    backend = args.backend or "auto"
    predictor = Predictor.from_file(
        args.checkpoint, backend=backend, precision=args.precision, calibration=paths, compile=args.compile
    )
    predictor.check_protocol(args.protocol)  # before reading any image
    report = predictor.predict(
        paths,
        topk=args.topk,
        protocol=args.protocol,
        batch_size=args.batch_size,
        warn=lambda line: print(f"resnet: {line}", file=sys.stderr),
    )
    if not report.predictions:
        raise UserError(f"none of the {len(paths)} files could be read as an image")
    if report.compared:
        engine = predictor.model.describe()  # type: ignore[operator]  # an Engine: only engines compare precisions
        print(
            f"resnet: {engine}: top-1 agrees with fp32 on {report.agree} of "
            f"{report.compared} images ({100.0 * report.agree / report.compared:.1f}%)",
            file=sys.stderr,
        )
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
    from resnet.interop.convert import load_any
    from resnet.interop.export import default_output, export_checkpoint
    from resnet.io import check_output, refuse_overwriting

    out = args.out or default_output(args.checkpoint, args.format)
    source = Path(args.checkpoint) / "checkpoint.pt" if Path(args.checkpoint).is_dir() else args.checkpoint
    refuse_overwriting(out, source, flag="--out" if args.out else "the default output")
    check_output(out)  # before the export work: an existing file resnet did not write is refused (--force)
    if args.static_batch and args.format != "onnx":
        raise UserError(f"--static-batch pins an ONNX graph's batch; a {args.format} export takes any batch: drop it")
    ckpt, _, model = load_any(args.checkpoint)
    res = export_checkpoint(ckpt, args.format, out, dynamic_batch=not args.static_batch, model=model)
    batch = "any batch" if res["dynamic_batch"] else "batch 1"
    line = f"{out}: {args.format}, {ckpt.model_name}, input Nx{'x'.join(map(str, res['input']))} ({batch})"
    if res.get("note"):
        print(f"note: {res['note']}", file=sys.stderr)
    if res.get("pt2_max_rel_error") is not None:
        line += f"; torch.export.load matches PyTorch (max relative error {res['pt2_max_rel_error']:.1e})"
    err = res.get("max_rel_error")  # export_checkpoint removed the file and failed beyond its tolerance
    if err is not None:
        line += f"; onnxruntime matches PyTorch (max relative error {err:.1e})"
    print(line)
    return 0


def add_backend_flags(p: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--precision`` of ``predict`` and ``eval`` (resnet.interop.backends)."""
    p.add_argument(
        "--backend",
        choices=("auto", "torch", "onnxruntime"),
        default=None,
        help="inference engine (predict's default auto: onnxruntime on CPUs where installed for .onnx files "
        "and jobs of 256+ images, else the torch fast path; eval's default: the torch model)",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "int8"),
        default="fp32",
        help="bf16: torch, CPUs with AVX512_BF16/AMX; int8: onnxruntime static quantisation calibrated on the "
        "images (reports top-1 agreement with fp32)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch backend: run through torch.compile (weights frozen); compiles for seconds to a minute first, "
        "then the fastest engine for batches at bf16 (docs/benchmarks.md)",
    )


def _add_interop(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert", help="torchvision, akamaster, wrapped or own weights -> checked checkpoint or safetensors"
    )
    p.add_argument("src", help="weights: torchvision .pth, a state_dict, our checkpoint or run directory, .safetensors")
    p.add_argument("--to", required=True, help="output: a .pt checkpoint, or .safetensors for the weights alone")
    add_force(p)
    p.add_argument("--model", default=None, help="model name when the weights cannot tell (plain vs option A)")
    p.add_argument(
        "--bottleneck-stride",
        choices=("1x1", "3x3"),
        default=None,
        help="stride placement of bare bottleneck weights (default 3x3, torchvision's)",
    )
    p.add_argument(
        "--from",
        dest="source",
        choices=("auto", "torchvision", "akamaster"),
        default="auto",
        help="origin of foreign weights: akamaster = akamaster/pytorch_resnet_cifar10 (mapped exactly)",
    )
    p.add_argument(
        "--preprocessing",
        default=None,
        metavar="PRESET",
        # The presets are registered with the datasets (resnet.data.datasets.PREPROCESSING) and checked there,
        # so the parser stays free of the data layer's imports and a user's preset is accepted too.
        help="mean/std the weights were trained with: a registered preset (imagenet, cifar10 or a user's)",
    )
    p.add_argument("--mean", default=None, help="per-channel mean of [0, 1] pixels, e.g. 0.485,0.456,0.406")
    p.add_argument("--std", default=None, help="per-channel std of [0, 1] pixels, e.g. 0.229,0.224,0.225")
    p.set_defaults(handler=cmd_convert)

    p = sub.add_parser("predict", help="classify images: top-k class names and probabilities")
    p.add_argument("images", nargs="+", help="image files and/or folders (searched recursively)")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint, run directory, torchvision .pth, .safetensors, .onnx or .pt2 (resnet export)",
    )
    p.add_argument("--topk", type=int, default=5, help="classes listed per image")
    p.add_argument(
        "--protocol", choices=("center", "10crop"), default="center", help="test views (10crop: ImageNet nets)"
    )
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    add_backend_flags(p)
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser(
        "export", help="export a checkpoint to ONNX (verified with onnxruntime), torch.export (.pt2) or TorchScript"
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint, run directory, torchvision .pth or .safetensors")
    p.add_argument(
        "--format",
        choices=("onnx", "pt2", "torchscript"),
        default="onnx",
        help="output format (pt2: torch.export, loaded by torch.export.load; torchscript: deprecated upstream)",
    )
    p.add_argument("--static-batch", action="store_true", help="ONNX: fix the batch to 1 (default: any batch)")
    p.add_argument("--dynamic-batch", action="store_true", help=argparse.SUPPRESS)  # the default now; kept working
    p.add_argument("--out", default=None, help="output file (default: next to the checkpoint)")
    add_force(p)
    p.set_defaults(handler=cmd_export)
