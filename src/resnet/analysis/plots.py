"""Training curves in the style of the paper's Figs. 1, 4 and 6, drawn from metrics records only.

Fig. 6: one panel for the plain nets, one for the ResNets; "dashed lines denote training error, and bold
lines denote testing error", one colour per depth. matplotlib runs headless (Agg).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from resnet.io import check_output, printable, write_output

Records = Sequence[Mapping[str, Any]]


def pyplot():
    """matplotlib's pyplot on the headless Agg backend (reports are made on servers and in CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, out: str | Path) -> Path:
    """Write a figure under the output rule (:func:`resnet.io.write_output`) and free it (a figure with a
    note under it keeps its layout)."""
    out = Path(out)
    check_output(out)  # before the drawing work
    try:
        for text in fig.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "set_text")):
            value = text.get_text()
            if isinstance(value, str) and value != printable(value):  # a non-UTF-8 run name or title
                text.set_text(printable(value))
        if not fig.texts:
            fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format=out.suffix.lstrip(".").lower() or "png", dpi=120)
    finally:
        pyplot().close(fig)
    return write_output(out, buf.getvalue())


def _series(records: Records, split: str) -> tuple[list[int], list[float]]:
    rows = [r for r in records if r.get("split") == split and "error" in r]
    return [r["iteration"] for r in rows], [r["error"] for r in rows]


def plot_error_curves(panels: Mapping[str, Mapping[str, Records]], out: str | Path, **options: Any) -> Path:
    """:func:`error_curves_figure` (the same keyword ``options``: ``eval_split``, ``title``, ``ylim``, ``xscale``,
    ``xlabel``, ``note``), written to ``out``."""
    return save(error_curves_figure(panels, **options), out)


def error_curves_figure(
    panels: Mapping[str, Mapping[str, Records]],
    *,
    eval_split: str = "test",
    title: str | None = None,
    ylim: tuple[float, float] | None = None,
    xscale: float = 1.0,
    xlabel: str = "iteration",
    note: str | None = None,
) -> Any:
    """One panel per entry of ``panels`` (e.g. {"plain": {...}, "ResNet": {...}}), each a {label: records}.

    Training error is dashed and thin, ``eval_split`` error bold. ``xscale`` divides iterations for the axis
    (1e4 gives the paper's "iter. (1e4)"). The y-range follows the data unless ``ylim`` is given (a fixed 0-30%
    leaves a 20-iteration run's curves, near 90%, off the axes) with a margin, so a point at 100% or at the
    last iteration sits inside the frame, not on it; a series with few points gets markers, so a single
    evaluation still shows. Panels without runs are left out (an empty panel would show a meaningless 0-1
    axis); ``note`` is printed under the plot (e.g. that the runs were shortened).
    """
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    shown = {k: v for k, v in panels.items() if any(_series(r, "train")[0] or _series(r, eval_split)[0]
                                                     for r in v.values())}  # fmt: skip
    shown = shown or {"no runs yet": {}}
    fig, axes = plt.subplots(1, len(shown), figsize=(5.2 * len(shown), 4.2 + 0.3 * bool(note)), squeeze=False,
                             sharey=True)  # fmt: skip
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    seen: list[float] = []
    xs_all: list[float] = []
    for ax, (panel, runs) in zip(axes[0], shown.items(), strict=True):
        for i, (label, records) in enumerate(runs.items()):
            color = palette[i % len(palette)]
            xs, ys = _series(records, "train")
            ax.plot([x / xscale for x in xs], ys, "--", color=color, linewidth=1.0, alpha=0.9,
                    marker="." if len(xs) < 30 else None)  # fmt: skip
            xs2, ys2 = _series(records, eval_split)
            ax.plot([x / xscale for x in xs2], ys2, "-", color=color, linewidth=2.2, label=label,
                    marker="o" if len(xs2) < 30 else None)  # fmt: skip
            seen += ys + ys2
            xs_all += [x / xscale for x in xs + xs2]
        ax.set_title(panel)
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
        if xscale == 1.0:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # iterations: no "2.5"
        if runs:
            ax.legend(title=f"bold: {eval_split}, dashed: train", fontsize=8, title_fontsize=8)
    if xs_all:
        for ax in axes[0]:
            ax.set_xlim(*_x_range(xs_all, whole=xscale == 1.0))
    if ylim or seen:
        axes[0][0].set_ylim(*(ylim or _data_range(seen)))  # the axes share y
    axes[0][0].set_ylabel("error (%)")
    if not seen:  # nothing to draw: say so, with no made-up 0-1 axes
        ax = axes[0][0]
        ax.set_xticks([]), ax.set_yticks([]), ax.set_xlabel(""), ax.set_ylabel(""), ax.set_title("")
        ax.text(0.5, 0.5, "no runs with error records yet", ha="center", va="center", transform=ax.transAxes)
    if title:
        fig.suptitle(title)
    if note:
        fig.text(0.5, 0.01, note, ha="center", va="bottom", fontsize=8, style="italic")
        fig.subplots_adjust(bottom=0.2)
    return fig


