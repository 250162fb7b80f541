"""``resnet reproduce``: reports made from recorded run directories, the Fig. 7 analysis, Table 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from resnet.analysis.response_std import response_stds
from resnet.cli import main
from resnet.config import load_config
from resnet.data.preprocess import Normalizer
from resnet.errors import UserError
from resnet.experiments.registry import Options
from resnet.experiments.reproduce import reproduce
from resnet.models import build_network, response_layer_names
from resnet.paper import IMAGENET_PARAMS_B, TABLE1_GMACS


def fake_run(
    root: Path,
    model: str,
    *,
    iterations: int,
    done: int,
    train_err: float,
    test_err: float,
    val: list[tuple[int, float, float]] = (),
    n_train: int = 45_000,
    n_val: int = 5_000,
) -> None:
    """A run directory as `resnet train` leaves it, with hand-written metrics (no training)."""
    root.mkdir(parents=True)
    cfg = load_config(f"cifar10/{model}", [f"schedule.iterations={iterations}"])
    (root / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    records = [  # the last tenth at the final training error, earlier ones 10 points above
        {"iteration": it, "split": "train", "loss": 1.0, "error": train_err + 10 * (it < 0.9 * done), "lr": 0.1}
        for it in range(100, done, 100)
    ]
    records.append({"iteration": done, "split": "train", "loss": 0.1, "error": train_err, "lr": 0.001})
    for it, v, t in val:
        records += [{"iteration": it, "split": "val", "error": v}, {"iteration": it, "split": "test", "error": t}]
    records.append({"iteration": done, "split": "test", "error": test_err})
    (root / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "run.json").write_text(
        json.dumps(
            {"invocations": [{"git_commit": "abc123", "device": "NVIDIA H100", "torch": "2.11", "python": "3.12"}]}
        )
    )
    if done >= iterations:
        summary = {"iterations": done, "train_seconds": 60.0, "data": {"train": n_train, "val": n_val, "test": 10_000}}
        (root / "summary.json").write_text(json.dumps(summary))


def test_fig6_report_from_recorded_metrics_with_a_partial_experiment(tmp_path: Path):
    runs = tmp_path / "runs"
    fake_run(runs / "plain20-s0", "plain20", iterations=64_000, done=64_000, train_err=1.5, test_err=9.0)
    fake_run(runs / "plain56-s0", "plain56", iterations=64_000, done=64_000, train_err=6.5, test_err=12.0)
    fake_run(runs / "resnet20-s0", "resnet20", iterations=64_000, done=64_000, train_err=1.2, test_err=8.4)
    fake_run(runs / "resnet56-s0", "resnet56", iterations=64_000, done=30_000, train_err=9.0, test_err=11.0)
    report = reproduce("cifar-fig6", Options(out=tmp_path, report_only=True))
    text = report.read_text()
    assert "Not a reproduction" not in text  # full schedule, full data
    assert "| plain56 | 6.50 | 12.00 | - | finished |" in text
    assert "| resnet20 | 1.20 | 8.40 | 8.75 | finished |" in text
    # an incomplete run has no final numbers, and is never compared as if final
    assert "| resnet56 | - | - | 6.97 | incomplete (30000/64000 it.) |" in text
    assert "| resnet32 | - | - | 7.51 | not run |" in text
    assert "- **shown**: the deeper plain net has higher training error" in text
    assert "plain56 6.50% vs plain20 1.50% (+5.00 points; margin 1.00)" in text
    assert "- **inconclusive**: the deeper ResNet has lower training error" in text and "resnet56 incomplete" in text
    assert text.count("Criterion: ") == 2
    assert "Trained on 45,000 training images, 5,000 held out for validation" in text
    assert "abc123" in text and "NVIDIA H100" in text
    assert (tmp_path / "cifar-fig6/fig6.png").stat().st_size > 10_000
    assert (tmp_path / "cifar-fig6/fig6.csv").read_text().startswith("net,final training error %")


def test_table6_best_and_mean_std_over_seeds_and_val_selection(tmp_path: Path):
    runs = tmp_path / "runs"
    errs = [6.5, 6.9, 6.7]
    for seed, e in enumerate(errs):
        fake_run(
            runs / f"resnet110-s{seed}",
            "resnet110",
            iterations=64_000,
            done=64_000,
            train_err=0.5,
            test_err=e,
            val=[(32_000, 9.0, 9.5), (64_000, 7.0, e)],
        )
    report = reproduce("cifar-table6", Options(out=tmp_path, report_only=True, seeds=3))
    row = next(line for line in report.read_text().splitlines() if line.startswith("| resnet110"))
    assert "6.50 (best); 6.70±0.20 (mean±std)" in row  # sample std of 6.5, 6.9, 6.7
    assert "| +0.07 |" in row  # best run against the paper's 6.43
    assert "| 3 | finished |" in row
    assert "| resnet20 | 0.27M | 8.75 | - | - | - | 0 | not run |" in report.read_text()


def test_shortened_or_subset_runs_are_flagged(tmp_path: Path):
    fake_run(
        tmp_path / "runs/resnet20-s0-it500",
        "resnet20",
        iterations=500,
        done=500,
        train_err=30.0,
        test_err=40.0,
        n_train=4577,
        n_val=508,
    )
    text = reproduce("cifar-fig6", Options(out=tmp_path, report_only=True, iterations=500)).read_text()
    assert "**Not a reproduction.**" in text and "shortened to 500 iterations" in text
    assert "trained on a subset: 4,577 training images (+508 held out for validation) (the paper: 50,000)" in text


def test_response_std_equals_a_manual_computation():
    torch.manual_seed(0)
    model = build_network("resnet8").eval()
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.weight.data.uniform_(0.2, 1.5)
    images = torch.randint(0, 256, (37, 3, 32, 32), dtype=torch.uint8)
    norm = Normalizer.fit("pixel_mean", images.numpy())
    got = response_stds(model, images, norm, batch_size=10)
    assert (
        list(got)
        == response_layer_names(model)
        == ["bn1", "layer1.0.bn1", "layer1.0.bn2", "layer2.0.bn1", "layer2.0.bn2", "layer3.0.bn1", "layer3.0.bn2"]
    )
    with torch.no_grad():
        x = norm(images)
        stem = model.bn1(model.conv1(x))
        h = model.relu(stem)
        b = model.layer1[0]
        r1 = b.bn1(b.conv1(h))
        r2 = b.bn2(b.conv2(torch.relu(r1)))
        h = torch.relu(r2 + h)
        b2 = model.layer2[0]
        r3 = b2.bn1(b2.conv1(h))
    for name, t in (("bn1", stem), ("layer1.0.bn1", r1), ("layer1.0.bn2", r2), ("layer2.0.bn1", r3)):
        assert got[name] == pytest.approx(t.double().std(unbiased=False).item(), rel=1e-9)


def test_table1_numbers_equal_the_spec(tmp_path: Path):
    import csv

    assert main(["reproduce", "table1", "--out", str(tmp_path)]) == 0
    with (tmp_path / "table1/table1.csv").open() as f:
        rows = {(r["model"], r["bottleneck stride"], r["shortcut"]): r for r in csv.DictReader(f)}
    for depth, params in IMAGENET_PARAMS_B.items():
        v1 = rows[(f"resnet{depth}", "v1 (paper)" if depth >= 50 else "-", "B")]
        assert int(v1["params"]) == params
        assert abs(float(v1["GMACs (ours)"]) - TABLE1_GMACS[depth]) < 0.07  # 34 layers: 3.664 vs the paper's 3.6
    assert float(rows[("resnet50", "v1.5 (torchvision)", "B")]["GMACs (ours)"]) == pytest.approx(4.089, abs=1e-3)
    assert rows[("resnet34", "-", "A")]["params"] == rows[("plain34", "-", "none (plain)")]["params"] == "21623848"
    assert "| 152 | resnet152 | v1 (paper) | B | 60,192,808 |" in (tmp_path / "table1/REPORT.md").read_text()
    assert (tmp_path / "table1/table1.png").stat().st_size > 10_000


def test_a_real_shortened_experiment_on_the_subset(cifar_subset: Path, tmp_path: Path, capsys, monkeypatch):
    import collections

    import resnet.config
    import resnet.data.datasets

    reads: collections.Counter[str] = collections.Counter()
    parse, load = resnet.config.load_yaml, resnet.data.datasets.load_cifar
    monkeypatch.setattr(resnet.config, "load_yaml", lambda text, where: reads.update([where]) or parse(text, where))
    monkeypatch.setattr(resnet.data.datasets, "load_cifar", lambda *a: reads.update(["CIFAR"]) or load(*a))
    args = [
        "reproduce",
        "cifar-table6",
        "--data-dir",
        str(cifar_subset),
        "--iterations",
        "3",
        "--only",
        "resnet20",
        "--seeds",
        "2",
        "--out",
        str(tmp_path),
        "--set",
        "train.batch_size=16",
    ]
    assert main(args) == 0
    # Each recipe is read once and the data loaded once for the whole experiment (two runs, five nets' specs).
    assert set(reads.values()) == {1} and len(reads) >= 5, reads
    # runs and report are named by length and training-set size, so other settings never overwrite them
    text = (tmp_path / "cifar-table6-it3-n5085/REPORT.md").read_text()
    assert "**Not a reproduction.**" in text and "(mean±std)" in text
    assert "Trained on all 5,085 training images, no validation split" in text
    assert "best val" not in text  # no validation split: no such column
    assert "- **inconclusive**: resnet110 has lower test error than resnet20" in text and "resnet110 not run" in text
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["resnet20-s0-it3-n5085", "resnet20-s1-it3-n5085"]
    out = capsys.readouterr().out
    assert "| resnet20 | 0.27M | 8.75 |" in out and "[inconclusive]" not in out and "**inconclusive**" in out
    # A second call reuses the finished runs and trains nothing.
    assert main(args) == 0
    assert "3 iterations" in capsys.readouterr().out


def test_errors(tmp_path: Path):
    with pytest.raises(UserError, match="did you mean cifar-fig6"):
        reproduce("cifar-fig7", Options(out=tmp_path))
    with pytest.raises(UserError, match="--only resnet99: not a net of this experiment; choose from plain20, "):
        reproduce("cifar-fig6", Options(out=tmp_path, only=["resnet99"]))


def test_imagenet_table2_on_a_small_photo_folder(tmp_path: Path, monkeypatch, capsys):
    from folders import build_folder

    monkeypatch.setenv("RESNET_CACHE", str(tmp_path / "cache"))
    root = build_folder(tmp_path / "photos")
    tiny = [
        "data.crop=32",
        "data.scale_min=36",
        "data.scale_max=40",
        "data.eval_resize=36",
        "data.workers=0",
        "data.mean_samples=20",
        "train.batch_size=4",
        "train.eval_every=2",
        "train.log_every=1",
        "train.eval_limit=4",
        "train.device=cpu",
    ]
    args = ["reproduce", "imagenet-table2", "--data-dir", str(root), "--iterations", "2", "--out", str(tmp_path / "x"),
            "--only", "resnet18", "plain18"] + [a for s in tiny for a in ("--set", s)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "eval (10crop)" not in printed.err and "\r" not in printed.out + printed.err  # no bar in a log
    text = (tmp_path / "x/imagenet-table2-it2-n12/REPORT.md").read_text()  # scoped by length and data size
    assert "**Not a reproduction.**" in text and "shortened to 2 iterations" in text
    assert "trained on a subset: 12 training images (the paper: 1,281,167)" in text  # the 6 val are not training
    assert "from 2 run directories (2 more planned, not run)" in text
    assert "- **inconclusive**: ResNet-34 has lower validation error than plain-34" in text
    assert "resnet34 not run" in text
    row = next(line for line in text.splitlines() if line.startswith("| resnet18 |"))
    assert "| 27.88 |" in row and "| 6 | finished |" in row  # the paper's 10-crop figure; all 6 val images
    assert "| resnet34 | - | 25.03 | - | - | - | - | not run |" in text
    cached = json.loads((tmp_path / "x/runs/resnet18-s0-it2-n12/eval-10crop.json").read_text())
    assert cached["protocol"] == "10crop" and cached["n"] == 6 and 0 <= cached["top1"] <= 100


def test_table6_leaves_unfinished_runs_out_of_the_numbers(tmp_path: Path):
    runs = tmp_path / "runs"
    fake_run(runs / "resnet56-s0", "resnet56", iterations=64_000, done=64_000, train_err=0.4, test_err=7.0)
    fake_run(runs / "resnet56-s1", "resnet56", iterations=64_000, done=20_000, train_err=9.0, test_err=15.0)
    report = reproduce("cifar-table6", Options(out=tmp_path, report_only=True, seeds=2))
    row = next(line for line in report.read_text().splitlines() if line.startswith("| resnet56"))
    assert "| 7.00 |" in row and "15.00" not in row and "| 1 of 2 |" in row
    assert "| 1 of 2 finished; s1 incomplete (20000/64000 it.) |" in row
