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
    assert "schedule: lr 0.1 /10 at 2, 3 of 4 iterations; eval every 3, log every 1, checkpoint every 4" in first
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
