"""Reports of the CIFAR-10 experiments (section 4.2): Table 6, Fig. 6 and Fig. 7, from run directories alone.

:mod:`resnet.experiments.cifar` trains the runs; the functions here only read them (``--report-only``). Model
selection never looks at the test set: the headline is the final-iteration test error (as the paper
reports), and the test error at the iteration with the lowest *validation* error is shown beside it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from resnet.analysis.plots import plot_error_curves, plot_responses, pyplot, save
from resnet.analysis.report import RunRecord, markdown_table, mean_std, metadata, scope_caveat, write_csv
from resnet.analysis.response_std import response_stds
from resnet.checkpoint import load_checkpoint
from resnet.data.datasets import load_dataset
from resnet.errors import UserError
from resnet.io import atomic_write_text
from resnet.paper import CIFAR_ITERATIONS, CIFAR_TRAIN_IMAGES, TABLE6, TABLE6_RESNET110_MEAN_STD


def _header(title: str, runs: list[RunRecord]) -> str:
    caveat = scope_caveat(runs, CIFAR_ITERATIONS, CIFAR_TRAIN_IMAGES)
    return f"# {title}\n\n" + (caveat + "\n\n" if caveat else "")


def _model(run: RunRecord) -> str:
    return run.name.rsplit("-s", 1)[0]


def _depth(model: str) -> int:
    return int("".join(c for c in model if c.isdigit()))


def table6_report(runs: list[RunRecord], out: Path) -> Path:
    """Table 6 (best and mean±std over seeds) with a plot of error by depth; returns REPORT.md's path."""
    by_model: dict[str, list[RunRecord]] = {}
    for r in runs:
        by_model.setdefault(_model(r), []).append(r)
    headers = [
        "model",
        "params (paper)",
        "paper error %",
        "ours: final test error %",
        "difference",
        "ours: test error at best val %",
        "runs",
        "status",
    ]
    rows, points = [], []
    for model, rs in by_model.items():
        depth = _depth(model)
        paper_params, paper_err = TABLE6[depth]
        done = [r for r in rs if r.done and r.summary.get("test_error") is not None]  # never interim errors
        finals = [r.summary["test_error"] for r in done]
        selected = [r.summary["test_error_at_best_val"] for r in done if r.summary.get("test_error_at_best_val")]
        status = ", ".join(sorted({r.label() for r in rs if r.label()})) or "finished"
        if not finals:
            rows.append([model, f"{paper_params}M", paper_err, None, None, None, 0, status])
            continue
        if len(finals) > 1:
            m, s = mean_std(finals)
            ours = f"{min(finals):.2f} (best); {m:.2f}±{s:.2f} (mean±std)"
            diff = min(finals) - paper_err
        else:
            ours, diff = f"{finals[0]:.2f}", finals[0] - paper_err
        sel = f"{mean_std(selected)[0]:.2f}" if selected else None
        rows.append([model, f"{paper_params}M", paper_err, ours, f"{diff:+.2f}", sel, len(done), status])
        points.append((depth, min(finals), paper_err))
    write_csv(out / "table6.csv", headers, rows)
    _plot_table6(points, out / "table6.png")
    paper110 = "{:.2f}±{:.2f}".format(*TABLE6_RESNET110_MEAN_STD)
    text = (
        _header("Table 6: CIFAR-10 test error of ResNets", runs)
        + f"""The paper's recipe (section 4.2):
batch 128, lr 0.1 divided by 10 at 32k and 48k iterations, 64k iterations, weight decay 1e-4, momentum
0.9, per-pixel mean subtraction, pad-4 random crop and flip, option A shortcuts, trained on 45k images with
5k held out for validation. ResNet-110 warms up at lr 0.01 until the training error is below 80%. With
several seeds (`--seeds K`) we give the best and mean±std, as the paper does for ResNet-110 ({paper110}).

![test error by depth](table6.png)

{markdown_table(headers, rows)}

"final test error" is the error after the last iteration; "at best val" is the test error at the
evaluation with the lowest validation error (selection never looks at the test set).

## Runs
{metadata(runs)}
"""
    )
    report = out / "REPORT.md"
    atomic_write_text(report, text)
    return report


