"""The paper's protocol by default: all training images, schedules scaled with --iterations, BN averages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnet.cli import main
from resnet.config import load_config, shortened_schedule
from resnet.errors import UserError
from resnet.experiments.cifar import cifar_specs
from resnet.experiments.registry import Options

from conftest import tiny_overrides


def test_shortened_schedule_keeps_the_paper_s_proportions():
    cfg = load_config("cifar10/resnet56")
    assert shortened_schedule(cfg, 200) == {
        "schedule.iterations": 200,
        "schedule.milestones": [100, 150],  # 32k and 48k of 64k
        "train.eval_every": 50,
        "train.log_every": 3,
        "train.checkpoint_every": 50,
    }
    assert shortened_schedule(cfg, 6_400)["train.eval_every"] == 200  # 32 evaluations, like every 2000 of 64k
    assert shortened_schedule(cfg, 64_000) == {"schedule.iterations": 64_000}  # the recipe itself: untouched


def test_reproduce_and_train_scale_a_schedule_the_same_way(cifar_subset: Path, tmp_path: Path):
    (spec,) = cifar_specs(["resnet56"], Options(out=tmp_path, data_dir=str(cifar_subset), iterations=200), 1)
    scaled = shortened_schedule(load_config("cifar10/resnet56"), 200)
    assert all(f"{k}={v}" in spec.overrides for k, v in scaled.items())


def test_a_cifar_recipe_trains_on_every_training_image_with_its_schedule_announced(cifar_subset: Path, tmp_path: Path):
    out = tmp_path / "r"
    argv = ["train", "cifar10/resnet20", "--data-dir", str(cifar_subset), "--iterations", "4", "--out", str(out)]
    assert main([*argv, "--set", "train.eval_every=3"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"] == {"dataset": "cifar10", "train": 5085, "val": 0, "test": 1017}  # the whole subset
    assert summary["best_val_error"] is None and summary["test_error_at_best_val"] is None
    first = (out / "train.log").read_text().splitlines()[0]
    assert "(5085 train, 1017 test)" in first
    # milestones scaled (2 and 3 of 4), the explicit --set wins over the scaled eval interval
    assert "schedule: lr 0.1 /10 at 2 (lr 0.01), /10 at 3 (lr 0.001) over 4 iterations" in first
    assert "; eval every 3, log every 1, checkpoint every 4" in first
    cfg = load_config(str(out / "config.yaml"))
    assert cfg.schedule.milestones == [2, 3] and cfg.train.eval_every == 3


def test_the_45k_5k_split_stays_available(cifar_subset: Path):
    from resnet.data.sources import open_source

    cfg = load_config("cifar10/resnet20", [f"data.data_dir={cifar_subset}", "data.val_fraction=0.1"])
    assert open_source(cfg).sizes == {"train": 4577, "val": 508, "test": 1017}


def test_bad_iterations_is_one_line(capsys):
    assert main(["train", "cifar10/resnet20", "--iterations", "0"]) == 2
    assert "--iterations must be positive" in capsys.readouterr().err


def test_tiny_recipe_still_has_its_validation_split():
    cfg = load_config(None, tiny_overrides())
    assert cfg.data.val_fraction == 0.1
    with pytest.raises(UserError, match="val_fraction"):
        load_config(None, tiny_overrides(**{"data.val_fraction": 1.0}))


def test_recompute_bn_is_the_equal_weight_average_of_batch_statistics():
    import torch
    from torch import nn

    from resnet.eval.bn import recompute_bn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    batches = [torch.randn(8, 3, 6, 6) * (k + 1) + k for k in range(5)]
    twin, used = recompute_bn(model, iter(batches), 3)
    assert used == 3 and not twin.training
    with torch.no_grad():
        feats = [model[0](x) for x in batches[:3]]
    mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(twin[1].running_mean, mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(twin[1].running_var, var, rtol=1e-4, atol=1e-5)
    assert twin[1].momentum == model[1].momentum  # restored: the copy is an ordinary model again
    torch.testing.assert_close(model[1].running_mean, torch.zeros(4))  # the original is untouched
    with pytest.raises(UserError, match="no BatchNorm"):
        recompute_bn(nn.Linear(2, 2), iter([torch.zeros(1, 2)]), 1)


def test_eval_recompute_bn_changes_the_buffers_and_reports_both_numbers(tmp_path: Path, capsys):
    import torch

    from resnet.checkpoint import load_checkpoint
    from resnet.eval.bn import recompute_bn, training_batches
    from resnet.interop.evaluate import evaluate
    from resnet.train.loop import fit

    fit(load_config(None, tiny_overrides()), tmp_path / "r", echo=False)
    assert main(["eval", str(tmp_path / "r"), "--recompute-bn", "5"]) == 0
    out = capsys.readouterr().out
    assert "(BN statistics: moving averages, as trained)" in out
    assert "(BN statistics: averages over 5 training batches)" in out
    report = evaluate(tmp_path / "r", recompute_bn=5)
    assert report.recomputed_bn.result.loss != pytest.approx(report.loss)  # other statistics
    ckpt = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    model = ckpt.build_model("r")
    from resnet.data.datasets import load_dataset

    train_x = torch.from_numpy(load_dataset(ckpt.recipe("r").data).train_x)
    twin, used = recompute_bn(model, training_batches(train_x, ckpt.normalizer(), 32), 5)
    before, after = model.state_dict(), twin.state_dict()
    moved = [k for k in before if k.endswith("running_mean") and not torch.allclose(before[k], after[k])]
    assert used == 5 and len(moved) == len([k for k in before if k.endswith("running_mean")])


def test_the_recipe_key_reports_recomputed_bn_beside_the_moving_average(tmp_path: Path):
    from resnet.rundir_format import read_metrics
    from resnet.train.loop import fit

    summary = fit(load_config(None, tiny_overrides(**{"train.recompute_bn": 4})), tmp_path / "r", echo=False)
    bn = summary["recomputed_bn"]
    assert bn["batches"] == 4 and set(bn) >= {"val_error", "test_error"}
    assert summary["test_error"] is not None  # the moving-average result stays the headline
    fit(load_config(None, tiny_overrides(**{"train.recompute_bn": 4})), tmp_path / "r", echo=False)  # finished
    events = [r for r in read_metrics(tmp_path / "r" / "metrics.jsonl") if r.get("event") == "recomputed_bn"]
    assert len(events) == 1  # not recomputed for a run that is already done
    assert "BN statistics averaged over 4 training batches" in (tmp_path / "r" / "train.log").read_text()


def test_eval_recompute_bn_uses_the_runs_own_batches(tmp_path: Path):
    # Found in review: `resnet eval --recompute-bn` drew seed 0's batches whatever the run's seed, so its
    # number differed from the train.recompute_bn one of the same run.
    from resnet.config import load_config
    from resnet.interop.evaluate import evaluate
    from resnet.train.loop import fit

    from conftest import tiny_overrides

    cfg = load_config(None, tiny_overrides(**{"train.seed": 3, "train.recompute_bn": 3, "schedule.iterations": 6}))
    summary = fit(cfg, tmp_path / "r", echo=False)
    report = evaluate(tmp_path / "r", split="test", recompute_bn=3, device="cpu")
    assert report.recomputed_bn.result.loss == pytest.approx(summary["recomputed_bn"]["test_loss"], rel=1e-6)
