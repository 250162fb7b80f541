"""Reports of the ImageNet experiments (section 3.4): Table 2 (plain vs ResNet, 18/34 layers) and Table 3.

Made from run directories only: the runs (:mod:`resnet.experiments.imagenet` trains them) and the test of
each final checkpoint with the paper's protocol, stored beside it as ``eval-<protocol>.json`` (10-crop by
default; ``multiscale`` compares with Table 4 instead). Training curves follow Fig. 4 (dashed: training
error, bold: validation error at the centre crop). The paper's claims get verdicts as the CIFAR reports do.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from resnet.analysis.claims import Verdict, compare, render
from resnet.analysis.plots import plot_error_curves
from resnet.analysis.report import RunRecord, markdown_table, metadata, scope_caveat, scope_note, write_csv
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

#: The paper's claims each table supports: (claim, net, other net, expect). Section 4.1 and Tables 2-3.
CLAIMS = {
    "imagenet-table2": [
        ("the deeper plain-34 has higher validation error than plain-18 (the degradation problem, section 4.1)",
         "plain34", "plain18", "higher"),
        ("the deeper ResNet-34 has lower validation error than ResNet-18 (Table 2)", "resnet34", "resnet18", "lower"),
        ("ResNet-34 has lower validation error than plain-34 (Table 2)", "resnet34", "plain34", "lower"),
    ],
    "imagenet-table3": [
        ("ResNet-34 (option A) has lower error than plain-34 (Table 3)", "resnet34-A", "plain34", "lower"),
        ("projection shortcuts (B) are slightly better than zero-padding (A) (Table 3)", "resnet34-B", "resnet34-A",
         "lower"),
        ("ResNet-50 has lower error than ResNet-34 (Table 3)", "resnet50", "resnet34-B", "lower"),
        ("ResNet-101 has lower error than ResNet-50 (Table 3)", "resnet101", "resnet50", "lower"),
        ("ResNet-152 has lower error than ResNet-101 (Table 3)", "resnet152", "resnet101", "lower"),
    ],
}  # fmt: skip
#: A difference in top-1 error counts only beyond this many points (or two binomial standard errors).
FLOOR = 0.5


def chance_error(classes: int) -> float:
    """The top-1 error of guessing: 99.9% on ImageNet's 1000 classes, 50% on two."""
    return 100.0 * (1 - 1 / max(classes, 1))


def top1_with_se(test: dict[str, Any]) -> tuple[float, float]:
    """(top-1 error, its binomial standard error in points): n validation images decide how much a difference
    between two nets can mean (30 images: about 9 points each)."""
    p, n = test["top1"] / 100.0, max(int(test.get("n") or 0), 1)
    return test["top1"], 100.0 * math.sqrt(max(p * (1 - p), 1e-12) / n)


def imagenet_verdicts(
    name: str, runs: list[RunRecord], tests: dict[str, dict[str, Any] | None], runs_map: dict[str, str]
) -> list[Verdict]:
    """Verdicts on the table's claims from the final top-1 errors; inconclusive when a run is missing or
    incomplete, or a net is still within 10% of chance (a shortened run on a small folder)."""
    errors, unfinished, classes = {}, set(), 1000
    for r, key in zip(runs, runs_map.values(), strict=True):
        t = tests.get(r.name)
        if r.status == "partial":
            unfinished.add(key)
        if t and t.get("top1") is not None:
            errors[key] = top1_with_se(t)
            classes = int(t.get("classes") or classes)
    chance = chance_error(classes)
    verdicts = []
    for claim, a, b, expect in CLAIMS.get(name, []):
        if a not in runs_map.values() or b not in runs_map.values():
            continue
        verdicts.append(
            compare(claim, a, b, errors, expect=expect, floor=FLOOR, quantity="top-1 error",
                    unfinished=sorted({a, b} & unfinished), near_chance=0.9 * chance, chance=chance)
        )  # fmt: skip
    return verdicts


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
    note = scope_note(runs, IMAGENET_ITERATIONS, IMAGENET_TRAIN_IMAGES)
    long = max((r.target or 0 for r in runs), default=0) >= 10_000
    plot_error_curves(panels, out / f"{name}.png", eval_split="val", title=title, note=note,
                      xscale=1e4 if long else 1.0, xlabel="iter. (1e4)" if long else "iteration")  # fmt: skip
    caveat = scope_caveat(runs, IMAGENET_ITERATIONS, IMAGENET_TRAIN_IMAGES)
    compare_with = "Table 4 (multi-scale)" if protocol == "multiscale" else "Table 2/3 (10-crop)"
    text = f"""# {title}

{caveat + chr(10) + chr(10) if caveat else ""}Recipes `configs/imagenet/*.yaml` (section 3.4): batch 256,
SGD momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 on plateaus, scale augmentation [256, 480],
224 crops, flips, per-pixel mean, PCA lighting. Tested on the validation folder with the `{protocol}`
protocol and compared with the paper's {compare_with}.

![curves]({name}.png)

Dashed: training error (running, with augmentation); bold: validation error (centre crop) during training.

{markdown_table(headers, rows)}

{render(imagenet_verdicts(name, runs, tests, runs_map))}

## Runs
{metadata(runs)}
"""
    report = out / "REPORT.md"
    atomic_write_text(report, text)
    return report