def _x_range(values: Sequence[float], whole: bool) -> tuple[float, float]:
    """From 0 (where training starts) to past the last point, by 4% of the span (half a step at least for
    whole iterations), so the last point is inside the frame and a single point has integers around it."""
    hi = max(values)
    pad = max(0.04 * hi, 0.5 if whole else 0.0) or 0.5
    return min(0.0, min(values)) - pad, hi + pad


def _data_range(values: Sequence[float]) -> tuple[float, float]:
    """The span of ``values`` with a 5% margin (at least half a point) on both sides: a point at 100% or 0%
    is drawn inside the frame, not cut in half by it."""
    a, b = min(values), max(values)
    pad = max(0.05 * (b - a), 0.5)
    return a - pad, b + pad


def plot_responses(
    responses: Mapping[str, Sequence[float]], out: str | Path, *, title: str | None = None, note: str | None = None
) -> Path:
    """:func:`responses_figure`, written to ``out``."""
    return save(responses_figure(responses, title=title, note=note), out)


def responses_figure(
    responses: Mapping[str, Sequence[float]], *, title: str | None = None, note: str | None = None
) -> Any:
    """Fig. 7: std of each 3x3 layer's response, in network order (top) and sorted by magnitude (bottom).

    Layer indices are whole numbers (ticks 1, 2, ... never 2.5); ``note`` is printed under the plot."""
    from matplotlib.ticker import MaxNLocator

    fig, (top, bottom) = pyplot().subplots(2, 1, figsize=(7.5, 6.5 + 0.3 * bool(note)))
    for label, stds in responses.items():
        style = "--" if label.lower().startswith("plain") else "-"
        marker = "o" if len(stds) < 30 else None
        top.plot(range(1, len(stds) + 1), stds, style, label=label, linewidth=1.4, marker=marker, markersize=3)
        bottom.plot(range(1, len(stds) + 1), sorted(stds, reverse=True), style, label=label, linewidth=1.4,
                    marker=marker, markersize=3)  # fmt: skip
    top.set_xlabel("layer index (original)")
    bottom.set_xlabel("layer index (sorted by magnitude)")
    values = [v for stds in responses.values() for v in stds if v > 0]
    log = bool(values) and max(values) / min(values) >= 10  # spans a decade or more: a linear axis hides the rest
    width = max((len(v) for v in responses.values()), default=0)
    for ax in (top, bottom):
        ax.set_ylabel("std (log scale)" if log else "std")
        if log:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        if width:
            ax.set_xlim(0.5, width + 0.5)
        if responses:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    if note:
        fig.text(0.5, 0.01, note, ha="center", va="bottom", fontsize=8, style="italic")
        fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig
