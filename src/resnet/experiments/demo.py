"""``resnet demo``: the degradation problem and its cure, on real handwritten digits, on a CPU in minutes.

Trains plain and residual twins (same layers, same parameters; section 3.3) at two or more depths with the
recipe ``configs/demo/digits.yaml`` and writes ``REPORT.md`` and ``curves.png`` in the style of the paper's
Fig. 6 (dashed: training error, bold: test error). The paper's claim to check (section 4.2): the deeper
plain net has *higher training error* than the shallower one, the deeper ResNet does not.

Runs go to separate processes (``resnet.experiments.runner``), longest first. Finished runs are reused.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from resnet.analysis.plots import plot_error_curves
from resnet.analysis.report import applicable_config
from resnet.config import load_config, read_yaml, shortened_schedule
from resnet.experiments.runner import RunSpec, train_runs
from resnet.io import atomic_write_text
from resnet.rundir_format import read_metrics

logger = logging.getLogger(__name__)

RECIPE = "demo/digits"
#: How much higher (points of training error) the deeper net must be to count as "trains worse".
DEGRADATION_MARGIN = 5.0


def final_train_error(records: list[dict[str, Any]]) -> float:
    """The report's "final training error": the mean of the training records over the last 5% of the run (at
    least five; smooths the batch-to-batch noise). The console prints the same number."""
    from resnet.analysis.claims import final_error  # numpy: imported when a report is made, not when listed

    return final_error(records)[0]


def run_demo(
    out: str | Path = "runs/demo", depths: tuple[int, ...] = (20, 56), iterations: int = 500, jobs: int = 2
) -> Path:
    """Train plain/residual nets at ``depths`` on digits; returns the path of the report."""
    out = Path(out)
    names = [f"{kind}{d}" for d in sorted(depths, reverse=True) for kind in ("plain", "resnet")]
    recipe = load_config(RECIPE)
    scaled = shortened_schedule(recipe, iterations).get("schedule.milestones", recipe.schedule.milestones)
    milestones = f"schedule.milestones={list(scaled)}"  # scaled as `train --iterations` scales them
    specs = [
        RunSpec(n, RECIPE, out / n, (f"model.name={n}", f"schedule.iterations={iterations}", milestones)) for n in names
    ]
    shown = ", ".join(names)
    logger.info("demo: training %s on digits for %d iterations (%d at a time) in %s", shown, iterations, jobs, out)
    start = time.perf_counter()

    def announce(r: dict[str, Any]) -> None:
        final = final_train_error(read_metrics(out / r["name"] / "metrics.jsonl"))
        logger.info(
            f"  {r['name']:<9} {r['iterations']} iterations in {r['train_seconds']:5.1f} s: "
            f"final training error {final:.2f}%, test error {r['test_error']:.2f}%"
        )

    results = train_runs(specs, jobs=jobs, on_done=announce)
    report = write_report(out, depths, results, time.perf_counter() - start)
    return report


def write_report(out: Path, depths: tuple[int, ...], results: dict[str, dict[str, Any]], wall: float) -> Path:
    from resnet.analysis.claims import compare, final_error, render
    from resnet.models import build_network
    from resnet.models.complexity import count_params

    """REPORT.md + curves.png from the run directories' metrics files."""
    depths = tuple(sorted(depths))
    records = {name: read_metrics(out / name / "metrics.jsonl") for name in results}
    panels = {
        "plain nets": {f"plain-{d}": records[f"plain{d}"] for d in depths},
        "ResNets": {f"ResNet-{d}": records[f"resnet{d}"] for d in depths},
    }
    plot_error_curves(panels, out / "curves.png", title="digits: plain vs residual (cf. the paper's Fig. 6)")
    errors = {name: final_error(recs) for name, recs in records.items()}
    final = {name: e[0] for name, e in errors.items()}
    lo, hi = depths[0], depths[-1]
    verdicts = [
        compare(f"the deeper plain-{hi} has higher training error than plain-{lo} (the degradation problem, "
                "section 4.1)", f"plain{hi}", f"plain{lo}", errors, expect="higher", floor=DEGRADATION_MARGIN),
        compare(f"the deeper ResNet-{hi} does not have higher training error than ResNet-{lo} (section 4.1)",
                f"resnet{hi}", f"resnet{lo}", errors, expect="not higher", floor=DEGRADATION_MARGIN),
    ]  # fmt: skip
    config = applicable_config(read_yaml(out / f"resnet{hi}" / "config.yaml"))
    config.pop("model.name")  # one per run
    rows = []
    for d in depths:
        for kind, label in (("plain", "plain"), ("resnet", "ResNet")):
            name = f"{kind}{d}"
            params = count_params(build_network(name, in_channels=1))
            r = results[name]
            rows.append(
                f"| {label}-{d} | {params:,} | {final[name]:.2f} | {r['test_error']:.2f} | {r['train_seconds']:.0f} |"
            )
    text = f"""# Demo: the degradation problem on real handwritten digits

Plain and residual twins (identical layers and parameter counts; option A shortcuts) trained with the
paper's CIFAR recipe shrunk to the UCI digits scikit-learn bundles (1,437 training and 360 test images, 8x8
grayscale): batch 128, SGD momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 at 1/2 and 3/4 of
{results[f"resnet{hi}"]["iterations"]} iterations, 1-pixel shift augmentation, the warm-up at lr 0.01 until
the training error is below 80%. Recipe: `configs/demo/{RECIPE.split("/")[1]}.yaml`.

![training curves](curves.png)

Dashed: training error (running, with augmentation); bold: test error. Left: plain nets; right: ResNets.

| net | parameters | final training error % | test error % | seconds |
|---|---|---|---|---|
{chr(10).join(rows)}

Final training error: the mean of the training records over the last 5% of the run (at least five records),
the number the console printed.

{render(verdicts)}

Run config (every run; `model.name` varies; keys that do not apply to digits are left out):
{chr(10).join(f"- `{k}`: {v}" for k, v in config.items())}

This is a miniature on a small dataset, not a reproduction of Fig. 6 (see `resnet reproduce cifar-fig6`).
Wall time for all runs: {wall:.0f} s.
"""
    report = out / "REPORT.md"
    atomic_write_text(report, text)
    return report
