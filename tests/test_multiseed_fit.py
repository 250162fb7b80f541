"""fit_seeds: several seeds as one step into ordinary run directories that fit, eval and reports read."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from resnet.config import load_config
from resnet.errors import NonFiniteLoss, UserError
from resnet.rundir_format import read_metrics
from resnet.train.loop import fit
from resnet.train.multiseed_fit import fit_seeds

from conftest import tiny_overrides

WARM = {"schedule.warmup_lr": 0.01, "schedule.warmup_until_error": 99.0, "schedule.warmup_window": 4,
        "schedule.milestones": [12, 14], "schedule.iterations": 16}  # fmt: skip


def recipe(**extra: object):
    return load_config(None, tiny_overrides(**{**WARM, **extra}))


def load(path: Path) -> dict:
    return torch.load(path / "checkpoint.pt", weights_only=True)


def global_relative(a: dict, b: dict) -> float:
    keys = [k for k, t in a.items() if t.is_floating_point()]
    x, y = torch.cat([a[k].flatten() for k in keys]), torch.cat([b[k].flatten() for k in keys])
    return ((x - y).norm() / x.norm()).item()


def shape(records: list[dict]) -> list[tuple]:
    """What a metrics log says, without the float noise of another convolution kernel."""
    return [(r["iteration"], r.get("split"), r.get("event"), r.get("lr")) for r in records]


def test_every_seed_gets_the_run_directory_its_single_run_would(tmp_path: Path):
    summaries = fit_seeds(recipe(), {0: tmp_path / "s0", 1: tmp_path / "s1"}, echo=False)
    assert set(summaries) == {0, 1} and all(s["iterations"] == 16 for s in summaries.values())
    for seed in (0, 1):
        fit(recipe(**{"train.seed": seed}), tmp_path / f"single{seed}", echo=False)
        mine, single = load(tmp_path / f"s{seed}"), load(tmp_path / f"single{seed}")
        run = tmp_path / f"s{seed}"
        assert yaml.safe_load((run / "config.yaml").read_text())["train"]["seed"] == seed
        assert (run / "summary.json").is_file() and (run / "run.json").is_file() and (run / "train.log").is_file()
        assert mine["iteration"] == 16 and mine["loader"] == single["loader"]
        assert mine["schedule"]["warmup_ended_at"] == single["schedule"]["warmup_ended_at"] == 10
        assert mine["optimizer"]["param_groups"] == single["optimizer"]["param_groups"]
        assert shape(read_metrics(run / "metrics.jsonl")) == shape(single["metrics"])  # incl. the warm-up event
        assert global_relative(single["model"], mine["model"]) < 1e-5  # measured: 1e-7 and 1e-6
    assert global_relative(load(tmp_path / "s0")["model"], load(tmp_path / "s1")["model"]) > 0.1


def test_batched_resume_is_exact_and_a_replica_continues_under_fit(tmp_path: Path):
    fit_seeds(recipe(), {0: tmp_path / "w0", 1: tmp_path / "w1"}, echo=False)
    half = recipe(**{"schedule.iterations": 8})
    fit_seeds(half, {0: tmp_path / "h0", 1: tmp_path / "h1"}, echo=False)
    fit_seeds(recipe(), {0: tmp_path / "h0", 1: tmp_path / "h1"}, echo=False)
    for seed in (0, 1):
        a, b = load(tmp_path / f"w{seed}"), load(tmp_path / f"h{seed}")
        for key, t in a["model"].items():
            assert torch.equal(t, b["model"][key]), key
        assert a["schedule"]["warmup_ended_at"] == b["schedule"]["warmup_ended_at"] == 10
    fit(recipe(**{"train.seed": 1, "schedule.iterations": 20}), tmp_path / "w1", echo=False)  # plain fit goes on
    assert load(tmp_path / "w1")["iteration"] == 20


def test_runs_at_different_iterations_are_refused(tmp_path: Path):
    fit(recipe(**{"train.seed": 1, "schedule.iterations": 4}), tmp_path / "b", echo=False)
    with pytest.raises(UserError, match=r"different iterations \(seed 0: 0, seed 1: 4\)"):
        fit_seeds(recipe(), {0: tmp_path / "a", 1: tmp_path / "b"}, echo=False)
    assert not (tmp_path / "a").exists()


def test_a_nan_in_one_seed_stops_all_and_keeps_their_last_good_checkpoints(tmp_path: Path):
    boom = recipe(**{"schedule.iterations": 30, "schedule.warmup_until_error": 101.0, "schedule.warmup_window": 2,
                     "optim.lr": 1e30, "schedule.milestones": [100], "train.checkpoint_every": 5,
                     "train.log_every": 30, "train.eval_every": 30})  # fmt: skip
    with pytest.raises(NonFiniteLoss, match=r"seed [01]: (loss became (nan|inf)|the weights became NaN/Inf)"):
        fit_seeds(boom, {0: tmp_path / "a", 1: tmp_path / "b"}, echo=False)
    assert load(tmp_path / "a")["iteration"] == load(tmp_path / "b")["iteration"] == 10


def test_reproduce_table6_with_batched_seeds(cifar_subset: Path, tmp_path: Path):
    from resnet.cli import main

    args = ["reproduce", "cifar-table6", "--data-dir", str(cifar_subset), "--iterations", "3", "--only", "resnet20",
            "--seeds", "2", "--batch-seeds", "--out", str(tmp_path), "--set", "train.batch_size=16"]  # fmt: skip
    assert main(args) == 0
    runs = tmp_path / "runs"
    scope = "-it3-n5085"  # 3 iterations on the subset's 5,085 training images: kept apart from full runs
    assert sorted(p.name for p in runs.iterdir()) == [f"resnet20-s0{scope}", f"resnet20-s1{scope}"]
    for seed in (0, 1):
        assert load(runs / f"resnet20-s{seed}{scope}")["config"]["train"]["seed"] == seed
    assert "batched_seeds" in (runs / f"resnet20-s1{scope}" / "summary.json").read_text()
    assert "(mean±std)" in next(tmp_path.glob("cifar-table6*/REPORT.md")).read_text()


@pytest.mark.parametrize("bad", ["0,x", "1,1"])
def test_train_seeds_flag_errors_are_one_line(tmp_path: Path, bad: str, capsys):
    from resnet.cli import main

    assert main(["train", "cifar10/resnet20", "--seeds", bad, "--out", str(tmp_path / "r")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--seeds" in err


def test_train_command_with_seeds_writes_one_run_directory_per_seed(tmp_path: Path):
    from resnet.cli import main

    recipe_file = tmp_path / "tiny.yaml"
    recipe_file.write_text("description: tiny\n")
    sets = [a for s in tiny_overrides(**{"schedule.iterations": 4}) for a in ("--set", s)]
    assert main(["train", str(recipe_file), "--seeds", "3,5", "--out", str(tmp_path / "r"), *sets]) == 0
    for seed in (3, 5):
        assert load(tmp_path / f"r-s{seed}")["config"]["train"]["seed"] == seed


def test_batched_seeds_store_and_check_the_data_fingerprint_and_refuse_bn_recompute(tmp_path: Path):
    # Found in review: batched runs wrote no fingerprint (so a resume on other data went on silently) and
    # ignored train.recompute_bn.
    fit_seeds(recipe(**{"schedule.iterations": 4}), {0: tmp_path / "a", 1: tmp_path / "b"}, echo=False)
    assert load(tmp_path / "a")["data"]["dataset"] == "digits"
    other = recipe(**{"schedule.iterations": 6, "data.val_fraction": 0.2})  # fewer training images
    with pytest.raises(UserError, match="data"):
        fit_seeds(other, {0: tmp_path / "a", 1: tmp_path / "b"}, echo=False)
    with pytest.raises(UserError, match="recompute_bn"):
        fit_seeds(recipe(**{"train.recompute_bn": 2}), {0: tmp_path / "c", 1: tmp_path / "d"}, echo=False)
