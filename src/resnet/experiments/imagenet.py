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
from resnet.config import load_config, shortened_schedule
from resnet.errors import UserError
from resnet.experiments.registry import Option, Options, experiment
from resnet.experiments.runner import RunSpec, select_only, train_runs
from resnet.io import write_output
from resnet.paper import IMAGENET_ITERATIONS, IMAGENET_TRAIN_IMAGES
from resnet.safe_json import read_json

OUT = "experiments/imagenet"
#: The test views of the final errors (section 3.4); both ImageNet experiments take it.
PROTOCOL = Option(
    "--protocol", "ImageNet test views for the final errors (section 3.4)", "10crop", ("center", "10crop", "multiscale")
)


def _specs(recipes: list[str], opts: Options) -> list[RunSpec]:
    if not opts.data_dir and not opts.report_only:
        raise UserError("ImageNet experiments need --data-dir ROOT (an image folder with train/ and val/)")
    n = opts.iterations
    suffix = scope_suffix(opts)
    base = [f"data.data_dir={opts.data_dir}"] if opts.data_dir else []
    if opts.device:
        base.append(f"train.device={opts.device}")
    specs = []
    for r in recipes:
        # The one scaling `resnet train --iterations` uses (eval/log/checkpoint intervals follow the length).
        scaled = [f"{k}={v}" for k, v in shortened_schedule(load_config(f"imagenet/{r}"), n).items()] if n else []
        specs.append(
            RunSpec(f"{r}-s0", f"imagenet/{r}", opts.out / "runs" / f"{r}-s0{suffix}", (*base, *scaled, *opts.sets))
        )
    return select_only(specs, opts.only, recipes)


def training_images(opts: Options) -> int | None:
    """How many images ``ROOT/train`` holds (the file list is cached); None without --data-dir."""
    if not opts.data_dir:
        return None
    from resnet.data.imagefolder import open_splits

    return len(open_splits(opts.data_dir)[0])


def scope_suffix(opts: Options) -> str:
    """``-it20-n80`` for 20 iterations on 80 training images; empty for the paper's schedule on ImageNet's
    1.28M: runs and reports of other lengths or data sizes live beside each other, never overwrite."""
    n, images = opts.iterations, training_images(opts)
    size = f"-n{images}" if images is not None and images != IMAGENET_TRAIN_IMAGES else ""
    return (f"-it{n}" if n and n != IMAGENET_ITERATIONS else "") + size


def _test(run: RunRecord, opts: Options) -> dict[str, Any] | None:
    """The final checkpoint under ``opts.extra["protocol"]``, cached in the run directory."""
    if not run.done:
        return None
    path = run.root / f"eval-{opts.extra['protocol']}.json"
    if path.is_file():
        cached = read_json(path)
        if isinstance(cached, dict) and cached.get("iteration") == run.iteration:
            return cached
    if opts.report_only:
        return None
    from resnet.interop.evaluate import evaluate

    protocol = opts.extra["protocol"]
    device = opts.device or "auto"
    report = evaluate(run.root, opts.data_dir, split="val", protocol=protocol, device=device, progress=True)
    res = report.result
    out = {"iteration": report.iteration, "protocol": protocol, "top1": res.error, "top5": res.top5_error,
           "n": res.n, "skipped": len(res.skipped), "classes": len(report.classes)}  # fmt: skip
    write_output(path, json.dumps(out, indent=2) + "\n", owned=True)  # in the run directory
    return out


def _run(name: str, runs_map: dict[str, str], opts: Options, title: str) -> Path:
    specs = _specs(list(runs_map), opts)
    if not opts.report_only and specs:
        train_runs(specs, jobs=1, echo=True)
    every = _specs(list(runs_map), dataclasses.replace(opts, only=None, report_only=True))
    runs = [read_run(s.name, s.out) for s in every]
    tests = {r.name: _test(r, opts) for r in runs}
    out = opts.out / f"{name}{scope_suffix(opts)}"
    return imagenet_report(name, runs, tests, runs_map, opts.extra["protocol"], out, title)


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
