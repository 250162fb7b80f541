"""Views of one run from the command line: ``resnet plot`` curves, ``resnet eval --json`` and ``--confusion``."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet.analysis.curves import read_curves
from resnet.config import load_config
from resnet.eval.metrics import confusion_matrix
from resnet.rundir_format import read_metrics
from resnet.train.loop import fit

from conftest import HANG, tiny_overrides

SRC = Path(__file__).resolve().parents[1] / "src"
#: matplotlib's first two colours: the first and the second run.
BLUE, ORANGE = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)


def resnet(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "resnet", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=HANG, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two short runs on the real digits: ResNet-8 and its plain twin."""
    root = tmp_path_factory.mktemp("runs")
    for name in ("resnet8", "plain8"):
        fit(load_config(None, tiny_overrides(**{"model.name": name})), root / name, echo=False)
    return root / "resnet8", root / "plain8"


def pixels_near(png: Path, rgb: tuple[int, int, int], tol: int = 12) -> int:
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return int((np.abs(img - np.array(rgb)).max(axis=2) <= tol).sum())


def test_plot_one_run_writes_its_curves_into_the_run_directory(runs):
    res = resnet("plot", str(runs[0]))
    assert res.returncode == 0, res.stderr
    png = runs[0] / "curves.png"
    assert res.stdout.strip() == f"curves: {png}" and Image.open(png).format == "PNG"
    assert pixels_near(png, BLUE) > 300 and pixels_near(png, ORANGE) == 0
    # The curves are the run's records: training error every 2 iterations, test error at 6 and 12.
    c = read_curves(runs[0])
    records = read_metrics(runs[0] / "metrics.jsonl")
    assert c.train[0] == [r["iteration"] for r in records if r.get("split") == "train"] == [2, 4, 6, 8, 10, 12]
    assert (
        c.evals["test"][0] == [6, 12]
        and c.last("test") == [r for r in records if r.get("split") == "test"][-1]["error"]
    )


def test_plot_several_runs_side_by_side_or_overlaid(runs, tmp_path: Path):
    side, over = tmp_path / "side.png", tmp_path / "over.png"
    assert resnet("plot", *map(str, runs), "--out", str(side)).returncode == 0
    assert resnet("plot", *map(str, runs), "--out", str(over), "--overlay", "--split", "val").returncode == 0
    w_side, w_over = Image.open(side).size[0], Image.open(over).size[0]
    assert w_side > 1.5 * w_over  # one panel per run, against one panel
    for png in (side, over):
        assert pixels_near(png, BLUE) > 300 and pixels_near(png, ORANGE) > 300  # one colour per run
    # Without --out, several runs go to ./curves.png.
    assert resnet("plot", *map(str, runs), cwd=tmp_path).returncode == 0 and (tmp_path / "curves.png").is_file()


@pytest.mark.parametrize(
    ("setup", "extra", "message"),
    [
        (None, [], "does not exist"),
        ("mkdir", [], "has no metrics.jsonl"),
        ("torn", [], "holds no error records yet"),
        ("run", ["--out", "curves.txt"], "name a .png, .pdf or .svg"),
        ("run", ["--ylim", "50", "10"], "--ylim LOW HIGH"),
    ],
)
def test_plot_bad_input_is_one_line(setup, extra, message, runs, tmp_path: Path):
    target = tmp_path / "x"
    if setup == "mkdir":
        target.mkdir()
    elif setup == "torn":
        target.mkdir()
        (target / "metrics.jsonl").write_text('{"iteration": 2, "split": "tr')
    elif setup == "run":
        target = runs[0]
    res = resnet("plot", str(target), *extra)
    assert res.returncode == 2 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_eval_json_and_confusion_matrix_agree_with_the_table(runs, tmp_path: Path):
    text = resnet("eval", str(runs[0]))
    assert text.returncode == 0, text.stderr
    res = resnet("eval", str(runs[0]), "--json", "--confusion")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["model"] == "resnet8" and doc["iteration"] == 12 and doc["images"] == 360 and doc["split"] == "test"
    assert f"top-1 error: {doc['top1_error']:.2f}%" in text.stdout
    png, table = Path(doc["confusion"]["png"]), Path(doc["confusion"]["csv"])
    assert png == runs[0] / "confusion-test.png" and Image.open(png).format == "PNG"
    rows = list(csv.reader(table.open()))
    assert rows[0][1:] == [str(d) for d in range(10)] == [r[0] for r in rows[1:]]
    counts = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    assert counts.sum() == 360
    for k, name in enumerate(rows[0][1:]):  # per-class error = the off-diagonal share of the class's row
        assert doc["per_class_error"][name] == pytest.approx(100 * (1 - counts[k, k] / counts[k].sum()), abs=1e-3)
    assert 100 * (1 - np.trace(counts) / 360) == pytest.approx(doc["top1_error"], abs=1e-3)
    # An explicit file name; the CSV goes beside it. A name that is not a PNG is refused before evaluating.
    assert resnet("eval", str(runs[0]), "--confusion", str(tmp_path / "cm.png"), "--split", "val").returncode == 0
    assert (tmp_path / "cm.png").is_file() and (tmp_path / "cm.csv").is_file()
    bad = resnet("eval", str(runs[0]), "--confusion", str(tmp_path / "cm.jpg"))
    assert bad.returncode == 2 and "name a .png" in bad.stderr


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    labels, predicted = torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([0, 1, 1, 2, 0, 2])
    m = confusion_matrix(predicted, labels, 4)
    assert m.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]


def test_default_error_axis_shows_where_runs_end_not_their_first_iterations(runs):
    from resnet.analysis.curves import Curves, _default_ylim

    def run(final: float) -> Curves:
        return Curves(
            "r", Path("r"), "resnet20", ([100, 500], [90.0, final / 4]), {"test": ([100, 500], [85.0, final])}
        )

    assert _default_ylim([run(3.6), run(6.7)], "test") == (0.0, 20.0)  # the paper's Fig. 6 axis
    assert _default_ylim([run(13.0)], "test") == (0.0, 40.0)
    assert _default_ylim([read_curves(runs[0])], "test") == (0.0, 102.0)  # near chance: 0-100% and a margin
