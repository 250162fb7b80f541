"""``resnet models`` and ``resnet summary``: the model zoo and per-layer complexity."""

from __future__ import annotations

import argparse

from resnet.errors import UserError
from resnet.models.arch import BOTTLENECK_STRIDES, SHORTCUT_OPTIONS


def cmd_models(args: argparse.Namespace) -> int:
    from resnet.models.registry import list_models
    from resnet.models.zoo import zoo_table

    names = list_models(args.pattern)
    if not names:
        raise UserError(f"no registered model matches {args.pattern!r}; run `resnet models` for the list")
    print(zoo_table(names))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from resnet.models import build_network, model_info
    from resnet.models.complexity import format_table, layer_table
    from resnet.models.registry import check_model_budget

    if args.num_classes is not None and args.num_classes < 1:
        raise UserError(f"--num-classes must be at least 1, got {args.num_classes}")
    if args.input_size and min(args.input_size) < 1:
        raise UserError(f"--input-size must be three positive numbers C H W, got {' '.join(map(str, args.input_size))}")
    info = model_info(args.name)
    kwargs = {k: v for k, v in (("shortcut", args.shortcut), ("bottleneck_stride", args.bottleneck_stride)) if v}
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    shape = tuple(args.input_size) if args.input_size else info.input_size
    check_model_budget(args.name, info, kwargs, shape)  # before anything is allocated, at the input asked for
    model = build_network(args.name, **kwargs)
    try:
        table = layer_table(model, shape)
    except RuntimeError as e:  # too few channels, or an image too small for the stem's strides
        first = (str(e).strip().splitlines() or ["cannot run"])[0][:200]
        raise UserError(f"{args.name} cannot take an input of {'x'.join(map(str, shape))} ({first})") from None
    print(f"{args.name}: {info.doc}; input {'x'.join(map(str, shape))}")
    print(format_table(table))
    return 0


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list the model zoo with parameters, GMACs and the paper's figures",
        description="List every model (ImageNet and CIFAR, residual and plain): its layout, parameters, "
        "multiply-adds at its native input size and the paper's table or figure it appears in.",
    )
    p.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'resnet*' or 'plain?0'")
    p.set_defaults(handler=cmd_models)

    p = sub.add_parser("summary", help="per-layer table of one model: output shape, params, MACs")
    p.add_argument("name", help="model name, e.g. resnet50 or resnet56")
    p.add_argument("--shortcut", choices=SHORTCUT_OPTIONS, default=None, help="shortcut option (residual nets)")
    p.add_argument("--bottleneck-stride", choices=BOTTLENECK_STRIDES, default=None, help="bottleneck nets only")
    p.add_argument("--num-classes", type=int, default=None, help="classes of the fc layer (default: the model's)")
    p.add_argument(
        "--input-size",
        type=int,
        nargs=3,
        metavar=("C", "H", "W"),
        default=None,
        help="input image shape (default: the model's native size, e.g. 3 32 32 for CIFAR nets)",
    )
    p.set_defaults(handler=cmd_summary)
