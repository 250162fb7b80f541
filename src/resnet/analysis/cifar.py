"""Reports of the CIFAR-10 experiments (section 4.2): Table 6, Fig. 6 and Fig. 7, from run directories alone.

:mod:`resnet.experiments.cifar` trains the runs; the functions here only read them (``--report-only``). Model
selection never looks at the test set: the headline is the final-iteration test error (as the paper
reports), and the test error at the iteration with the lowest *validation* error is shown beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from resnet.analysis.claims import STILL_NEAR_CHANCE, Verdict, compare, final_error, ratio_verdict, render
from resnet.analysis.plots import plot_error_curves, plot_responses, pyplot, save
from resnet.analysis.report import (
    RunRecord,
    has_validation,
    markdown_table,
    mean_std,
    metadata,
    scope_caveat,
    scope_note,
    training_set_note,
    write_csv,
)
from resnet.analysis.response_std import response_stds
from resnet.checkpoint import load_checkpoint
from resnet.data.datasets import load_dataset
from resnet.errors import UserError
from resnet.io import atomic_write_text
from resnet.paper import CIFAR_ITERATIONS, CIFAR_TRAIN_IMAGES, TABLE6, TABLE6_RESNET110_MEAN_STD


def _header(title: str, runs: list[RunRecord]) -> str:
    caveat = scope_caveat(runs, CIFAR_ITERATIONS, CIFAR_TRAIN_IMAGES)
    return f"# {title}\n\n" + (caveat + "\n\n" if caveat else "") + training_set_note(runs)


def _note(runs: list[RunRecord]) -> str | None:
    return scope_note(runs, CIFAR_ITERATIONS, CIFAR_TRAIN_IMAGES)


def _model(run: RunRecord) -> str:
    return run.name.rsplit("-s", 1)[0]


def _depth(model: str) -> int:
    return int("".join(c for c in model if c.isdigit()))


def table6_report(runs: list[RunRecord], out: Path) -> Path:
    """Table 6 (best and mean±std over seeds) with a plot of error by depth; returns REPORT.md's path."""
    by_model: dict[str, list[RunRecord]] = {}
    for r in runs:
        by_model.setdefault(_model(r), []).append(r)
    with_val = has_validation(runs)  # no validation split: no "best validation" column, rather than a fake one
    headers = ["model", "params (paper)", "paper error %", "ours: final test error %", "difference"]
    headers += ["ours: test error at best val %"] * with_val + ["runs", "status"]
    rows, points, finals_by_model = [], [], {}
    for model, rs in by_model.items():
        depth = _depth(model)
        paper_params, paper_err = TABLE6[depth]
        done = [r for r in rs if r.done and r.summary.get("test_error") is not None]  # never interim errors
        finals = [r.summary["test_error"] for r in done]
        selected = [r.summary["test_error_at_best_val"] for r in done if r.summary.get("test_error_at_best_val")]
        status = _seed_status(rs)
        if not finals:
            rows.append([model, f"{paper_params}M", paper_err, None, None, *[None] * with_val, _of(0, rs), status])
            continue
        finals_by_model[model] = finals
        if len(finals) > 1:
            m, s = mean_std(finals)
            ours = f"{min(finals):.2f} (best); {m:.2f}±{s:.2f} (mean±std)"
            diff = min(finals) - paper_err
        else:
            ours, diff = f"{finals[0]:.2f}", finals[0] - paper_err
        sel = f"{mean_std(selected)[0]:.2f}" if selected else None
        runs_col = _of(len(done), rs)
        rows.append([model, f"{paper_params}M", paper_err, ours, f"{diff:+.2f}", *[sel] * with_val, runs_col, status])
        points.append((depth, min(finals), paper_err))
    write_csv(out / "table6.csv", headers, rows)
    verdicts = _depth_verdicts(by_model, finals_by_model)
    save(table6_figure(points, _note(runs)), out / "table6.png")
    paper110 = "{:.2f}±{:.2f}".format(*TABLE6_RESNET110_MEAN_STD)
    text = (
        _header("Table 6: CIFAR-10 test error of ResNets", runs)
        + f"""The paper's recipe (section 4.2):
batch 128, lr 0.1 divided by 10 at 32k and 48k iterations, 64k iterations, weight decay 1e-4, momentum
0.9, per-pixel mean subtraction, pad-4 random crop and flip, option A shortcuts, trained on all 50k training
images. ResNet-110 warms up at lr 0.01 until the training error is below 80%. With several seeds
(`--seeds K`) we give the best and mean±std, as the paper does for ResNet-110 ({paper110}).

![test error by depth](table6.png)

{markdown_table(headers, rows)}

"final test error" is the error after the last iteration of a finished run (incomplete runs are left out of
the numbers){VAL_NOTE if with_val else ""}.

{render(verdicts)}

## Runs
{metadata(runs)}
"""
    )
    report = out / "REPORT.md"
    atomic_write_text(report, text)
    return report


VAL_NOTE = (
    '; "at best val" is the test error at the evaluation with the lowest validation error (selection never '
    "looks at the test set)"
)


QUANTITY = "final test error (mean over seeds)"


def _depth_verdicts(by_model: dict[str, list[RunRecord]], finals: dict[str, list[float]]) -> list[Verdict]:
    """Table 6's claims: deeper ResNets do better up to 110 layers; ResNet-1202 is worse (overfitting)."""
    # the mean over seeds, and its standard error where there are several
    errors = {
        m: (mean_std(v)[0], mean_std(v)[1] / len(v) ** 0.5 if len(v) > 1 else float("nan")) for m, v in finals.items()
    }
    unfinished = {
        m for m, rs in by_model.items() if not any(r.done for r in rs) and any(r.status == "partial" for r in rs)
    }
    models = sorted(by_model, key=_depth)
    upto110 = [m for m in models if _depth(m) <= 110]
    verdicts = []
    if len(upto110) >= 2:
        lo, hi = upto110[0], upto110[-1]
        claim = f"{hi} has lower test error than {lo} (Table 6: deeper is better up to 110 layers)"
        verdicts.append(
            compare(
                claim,
                hi,
                lo,
                errors,
                expect="lower",
                floor=0.5,
                quantity=QUANTITY,
                unfinished=sorted({lo, hi} & unfinished),
            )
        )
    if "resnet1202" in by_model and "resnet110" in by_model:
        claim = "resnet1202 has higher test error than resnet110 (section 4.2: overfitting)"
        pair = {"resnet1202", "resnet110"}
        verdicts.append(
            compare(
                claim,
                "resnet1202",
                "resnet110",
                errors,
                expect="higher",
                floor=0.5,
                quantity=QUANTITY,
                unfinished=sorted(pair & unfinished),
            )
        )
    return verdicts


def _of(n: int, rs: list[RunRecord]) -> str:
    """The "runs" column: "1", or "1 of 2" when more seeds were planned than finished."""
    return f"{n} of {len(rs)}" if 0 < n < len(rs) else str(n)


def _seed_status(rs: list[RunRecord]) -> str:
    """ "finished", or what each seed that is not finished is: "s1 not run", "s0 incomplete (5/20 it.)". A net
    with one of two seeds finished is never called "not run" beside the number its finished seed gives."""
    if all(r.done for r in rs):
        return "finished"
    labels = {r.label() for r in rs}
    if len(labels) == 1:  # every seed alike: "not run"
        return labels.pop()
    parts = [f"s{r.name.rsplit('-s', 1)[1]} {r.label()}" if len(rs) > 1 else r.label() for r in rs if not r.done]
    done = sum(r.done for r in rs)
    return (f"{done} of {len(rs)} finished; " if done else "") + "; ".join(parts)


def table6_figure(points: list[tuple[int, float, float]], note: str | None = None) -> Any:
    """Our best test error and the paper's by depth (nets with a finished run only), log depth axis."""
    from matplotlib.ticker import NullLocator

    fig, ax = pyplot().subplots(figsize=(5.5, 3.8 + 0.3 * bool(note)))
    if points:
        depths = [p[0] for p in points]
        ax.plot(depths, [p[2] for p in points], "o--", label="paper (Table 6)")
        ax.plot(depths, [p[1] for p in points], "s-", label="ours (best run)")
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())  # the log axis' own minor labels (2x10^1, ...) overlap ours
        ax.set_xticks(depths, [str(d) for d in depths], fontsize=8)
        ax.set_xlim(min(depths) / 1.25, max(depths) * 1.25)  # the end points inside the frame
        values = [p[1] for p in points] + [p[2] for p in points]
        pad = max(0.05 * (max(values) - min(values)), 0.5)
        ax.set_ylim(min(values) - pad, max(values) + pad)
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no finished runs yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("depth")
    ax.set_ylabel("test error (%)")
    ax.grid(True, alpha=0.3)
    if note:
        fig.text(0.5, 0.01, note, ha="center", va="bottom", fontsize=8, style="italic")
        fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def fig6_report(runs: list[RunRecord], out: Path) -> Path:
    """Fig. 6 curves (plain vs ResNet) and the degradation comparison; returns REPORT.md's path."""
    panels: dict[str, dict[str, list]] = {"plain": {}, "ResNet": {}}
    for r in runs:
        kind = "plain" if r.name.startswith("plain") else "ResNet"
        if r.records:
            suffix = "" if r.done else " (incomplete)"
            panels[kind][f"{kind}-{_depth(_model(r))}{suffix}"] = r.records
    target = max((r.target or 0 for r in runs), default=CIFAR_ITERATIONS)
    long = target >= 10_000
    title = "CIFAR-10: plain (left) vs ResNet (right); dashed: training error, bold: test error"
    plot_error_curves(
        panels,
        out / "fig6.png",
        xscale=1e4 if long else 1.0,
        xlabel="iter. (1e4)" if long else "iteration",
        title=title,
        note=_note(runs),
    )
    headers = ["net", "final training error %", "final test error %", "paper test error % (Table 6)", "status"]
    rows, errors = [], {}
    for r in runs:
        m = _model(r)
        paper = TABLE6[_depth(m)][1] if m.startswith("resnet") and _depth(m) in TABLE6 else None
        if r.done:  # an incomplete run has no final error: its interim numbers are never shown as final
            errors[m] = final_error(r.records)
        train = round(errors[m][0], 2) if m in errors else None
        test = r.summary.get("test_error") if r.done else None
        rows.append([m, train, test, paper, r.label() or "finished"])
    write_csv(out / "fig6.csv", headers, rows)
    text = (
        _header("Fig. 6: training on CIFAR-10, plain nets vs ResNets", runs)
        + f"""The paper's
observations: plain nets get *worse* as they get deeper (plain-56 has higher training error than plain-20;
the degradation problem), while ResNets get better with depth. Plain nets have no Table 6 entry (the paper
shows them only as curves).

![Fig. 6](fig6.png)

{markdown_table(headers, rows)}

"final training error" is the mean of the training records over the last 5% of a finished run (at least
five records; one record is one logging window of mini-batches, too noisy alone); incomplete runs have none.

{render(_degradation_verdicts(runs, errors))}

## Runs
{metadata(runs)}
"""
    )
    report = out / "REPORT.md"
    atomic_write_text(report, text)
    return report


