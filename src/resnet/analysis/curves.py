"""``resnet plot``: the training curves of any run directories, in the style of the paper's Figs. 4 and 6.

"Dashed lines denote training error, and bold lines denote testing error" (Fig. 6 caption), one colour per
run; the runs side by side (one panel each, shared error axis) or overlaid in one panel. Everything is
read from the run directories (``metrics.jsonl``, ``config.yaml``), so a run can be plotted while it trains.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet.analysis.plots import pyplot, save
from resnet.errors import UserError
from resnet.rundir_format import RunDir, read_metrics, read_run_config


@dataclass
class Curves:
    """The error curves of one run: (iterations, errors in %) per split."""

    label: str
    root: Path
    model: str
    train: tuple[list[int], list[float]]
    evals: dict[str, tuple[list[int], list[float]]]  # "val" / "test"

    def last(self, split: str) -> float | None:
        ys = self.evals.get(split, ([], []))[1]
        return ys[-1] if ys else None


def _series(records: list[dict[str, Any]], split: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in records:
        err, it = r.get("error"), r.get("iteration")
        if r.get("split") == split and isinstance(err, int | float) and isinstance(it, int) and math.isfinite(err):
            xs.append(it)
            ys.append(float(err))
    return xs, ys


def read_curves(root: str | Path, label: str | None = None) -> Curves:
    """A run directory's curves; a folder that is not one, or holds no errors yet, is a one-line error."""
    root = Path(root)
    metrics = RunDir(root).metrics
    if not metrics.exists():
        what = "does not exist" if not root.exists() else "has no metrics.jsonl"
        raise UserError(f"{root} {what}: pass run directories written by `resnet train`")
    records = [r for r in read_metrics(metrics) if isinstance(r, dict)]
    model = "?"
    try:
        config = read_run_config(root)
        model = str(config["model"]["name"])
    except (OSError, UserError, KeyError, TypeError):
        pass
    curves = Curves(label or root.name, root, model, _series(records, "train"),
                    {s: _series(records, s) for s in ("val", "test")})  # fmt: skip
    if not curves.train[0] and not any(xs for xs, _ in curves.evals.values()):
        raise UserError(f"{metrics} holds no error records yet (a run logs every train.log_every iterations)")
    return curves


def _labels(roots: Sequence[Path]) -> list[str]:
    """Folder names, or longer paths where two runs share a name (runs/a/resnet20 and runs/b/resnet20)."""
    names = [r.name or str(r) for r in roots]
    if len(set(names)) == len(names):
        return names
    return [str(r) for r in roots]


def _axis_scale(last_iteration: int) -> tuple[float, str]:
    """The paper's axis ("iter. (1e4)") for long runs, plain iterations for short ones."""
    if last_iteration >= 20_000:
        return 1e4, "iter. (1e4)"
    return 1.0, "iterations"


def _default_ylim(runs: Sequence[Curves], split: str) -> tuple[float, float]:
    """0 to 2.5x the highest final error (at least 20%, at most 100% and a margin), rounded up to 10%.

    The paper's figures show where the runs end up and how they differ (Fig. 6 spans 0-20%), cutting the
    first iterations' near-chance errors off the top; a short run that is still near chance gets 0-100%.
    """
    finals = [ys[-1] for c in runs for _, ys in (c.train, c.evals.get(split, ([], []))) if ys]
    top = max(20.0, 2.5 * max(finals, default=40.0))
    top = 10.0 * math.ceil(top / 10.0)
    return 0.0, top if top < 100 else 102.0  # 0-100%: a point at 100% drawn inside the frame, not on it


def plot_runs(
    roots: Sequence[str | Path],
    out: str | Path,
    *,
    overlay: bool = False,
    split: str | None = None,
    ylim: tuple[float, float] | None = None,
    title: str | None = None,
) -> Path:
    """Draw the runs' training (dashed) and ``split`` (bold) error curves into the PNG ``out``.

    ``split`` defaults to ``test`` when every run has test errors, else ``val`` (image-folder runs).
    """
    paths = [Path(r) for r in roots]
    runs = [read_curves(p, label) for p, label in zip(paths, _labels(paths), strict=True)]
    split = split or ("test" if all(c.evals["test"][0] for c in runs) else "val")
    if split not in ("val", "test"):
        raise UserError(f"unknown split {split!r}; choose val or test")
    scale, xlabel = _axis_scale(max(max(c.train[0] + c.evals[split][0], default=0) for c in runs))
    plt = pyplot()
    panels = 1 if overlay else len(runs)
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels + (1.2 if overlay else 0), 4.2), squeeze=False,
                             sharey=True)  # fmt: skip
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, c in enumerate(runs):
        ax, color = axes[0][0 if overlay else i], palette[i % len(palette)]
        final = c.last(split)
        name = f"{c.label} ({c.model})" if c.model not in c.label else c.label
        label = f"{name}: {split} {final:.2f}%" if final is not None else name
        xs, ys = c.train
        ax.plot([x / scale for x in xs], ys, "--", color=color, linewidth=1.0, alpha=0.9, marker="." if
                len(xs) == 1 else None)  # fmt: skip
        xs, ys = c.evals[split]
        ax.plot([x / scale for x in xs], ys, "-", color=color, linewidth=2.2, label=label,
                marker="o" if len(xs) <= 3 else None, markersize=4)  # fmt: skip
        if not overlay:
            ax.set_title(name, fontsize=10)
    from matplotlib.ticker import MaxNLocator

    for ax in axes[0]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=scale == 1.0, steps=[1, 2, 5, 10]))
        ax.set_xlabel(xlabel)
        ax.set_ylim(*(ylim or _default_ylim(runs, split)))
        ax.set_xlim(left=0)
        ax.grid(True, alpha=0.3)
        ax.legend(title=f"dashed: training, bold: {split}", fontsize=8, title_fontsize=8)
    axes[0][0].set_ylabel("error (%)")
    if title:
        fig.suptitle(title)
    return save(fig, out)
