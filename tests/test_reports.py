"""Reports at any run length: verdict words with criteria, plots scaled to the data, an honest console."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest

from resnet.analysis.claims import compare, final_error, ratio_verdict
from resnet.analysis.report import applicable_config
from resnet.config import load_config
from resnet.train.console import Console


def train_records(errors: list[float]) -> list[dict]:
    return [{"iteration": i + 1, "split": "train", "error": e} for i, e in enumerate(errors)]


def test_final_error_is_the_tail_mean_with_its_standard_error():
    mean, se = final_error(train_records([90.0] * 95 + [10.0, 12.0, 14.0, 16.0, 18.0]))
    assert mean == pytest.approx(14.0) and se == pytest.approx(math.sqrt(10) / math.sqrt(5))
    assert math.isnan(final_error([])[0])


@pytest.mark.parametrize(
    ("deep", "shallow", "expect", "word"),
    [
        (30.0, 20.0, "higher", "shown"),
        (10.0, 20.0, "higher", "contradicted"),
        (20.5, 20.0, "higher", "inconclusive"),  # within the 1-point margin
        (10.0, 20.0, "lower", "shown"),
        (20.5, 20.0, "not higher", "shown"),
        (30.0, 20.0, "not higher", "contradicted"),
        (88.0, 85.0, "higher", "inconclusive"),  # both near chance: too short to tell
    ],
)
def test_compare_gives_one_of_three_words(deep: float, shallow: float, expect: str, word: str):
    errors = {"deep": (deep, 0.1), "shallow": (shallow, 0.1)}
    v = compare("claim", "deep", "shallow", errors, expect=expect, floor=1.0)
    assert v.word == word
    assert "Criterion:" in v.markdown() and v.markdown().startswith(f"- **{word}**")


def test_noise_widens_the_margin_and_incomplete_runs_are_never_compared():
    noisy = {"deep": (25.0, 3.0), "shallow": (20.0, 3.0)}  # 5 points apart, but 2 SE of the difference is 8.5
    assert compare("c", "deep", "shallow", noisy, expect="higher", floor=1.0).word == "inconclusive"
    v = compare("c", "deep", "shallow", {"shallow": (20.0, 0.0)}, expect="higher", floor=1.0, unfinished=["deep"])
    assert v.word == "inconclusive" and "deep incomplete" in v.evidence
    assert ratio_verdict("c", "e", 0.5, 0.05, "k").word == "shown"
    assert ratio_verdict("c", "e", 1.02, 0.05, "k").word == "inconclusive"


def test_error_curves_follow_the_data_and_responses_go_log_over_decades(tmp_path: Path):
    from resnet.analysis import plots

    captured = {}
    real_save = plots.save

    def keep(fig, out):
        captured[Path(out).name] = [ax for ax in fig.axes]
        captured[Path(out).name + "-lims"] = [(ax.get_ylim(), ax.get_yscale()) for ax in fig.axes]
        return real_save(fig, out)

    plots.save = keep
    try:
        recs = train_records([92.0, 90.0, 88.0]) + [{"iteration": 3, "split": "test", "error": 89.0}]
        plots.plot_error_curves({"plain": {"plain-20": recs}, "ResNet": {"ResNet-20": recs}}, tmp_path / "a.png")
        plots.plot_responses({"plain-20": [2.0, 1.0], "ResNet-20": [0.1, 0.05]}, tmp_path / "b.png")
        plots.plot_responses({"plain-20": [1.0, 0.9], "ResNet-20": [0.8, 0.7]}, tmp_path / "c.png")
    finally:
        plots.save = real_save
    assert all(ax.get_legend() is not None for ax in captured["a.png"])  # every panel names its curves
    (lo, hi), _ = captured["a.png-lims"][0]
    assert 80 < lo < 88 and 92 < hi <= 100  # a 20-iteration run near 90% is on the axes (not a fixed 0-30%)
    assert {scale for _, scale in captured["b.png-lims"]} == {"log"}  # 0.05 .. 2 spans decades
    assert {scale for _, scale in captured["c.png-lims"]} == {"linear"}


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_moves_every_iteration_on_a_terminal_and_never_elsewhere(monkeypatch, tmp_path: Path):
    monkeypatch.setattr("sys.stderr", FakeTerminal())
    console = Console(None, 100, 0, batch_size=128)
    for _ in range(7):
        console.tick()
    assert console.bar is not None and console.bar.n == 7  # before any log record
    console.bar.refresh()
    shown = console.bar.__str__()
    assert "7/100" in shown and "<" in shown and "img/s" in shown  # progress, ETA, images per second
    console.close()
    monkeypatch.setattr("sys.stderr", io.StringIO())  # a log file or a pipe: no bar, even when asked for one
    assert Console(None, 100, 0, progress=True).bar is None


def test_applicable_config_leaves_out_what_does_not_apply():
    keys = applicable_config(load_config("demo/digits").to_dict())
    assert "data.scale_min" not in keys and "data.lighting" not in keys and "data.data_dir" not in keys
    assert "schedule.plateau_patience" not in keys and "train.recompute_bn" not in keys
    assert keys["schedule.warmup_lr"] == 0.01 and keys["schedule.milestones"] == [250, 375]
    folder = applicable_config(load_config("imagenet/resnet50").to_dict())
    assert "data.scale_min" in folder and "schedule.milestones" not in folder  # plateau schedule


def test_demo_console_and_report_agree_and_the_report_gives_verdicts(tmp_path: Path, caplog):
    import logging
    import re

    from resnet.experiments.demo import run_demo

    caplog.set_level(logging.INFO, logger="resnet")  # the library logs its lines; `resnet demo` shows them
    report = run_demo(tmp_path / "demo", depths=(8, 14), iterations=12, jobs=1).read_text()
    logged = "\n".join(caplog.messages)
    printed = dict(re.findall(r"(\w+) +12 iterations in .*final training error ([\d.]+)%", logged))
    assert set(printed) == {"plain8", "plain14", "resnet8", "resnet14"}
    for name, value in printed.items():
        label = ("plain-" if name.startswith("plain") else "ResNet-") + name.removeprefix("plain").removeprefix(
            "resnet"
        )
        row = next(line for line in report.splitlines() if line.startswith(f"| {label} |"))
        assert f"| {value} |" in row  # the console's number is the report's
    assert report.count("Criterion:") == 2 and re.search(r"- \*\*(shown|contradicted|inconclusive)\*\*", report)
    assert "`schedule.warmup_lr`: 0.01" in report and "scale_min" not in report and "lighting" not in report


def test_fig7_verdicts_need_trained_nets():
    from resnet.analysis.cifar import _responses_verdicts

    stds = {"plain-20": [2.0, 2.0], "ResNet-20": [1.0, 1.0], "ResNet-56": [0.5, 0.5]}
    labels = ["plain-20", "ResNet-20", "ResNet-56"]
    trained = _responses_verdicts(stds, labels, {"plain-20": 9.0, "ResNet-20": 8.5, "ResNet-56": 7.0})
    assert [v.word for v in trained] == ["shown", "shown"]
    early = _responses_verdicts(stds, labels, {"plain-20": 90.0, "ResNet-20": 81.0, "ResNet-56": 7.0})
    assert [v.word for v in early] == ["inconclusive", "inconclusive"] and "too short to tell" in early[0].evidence
    bigger = _responses_verdicts({**stds, "ResNet-20": [3.0, 3.0]}, labels, dict.fromkeys(labels, 8.0))
    assert [v.word for v in bigger] == ["contradicted", "shown"]
