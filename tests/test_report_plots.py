"""The reports' figures, checked on the matplotlib objects the plotting functions return: every point inside
the frame, whole-number ticks for whole quantities, at 1, 2 and many points; and what reports say they read."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnet.analysis.cifar import table6_figure
from resnet.analysis.plots import error_curves_figure, pyplot, responses_figure
from resnet.analysis.report import RunRecord, metadata, scope_caveat, scope_note


def records(n: int, *, top: float = 100.0, every: int = 1) -> list[dict]:
    """n training and n evaluation records at iterations every, 2*every, ...; the first at ``top`` % error."""
    out = []
    for k in range(1, n + 1):
        err = top - (top - 10.0) * (k - 1) / max(n - 1, 1)
        out += [{"iteration": k * every, "split": "train", "error": err},
                {"iteration": k * every, "split": "val", "error": min(100.0, err + 2)}]  # fmt: skip
    return out


def points_inside(fig) -> None:
    """Every plotted point lies strictly inside its axes' limits (none sits on or beyond the frame)."""
    for ax in fig.axes:
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        for line in ax.get_lines():
            for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True):
                assert x0 < x < x1 and y0 < y < y1, (ax.get_title(), x, y, (x0, x1), (y0, y1))


def whole_ticks(ax) -> list[float]:
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    return ticks


@pytest.mark.parametrize("n", [1, 2, 300])
def test_error_curves_keep_every_point_inside_with_whole_iteration_ticks(n: int):
    panels = {"plain": {"plain34": records(n, every=2)}, "ResNet": {"resnet34": records(n, top=60.0, every=2)}}
    fig = error_curves_figure(panels, eval_split="val")
    try:
        points_inside(fig)  # the 100% training point of a 1-iteration run included
        for ax in fig.axes:
            ticks = whole_ticks(ax)
            assert len(ticks) >= 2  # a single point at iteration 2 still gets an axis of iterations (0, 1, 2 ...)
            assert ax.get_legend().get_title().get_text() == "bold: val, dashed: train"
    finally:
        pyplot().close(fig)


def test_empty_panels_are_left_out_and_the_note_is_printed():
    fig = error_curves_figure({"plain": {}, "ResNet": {"resnet50": records(1)}}, note="Not a reproduction: 1 of 600")
    try:
        assert [ax.get_title() for ax in fig.axes] == ["ResNet"]  # no empty plain panel with a 0-1 axis
        assert [t.get_text() for t in fig.texts] == ["Not a reproduction: 1 of 600"]
    finally:
        pyplot().close(fig)
    fig = error_curves_figure({"plain": {}, "ResNet": {}})
    try:
        assert len(fig.axes) == 1 and not fig.axes[0].get_xticks().size and not fig.axes[0].get_yticks().size
        assert [t.get_text() for t in fig.axes[0].texts] == ["no runs with error records yet"]
    finally:
        pyplot().close(fig)


def test_paper_scale_axes_still_keep_points_inside():
    fig = error_curves_figure({"ResNet": {"resnet20": records(64, every=1000)}}, xscale=1e4)
    try:
        points_inside(fig)
    finally:
        pyplot().close(fig)


@pytest.mark.parametrize("layers", [1, 2, 9, 54])
def test_fig7_layer_index_ticks_are_whole_numbers(layers: int):
    stds = {"plain-20": [1.0 + 0.1 * i for i in range(layers)], "ResNet-20": [0.5 + 0.01 * i for i in range(layers)]}
    fig = responses_figure(stds, note="Not a reproduction: 20 of 64,000 iterations")
    try:
        for ax in fig.axes:
            whole_ticks(ax)
        points_inside(fig)
        assert "Not a reproduction" in fig.texts[0].get_text()
    finally:
        pyplot().close(fig)


@pytest.mark.parametrize("points", [[(20, 89.0, 8.75)], [(20, 89.0, 8.75), (56, 90.0, 6.97)]])
def test_table6_plot_keeps_points_inside_and_says_when_runs_were_short(points):
    fig = table6_figure(points, note="Not a reproduction: 20 of 64,000 iterations")
    try:
        points_inside(fig)
        assert fig.texts[0].get_text().startswith("Not a reproduction")
    finally:
        pyplot().close(fig)


def run(name: str, status: str, *, target: int = 20, train: int = 80, val: int = 30, dataset: str = "x") -> RunRecord:
    data = {"dataset": dataset, "train": train, "val": val, "test": 0}
    return RunRecord(name, Path(name), status, target=target, summary={"data": data} if status != "missing" else {})


def test_reports_count_what_they_read_and_name_the_training_images():
    runs = [run("a", "finished"), run("b", "partial"), run("c", "missing"), run("d", "missing")]
    assert "from 2 run directories (2 more planned, not run)" in metadata(runs)
    assert "from 1 run directory\n" in metadata([run("a", "finished")]) + "\n"
    folder = [run("a", "finished", dataset="imagefolder")]  # an image folder's val is its test set
    text = scope_caveat(folder, 600_000, 1_281_167)
    assert "shortened to 20 iterations" in text and "a subset: 80 training images (the paper" in text
    held_out = [run("a", "finished", train=4577, val=508, dataset="cifar10", target=1)]
    text = scope_caveat(held_out, 64_000, 50_000)
    assert "shortened to 1 iteration " in text and "4,577 training images (+508 held out for validation)" in text
    assert scope_note(held_out, 64_000, 50_000).startswith("Not a reproduction: 1 of 64,000 iterations, 4,577")
