"""Reports of the ImageNet experiments (section 3.4): Table 2 (plain vs ResNet, 18/34 layers) and Table 3.

Made from run directories only: the runs (:mod:`resnet.experiments.imagenet` trains them) and the test of
each final checkpoint with the paper's protocol, stored beside it as ``eval-<protocol>.json`` (10-crop by
default; ``multiscale`` compares with Table 4 instead). Training curves follow Fig. 4
(thin: training error, bold: validation error at the centre crop).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnet.analysis.plots import plot_error_curves
from resnet.analysis.report import RunRecord, markdown_table, metadata, scope_caveat, write_csv
from resnet.io import atomic_write_text
from resnet.paper import IMAGENET_ITERATIONS, IMAGENET_TRAIN_IMAGES, TABLE2_TOP1, TABLE3, TABLE4

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


def imagenet_report(
    name: str,
    runs: list[RunRecord],
    tests: dict[str, dict[str, Any] | None],
    runs_map: dict[str, str],
    protocol: str,
    out: Path,
    title: str,
) -> Path:
    """Table 2 / Table 3 (or Table 4 with ``multiscale``) from the runs and their final test results."""
    paper_table = TABLE4 if protocol == "multiscale" else TABLE3
    headers = ["net", f"top-1 % ({protocol})", "paper top-1 %", "difference", f"top-5 % ({protocol})",
               "paper top-5 %", "val images", "status"]  # fmt: skip
    rows = []
    for r, key in zip(runs, runs_map.values(), strict=True):
        t = tests[r.name]
        if name == "imagenet-table2" and protocol == "10crop":
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
    caveat = scope_caveat(runs, IMAGENET_ITERATIONS, IMAGENET_TRAIN_IMAGES)
    compare = "Table 4 (multi-scale)" if protocol == "multiscale" else "Table 2/3 (10-crop)"
    text = f"""# {title}

{caveat + chr(10) + chr(10) if caveat else ""}Recipes `configs/imagenet/*.yaml` (section 3.4): batch 256,
SGD momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 on plateaus, scale augmentation [256, 480],
224 crops, flips, per-pixel mean, PCA lighting. Tested on the validation folder with the `{protocol}`
protocol and compared with the paper's {compare}.

![curves]({name}.png)

{markdown_table(headers, rows)}

## Runs
{metadata(runs)}
"""
    report = out / "REPORT.md"
    atomic_write_text(report, text)
    return report
