"""Reports of the ImageNet experiments (section 3.4): Table 2 (plain vs ResNet, 18/34 layers) and Table 3.

They need an image folder (``--data-dir ROOT`` with train/ and val/). Each net trains with its recipe in
``configs/imagenet/``; the final checkpoint is then tested with the paper's protocol (10-crop by default;
``--protocol multiscale`` compares with Table 4 instead) and the result is stored in the run directory as
``eval-<protocol>.json``, so the report is made from run directories only. Training curves follow Fig. 4
(thin: training error, bold: validation error at the centre crop).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from resnet.analysis.plots import plot_error_curves
from resnet.analysis.report import RunRecord, markdown_table, metadata, read_run, scope_caveat, write_csv
from resnet.checkpoint import atomic_write_text
from resnet.errors import UserError
from resnet.paper import TABLE2_TOP1, TABLE3, TABLE4
from resnet.reproduce import Options, experiment
from resnet.runner import RunSpec, train_runs

IMAGENET_TRAIN_IMAGES = 1_281_167
PAPER_IMAGENET_ITERATIONS = 600_000
#: recipe -> (label, key in the paper's tables)
TABLE2_RUNS = {"plain18": "plain18", "plain34": "plain34", "resnet18": "resnet18", "resnet34": "resnet34"}
TABLE3_RUNS = {
    "plain34": "plain34",
    "resnet34": "resnet34-A",
    "resnet34_B": "resnet34-B",
    "resnet34_C": "resnet34-C",
    "resnet50": "resnet50",
    "resnet101": "resnet101",
    "resnet152": "resnet152",
}


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
    """The final checkpoint under ``opts.protocol``, cached in the run directory."""
    if not run.done:
        return None
    path = run.root / f"eval-{opts.protocol}.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("iteration") == run.iteration:
            return cached
    if opts.report_only:
        return None
    from resnet.evaluate import evaluate_checkpoint

    report = evaluate_checkpoint(run.root, "val", opts.data_dir, protocol=opts.protocol, device=opts.device or "auto")
    res = report["result"]
    out = {"iteration": report["iteration"], "protocol": opts.protocol, "top1": res.error, "top5": res.top5_error,
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
    out = opts.out / name
    paper_table = TABLE4 if opts.protocol == "multiscale" else TABLE3
    headers = ["net", f"top-1 % ({opts.protocol})", "paper top-1 %", "difference", f"top-5 % ({opts.protocol})",
               "paper top-5 %", "val images", "status"]  # fmt: skip
    rows = []
    for r, key in zip(runs, runs_map.values(), strict=True):
        t = tests[r.name]
        if name == "imagenet-table2" and opts.protocol == "10crop":
            p1, p5 = TABLE2_TOP1.get(key), None
        else:
            p1, p5 = paper_table.get(key, (None, None))
        top1, top5 = (t["top1"], t["top5"]) if t else (None, None)
        diff = f"{top1 - p1:+.2f}" if (top1 is not None and p1 is not None) else None
        rows.append([key, top1, p1, diff, top5, p5, t["n"] if t else None, r.label() or "finished"])
    write_csv(out / f"{name}.csv", headers, rows)
    panels: dict[str, dict[str, list]] = {"plain": {}, "ResNet": {}}
    for r, key in zip(runs, runs_map.values(), strict=True):
        if r.records:
            panels["plain" if key.startswith("plain") else "ResNet"][key] = r.records
    plot_error_curves(panels, out / f"{name}.png", eval_split="val", title=f"{title}: thin = train, bold = val")
    caveat = scope_caveat(runs, PAPER_IMAGENET_ITERATIONS, IMAGENET_TRAIN_IMAGES)
    compare = "Table 4 (multi-scale)" if opts.protocol == "multiscale" else "Table 2/3 (10-crop)"
    text = f"""# {title}

{caveat + chr(10) + chr(10) if caveat else ""}Recipes `configs/imagenet/*.yaml` (section 3.4): batch 256,
SGD momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 on plateaus, scale augmentation [256, 480],
224 crops, flips, per-pixel mean, PCA lighting. Tested on the validation folder with the `{opts.protocol}`
protocol and compared with the paper's {compare}.

![curves]({name}.png)

{markdown_table(headers, rows)}

## Runs
{metadata(runs)}
"""
    report = out / "REPORT.md"
    atomic_write_text(report, text)
    return report


@experiment("imagenet-table2")
def imagenet_table2(opts: Options) -> Path:
    return _run("imagenet-table2", TABLE2_RUNS, opts, "Table 2: plain vs ResNet on ImageNet (18 and 34 layers)")


@experiment("imagenet-table3")
def imagenet_table3(opts: Options) -> Path:
    return _run("imagenet-table3", TABLE3_RUNS, opts, "Table 3: shortcut options and deeper ResNets on ImageNet")
