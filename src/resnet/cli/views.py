"""``resnet plot`` and the views ``resnet eval`` writes: curves of runs, JSON reports, confusion matrices."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet.cli.recipes import add_force
from resnet.errors import UserError

if TYPE_CHECKING:
    from resnet.eval.evaluate import EvalReport


def cmd_plot(args: argparse.Namespace) -> int:
    from resnet.analysis.curves import plot_runs

    if args.ylim is not None and not 0 <= args.ylim[0] < args.ylim[1]:
        raise UserError(f"--ylim LOW HIGH needs 0 <= LOW < HIGH, got {args.ylim[0]:g} {args.ylim[1]:g}")
    out = Path(args.out) if args.out else default_plot_path(args.runs)
    if out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise UserError(f"--out {out}: name a .png, .pdf or .svg file")
    from resnet.io import check_output, owning

    with owning(out.parent) if not args.out and len(args.runs) == 1 else contextlib.nullcontext():
        check_output(out)  # before the runs are read
        path = plot_runs(args.runs, out, overlay=args.overlay, split=args.split, ylim=args.ylim, title=args.title)
    print(f"curves: {path}")
    return 0


def default_plot_path(runs: list[str]) -> Path:
    """``RUN_DIR/curves.png`` for one run; ``curves.png`` here for several."""
    return Path(runs[0]) / "curves.png" if len(runs) == 1 else Path("curves.png")


def _add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="training and test error curves of run directories (paper Fig. 4/6 style)",
        description="Dashed lines: training error; bold lines: test error (val for image-folder runs); one "
        "colour per run. Reads the run directories only, so a run can be plotted while it trains.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories written by `resnet train`")
    p.add_argument("--out", default=None, help="image file (default: RUN_DIR/curves.png for one run, ./curves.png)")
    p.add_argument("--overlay", action="store_true", help="all runs in one panel instead of side by side")
    p.add_argument("--split", choices=("test", "val"), default=None, help="the bold curve (default: test if recorded)")
    p.add_argument(
        "--ylim", type=float, nargs=2, metavar=("LOW", "HIGH"), default=None, help="error axis in %% (default: auto)"
    )
    p.add_argument("--title", default=None, help="figure title")
    add_force(p)
    p.set_defaults(handler=cmd_plot)


def confusion_paths(run: str, split: str, target: str) -> tuple[Path, Path]:
    """Where ``--confusion [PNG]`` writes: the PNG given, else beside the run's checkpoint; the CSV beside it."""
    check_confusion_target(target)
    if target:
        png = Path(target)
    else:
        src = Path(run)
        tag = split.split(",")[0]
        png = src / f"confusion-{tag}.png" if src.is_dir() else src.with_name(f"{src.stem}-confusion-{tag}.png")
    return png, png.with_suffix(".csv")


def check_confusion_target(target: str | None, run: str | None = None, split: str = "test") -> None:
    """Refuse a --confusion target that is no .png, or whose PNG or CSV the output rule would refuse."""
    if target and Path(target).suffix.lower() != ".png":
        raise UserError(f"--confusion {target}: name a .png file (the CSV is written beside it)")
    if target is None or run is None:
        return
    from resnet.io import check_output

    with _run_views(run, target):
        for path in confusion_paths(run, split, target):
            check_output(path)


def _run_views(run: str, target: str | None):
    """The run directory owns the views written into it by default (confusion-*.png, curves.png)."""
    import contextlib

    from resnet.io import owning

    return owning(run) if not target and Path(run).is_dir() else contextlib.nullcontext()


def write_confusion(report: EvalReport, run: str, target: str) -> list[Path]:
    """The confusion matrix of an evaluation report as a PNG and a CSV; returns both paths."""
    from resnet.analysis.confusion import plot_confusion, write_confusion_csv

    res, classes = report.result, list(report.classes)
    png, csv_path = confusion_paths(run, report.split_label, target)
    matrix = res.confusion(len(classes))
    title = f"{report.model} at iteration {report.iteration}, {report.split_label}: top-1 error {res.error:.2f}%"
    from resnet.io import check_output

    with _run_views(run, target):
        for path in (png, csv_path):  # both checked before either is written
            check_output(path)
        return [plot_confusion(matrix, classes, png, title=title), write_confusion_csv(matrix, classes, csv_path)]


def eval_document(report: EvalReport, written: list[Path]) -> dict[str, Any]:
    """``resnet eval --json``: the same numbers as the table; NaN (a class with no images) becomes null."""
    import math

    res = report.result

    def num(v: float) -> float | None:
        return None if v is None or not math.isfinite(v) else round(float(v), 4)

    doc: dict[str, Any] = {
        "checkpoint": report.checkpoint,
        "model": report.model,
        "iteration": report.iteration,
        "split": report.split_label,
        "images": res.n,
        "top1_error": num(res.error),
        "top5_error": num(res.top5_error),
        "loss": num(res.loss),
        "per_class_error": {name: num(e) for name, e in zip(report.classes, res.per_class, strict=False)},
        "skipped": list(res.skipped),
    }
    if report.engine is not None:  # --backend/--precision: the engine and its fp32 agreement
        doc["engine"] = report.engine
        if report.agreement is not None and report.fp32_error is not None:
            doc["agreement"], doc["fp32_error"] = num(report.agreement), num(report.fp32_error)
    bn = report.recomputed_bn
    if bn is not None:  # --recompute-bn: the same errors with BN statistics averaged over training batches
        r = bn.result
        doc["recomputed_bn"] = {"batches": bn.batches, "top1_error": num(r.error), "top5_error": num(r.top5_error),
                                "loss": num(r.loss)}  # fmt: skip
    if written:
        doc["confusion"] = {"png": str(written[0]), "csv": str(written[1])}
    return doc