def _degradation_verdicts(runs: list[RunRecord], errors: dict[str, tuple[float, float]]) -> list[Verdict]:
    """Fig. 6's two claims, on the deepest and the shallowest net of each kind the experiment planned."""
    planned = {_model(r) for r in runs}
    unfinished = {_model(r) for r in runs if r.status == "partial"}
    verdicts = []
    for kind, expect, claim in (
        ("plain", "higher", "the deeper plain net has higher training error (the degradation problem, section 4.2)"),
        ("resnet", "lower", "the deeper ResNet has lower training error (Fig. 6 right: ResNets gain from depth)"),
    ):
        models = sorted((m for m in planned if m.startswith(kind)), key=_depth)
        if len(models) < 2:
            continue
        lo, hi = models[0], models[-1]
        verdicts.append(
            compare(claim, hi, lo, errors, expect=expect, floor=1.0, unfinished=sorted({lo, hi} & unfinished))
        )
    return verdicts


def fig7_report(runs: list[RunRecord], out: Path, data_dir: str | None = None) -> Path:
    """Fig. 7: std of every 3x3 layer's response on the test set, from the runs' final checkpoints."""
    stds: dict[str, list[float]] = {}
    test_errors: dict[str, float | None] = {}
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
        test_errors[label] = r.summary.get("test_error")
    title = "Std of layer responses (3x3 conv + BN), CIFAR-10 test set"
    plot_responses(stds, out / "fig7.png", title=title, note=_note(runs))
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

{render(_responses_verdicts(stds, [str(row[0]) for row in rows], test_errors))}

## Runs
{metadata(runs)}
"""
    )
    report = out / "REPORT.md"
    atomic_write_text(report, text)
    return report


def _responses_verdicts(
    stds: dict[str, list[float]], labels: list[str], test_errors: dict[str, float | None]
) -> list[Verdict]:
    """Fig. 7's two claims on the mean response std: ResNet below its plain twin; deeper ResNet below shallower."""
    tol = 0.05
    mean = {k: sum(v) / len(v) for k, v in stds.items() if v}
    criterion = (
        f"shown when the ratio of mean response stds is below {1 - tol:g}, contradicted when above {1 + tol:g}, "
        "inconclusive in between, when a run is missing or incomplete, or when a net's test error is still above "
        f"{STILL_NEAR_CHANCE:g}% (an untrained net's responses say nothing about residual functions, and its BN "
        "running statistics are still far from the data's)"
    )

    def verdict(claim: str, a: str, b: str) -> Verdict:
        if a not in mean or b not in mean:
            gone = ", ".join(n for n in (a, b) if n not in mean)
            return Verdict(claim, "inconclusive", f"{gone}: no finished run", criterion)
        ratio = mean[a] / mean[b]
        untrained = [f"{n} {test_errors[n]:.1f}%" for n in (a, b) if (test_errors.get(n) or 100.0) > STILL_NEAR_CHANCE]
        if untrained:
            evidence = f"{a} / {b} = {ratio:.2f}, but test error {', '.join(untrained)}: too short to tell"
            return Verdict(claim, "inconclusive", evidence, criterion)
        return ratio_verdict(claim, f"{a} / {b} = {mean[a]:.3f} / {mean[b]:.3f} = {ratio:.2f}", ratio, tol, criterion)

    verdicts = []
    for d in (20, 56):
        if f"plain-{d}" in labels and f"ResNet-{d}" in labels:
            claim = f"ResNet-{d} has smaller responses than plain-{d} (section 4.2)"
            verdicts.append(verdict(claim, f"ResNet-{d}", f"plain-{d}"))
    res = sorted(int(k.split("-")[1]) for k in labels if k.startswith("ResNet"))
    if len(res) >= 2:
        lo, hi = f"ResNet-{res[0]}", f"ResNet-{res[-1]}"
        verdicts.append(verdict(f"the deeper {hi} has smaller responses than {lo} (section 4.2)", hi, lo))
    return verdicts
