"""The ImageNet experiments (section 3.4): Table 2 and Table 3 (or Table 4), on an image folder.

Each net trains with its recipe in ``configs/imagenet/``; its final checkpoint is then tested with the paper's
protocol and the result cached in the run directory, so :mod:`resnet.analysis.imagenet` reports from run
directories only.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from resnet.analysis.imagenet import TABLE2_RUNS, TABLE3_RUNS, imagenet_report
from resnet.analysis.report import RunRecord, read_run
from resnet.errors import UserError
from resnet.experiments.registry import Option, Options, experiment
from resnet.experiments.runner import RunSpec, train_runs
from resnet.io import atomic_write_text

OUT = "experiments/imagenet"
#: The test views of the final errors (section 3.4); both ImageNet experiments take it.
PROTOCOL = Option(
    "--protocol", "ImageNet test views for the final errors (section 3.4)", "10crop", ("center", "10crop", "multiscale")
)


def _specs(recipes: list[str], opts: Options) -> list[RunSpec]:
    if not opts.data_dir and not opts.report_only:
        raise UserError("ImageNet experiments need --data-dir ROOT (an image folder with train/ and val/)")
    n = opts.iterations
    suffix = f"-it{n}" if n else ""
    base = [f"data.data_dir={opts.data_dir}"] if opts.data_dir else []
    if opts.device:
        base.append(f"train.device={opts.device}")
    if n:
        base.append(f"schedule.iterations={n}")
    specs = [
        RunSpec(f"{r}-s0", f"imagenet/{r}", opts.out / "runs" / f"{r}-s0{suffix}", (*base, *opts.sets)) for r in recipes
    ]
    if opts.only:
        specs = [s for s in specs if s.name in opts.only or s.name.removesuffix("-s0") in opts.only]
    return specs


def _test(run: RunRecord, opts: Options) -> dict[str, Any] | None:
    """The final checkpoint under ``opts.extra["protocol"]``, cached in the run directory."""
    if not run.done:
        return None
    path = run.root / f"eval-{opts.extra['protocol']}.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("iteration") == run.iteration:
            return cached
    if opts.report_only:
        return None
    from resnet.interop.evaluate import evaluate_checkpoint

    protocol = opts.extra["protocol"]
    report = evaluate_checkpoint(run.root, "val", opts.data_dir, protocol=protocol, device=opts.device or "auto")
    res = report["result"]
    out = {"iteration": report["iteration"], "protocol": protocol, "top1": res.error, "top5": res.top5_error,
           "n": res.n, "skipped": len(res.skipped)}  # fmt: skip
    atomic_write_text(path, json.dumps(out, indent=2) + "\n")
    return out


def _run(name: str, runs_map: dict[str, str], opts: Options, title: str) -> Path:
    specs = _specs(list(runs_map), opts)
    if not opts.report_only and specs:
        train_runs(specs, jobs=1, echo=True)
    every = _specs(list(runs_map), dataclasses.replace(opts, only=None, report_only=True))
    runs = [read_run(s.name, s.out) for s in every]
    tests = {r.name: _test(r, opts) for r in runs}
    return imagenet_report(name, runs, tests, runs_map, opts.extra["protocol"], opts.out / name, title)


@experiment(
    "imagenet-table2",
    help="Table 2: plain vs ResNet-18/34 on an ImageNet-style image folder",
    out=OUT,
    options=(PROTOCOL,),
)
def imagenet_table2(opts: Options) -> Path:
    return _run("imagenet-table2", TABLE2_RUNS, opts, "Table 2: plain vs ResNet on ImageNet (18 and 34 layers)")


@experiment(
    "imagenet-table3",
    help="Table 3: shortcut options A/B/C and ResNet-50/101/152 on an image folder",
    out=OUT,
    options=(PROTOCOL,),
)
def imagenet_table3(opts: Options) -> Path:
    return _run("imagenet-table3", TABLE3_RUNS, opts, "Table 3: shortcut options and deeper ResNets on ImageNet")