def _plot_table6(points: list[tuple[int, float, float]], path: Path) -> None:
    fig, ax = pyplot().subplots(figsize=(5.5, 3.8))
    if points:
        depths = [p[0] for p in points]
        ax.plot(depths, [p[2] for p in points], "o--", label="paper (Table 6)")
        ax.plot(depths, [p[1] for p in points], "s-", label="ours (best run)")
        ax.set_xscale("log")
        ax.set_xticks(depths, [str(d) for d in depths])
    ax.set_xlabel("depth")
    ax.set_ylabel("test error (%)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    save(fig, path)


def fig6_report(runs: list[RunRecord], out: Path) -> Path:
    """Fig. 6 curves (plain vs ResNet) and the degradation comparison; returns REPORT.md's path."""
    panels: dict[str, dict[str, list]] = {"plain": {}, "ResNet": {}}
    for r in runs:
        kind = "plain" if r.name.startswith("plain") else "ResNet"
        if r.records:
            panels[kind][f"{kind}-{_depth(_model(r))}"] = r.records
    target = max((r.target or 0 for r in runs), default=CIFAR_ITERATIONS)
    long = target >= 10_000
    title = "CIFAR-10: plain (left) vs ResNet (right); dashed: training error, bold: test error"
    plot_error_curves(
        panels,
        out / "fig6.png",
        ylim=(0, 30),
        xscale=1e4 if long else 1.0,
        xlabel="iter. (1e4)" if long else "iteration",
        title=title,
    )
    headers = ["net", "final training error %", "final test error %", "paper test error % (Table 6)", "status"]
    rows = []
    for r in runs:
        m = _model(r)
        paper = TABLE6[_depth(m)][1] if m.startswith("resnet") and _depth(m) in TABLE6 else None
        rows.append([m, r.summary.get("train_error"), r.summary.get("test_error"), paper, r.label() or "finished"])
    write_csv(out / "fig6.csv", headers, rows)
    verdict = _degradation_verdict(runs)
    text = (
        _header("Fig. 6: training on CIFAR-10, plain nets vs ResNets", runs)
        + f"""The paper's
observations: plain nets get *worse* as they get deeper (plain-56 has higher training error than plain-20;
the degradation problem), while ResNets get better with depth. Plain nets have no Table 6 entry (the paper
shows them only as curves).

![Fig. 6](fig6.png)

{markdown_table(headers, rows)}

{verdict}

## Runs
{metadata(runs)}
"""
    )
    report = out / "REPORT.md"
    atomic_write_text(report, text)
    return report


def _degradation_verdict(runs: list[RunRecord]) -> str:
    err = {_model(r): r.summary.get("train_error") for r in runs if r.summary.get("train_error") is not None}
    lines = []
    for kind, claim in (("plain", "deeper plain nets train worse"), ("resnet", "deeper ResNets do not")):
        depths = sorted(_depth(m) for m in err if m.startswith(kind))
        if len(depths) >= 2:
            lo, hi = depths[0], depths[-1]
            delta = err[f"{kind}{hi}"] - err[f"{kind}{lo}"]
            lines.append(f"- {kind}-{hi} vs {kind}-{lo}: final training error {delta:+.2f} points (paper: {claim}).")
    return "\n".join(lines) or "Not enough finished runs for a comparison yet."


def fig7_report(runs: list[RunRecord], out: Path, data_dir: str | None = None) -> Path:
    """Fig. 7: std of every 3x3 layer's response on the test set, from the runs' final checkpoints."""
    stds: dict[str, list[float]] = {}
    for r in runs:
        if not r.done:
            continue
        where = str(r.root / "checkpoint.pt")
        ckpt = load_checkpoint(where)
        cfg = ckpt.recipe(where)
        if cfg is None:
            raise UserError(f"{where}: no recipe stored; Fig. 7 needs the runs' own checkpoints")
        if data_dir:
            cfg.data.data_dir = data_dir
        test_x = torch.from_numpy(load_dataset(cfg.data).test_x)
        layer_std = response_stds(ckpt.build_model(where), test_x, ckpt.normalizer())
        label = ("plain-" if r.name.startswith("plain") else "ResNet-") + str(_depth(_model(r)))
        stds[label] = list(layer_std.values())
    plot_responses(stds, out / "fig7.png", title="Std of layer responses (3x3 conv + BN), CIFAR-10 test set")
    width = max((len(v) for v in stds.values()), default=0)
    write_csv(
        out / "fig7.csv",
        ["layer", *stds],
        [[i + 1, *(v[i] if i < len(v) else None for v in stds.values())] for i in range(width)],
    )
    headers = ["net", "layers", "mean std", "median std", "status"]
    rows = []
    for r in runs:
        label = ("plain-" if r.name.startswith("plain") else "ResNet-") + str(_depth(_model(r)))
        v = stds.get(label)
        rows.append(
            [
                label,
                len(v) if v else None,
                sum(v) / len(v) if v else None,
                sorted(v)[len(v) // 2] if v else None,
                r.label() or "finished",
            ]
        )
    text = (
        _header("Fig. 7: standard deviations of layer responses", runs)
        + f"""Response = the output of
each 3x3 layer after BN, before the ReLU and the addition (section 4.2), measured with forward hooks on the
trained nets; std over all elements on the test set. The paper: "ResNets have generally smaller responses
than their plain counterparts ... deeper ResNet has smaller magnitudes of responses".

![Fig. 7](fig7.png)

{markdown_table(headers, rows)}

{_responses_verdict(stds)}

## Runs
{metadata(runs)}
"""
    )
    report = out / "REPORT.md"
    atomic_write_text(report, text)
    return report


def _responses_verdict(stds: dict[str, list[float]]) -> str:
    mean = {k: sum(v) / len(v) for k, v in stds.items() if v}
    lines = []
    for d in (20, 56):
        p, r = mean.get(f"plain-{d}"), mean.get(f"ResNet-{d}")
        if p and r:
            lines.append(f"- ResNet-{d} / plain-{d} mean response std: {r / p:.2f} (the paper: below 1).")
    res = [(int(k.split("-")[1]), v) for k, v in mean.items() if k.startswith("ResNet")]
    if len(res) >= 2:
        res.sort()
        seq = ", ".join(f"ResNet-{d}: {v:.3f}" for d, v in res)
        lines.append(f"- mean std by depth: {seq} (the paper: smaller for deeper ResNets).")
    return "\n".join(lines) or "No finished runs yet."
