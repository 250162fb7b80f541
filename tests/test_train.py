"""Training: learning on real data, bit-exact resume, signals, the NaN guard, safe checkpoints, run records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from resnet import io as io_mod
from resnet.checkpoint import storage as ckpt_mod
from resnet.cli import main
from resnet.config import ScheduleConfig, load_config
from resnet.errors import NonFiniteLoss, UserError
from resnet.rundir_format import read_metrics
from resnet.train.loop import fit
from resnet.train.schedule import LRSchedule

from conftest import HANG, tiny_overrides


def load(path: Path) -> dict:
    return torch.load(path / "checkpoint.pt", weights_only=True)


def test_a_short_run_on_the_cifar_subset_lowers_the_loss(cifar_subset: Path, tmp_path: Path):
    cfg = load_config(
        "cifar10/resnet20",
        [
            "model.name=resnet8",
            f"data.data_dir={cifar_subset}",
            "schedule.iterations=40",
            "train.batch_size=64",
            "train.log_every=5",
            "train.eval_every=40",
            "train.checkpoint_every=40",
            "train.device=cpu",
        ],
    )
    summary = fit(cfg, tmp_path / "run", echo=False)
    train = [r for r in read_metrics(tmp_path / "run/metrics.jsonl") if r.get("split") == "train"]
    first, last = sum(r["loss"] for r in train[:2]) / 2, sum(r["loss"] for r in train[-2:]) / 2
    assert last < first - 0.15, (first, last)
    assert summary["test_error"] < 85.0  # better than chance (90%) on the 1,017 real test images


def strip_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "img_per_s"} for r in records]


def test_resume_is_bit_identical_on_cpu(tmp_path: Path):
    # The warm-up is on and ends after the resume point, so its running-error state must survive too.
    extra = {
        "schedule.iterations": 16,
        "schedule.warmup_lr": 0.01,
        "schedule.warmup_until_error": 99.0,
        "schedule.warmup_window": 4,
    }
    whole = load_config(None, tiny_overrides(**extra))
    fit(whole, tmp_path / "whole", echo=False)
    half = load_config(None, tiny_overrides(**{**extra, "schedule.iterations": 8}))
    fit(half, tmp_path / "split", echo=False)
    assert load(tmp_path / "split")["iteration"] == 8
    fit(whole, tmp_path / "split", echo=False)  # same command, existing run directory: resume

    a, b = load(tmp_path / "whole"), load(tmp_path / "split")
    assert a["iteration"] == b["iteration"] == 16
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert torch.equal(pa["momentum_buffer"], pb["momentum_buffer"])
    assert a["schedule"]["warmup_ended_at"] == b["schedule"]["warmup_ended_at"] == 10
    # The split run also evaluated at its interim end (iteration 8); every other record is identical.
    b_metrics = [r for r in b["metrics"] if not (r["iteration"] == 8 and r.get("split") in ("val", "test"))]
    assert strip_timing(a["metrics"]) == strip_timing(b_metrics)


def test_checkpoint_holds_the_full_state_and_loads_weights_only(tmp_path: Path):
    fit(load_config(None, tiny_overrides()), tmp_path / "r", echo=False)
    c = load(tmp_path / "r")
    for key in ("model", "iteration", "optimizer", "schedule", "rng", "loader", "preprocessing", "metrics", "config"):
        assert key in c
    assert c["loader"] == {"epoch": 0, "step": 12, "seed": 0}
    assert c["preprocessing"]["kind"] == "pixel_mean" and c["preprocessing"]["mean"].shape == (1, 8, 8)
    assert c["model_name"] == "resnet8" and c["model_kwargs"] == {"num_classes": 10, "in_channels": 1}


def test_run_directory_records_itself(tmp_path: Path):
    fit(load_config(None, tiny_overrides()), tmp_path / "r", argv=["resnet", "train", "x"], echo=False)
    run = tmp_path / "r"
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["name"] == "resnet8"
    inv = json.loads((run / "run.json").read_text())["invocations"][0]
    assert inv["command"] == "resnet train x" and inv["torch"] == torch.__version__
    assert inv["device"].startswith("cpu") and "git_commit" in inv
    records = read_metrics(run / "metrics.jsonl")
    assert {r["split"] for r in records} == {"train", "val", "test"}
    train = [r for r in records if r["split"] == "train"]
    assert [r["iteration"] for r in train] == [2, 4, 6, 8, 10, 12]
    assert all(0 <= r["error"] <= 100 and r["img_per_s"] > 0 for r in train)
    assert [r["lr"] for r in train] == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.01, 0.001])  # milestones 8, 10
    summary = json.loads((run / "summary.json").read_text())
    assert summary["iterations"] == 12 and summary["best_val_iteration"] in (6, 12)


def test_metrics_written_after_the_last_checkpoint_are_dropped_on_resume(tmp_path: Path):
    fit(load_config(None, tiny_overrides(**{"schedule.iterations": 4})), tmp_path / "r", echo=False)
    with (tmp_path / "r/metrics.jsonl").open("a") as f:
        f.write('{"iteration": 99, "split": "train", "loss": 0, "error": 0}\n{"torn li')
    fit(load_config(None, tiny_overrides(**{"schedule.iterations": 6})), tmp_path / "r", echo=False)
    its = [r["iteration"] for r in read_metrics(tmp_path / "r/metrics.jsonl") if r.get("split") == "train"]
    assert its == [2, 4, 6]


def test_resume_with_another_recipe_is_refused(tmp_path: Path):
    fit(load_config(None, tiny_overrides(**{"schedule.iterations": 2})), tmp_path / "r", echo=False)
    with pytest.raises(UserError, match=r"different recipe \(optim.lr: 0.1 -> 0.2\)"):
        fit(load_config(None, tiny_overrides(**{"optim.lr": 0.2})), tmp_path / "r", echo=False)


def exploding_recipe(**extra: object):
    """Warm-up at a sane lr ends at iteration 10 (threshold above 100%), then an absurd lr blows up the weights."""
    settings = {
        "schedule.iterations": 30,
        "schedule.warmup_lr": 0.01,
        "schedule.warmup_until_error": 101.0,
        "schedule.warmup_window": 2,
        "optim.lr": 1e30,
        "schedule.milestones": [100],
        "train.checkpoint_every": 5,
        "train.log_every": 30,
        "train.eval_every": 30,
    }
    return load_config(None, tiny_overrides(**{**settings, **extra}))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path):
    cfg = exploding_recipe()
    with pytest.raises(NonFiniteLoss, match=r"loss became (nan|inf) at iteration 1[1-3]; training stopped"):
        fit(cfg, tmp_path / "r", echo=False)
    assert load(tmp_path / "r")["iteration"] == 10
    assert all(r.get("iteration", 0) <= 10 for r in read_metrics(tmp_path / "r/metrics.jsonl"))


def test_corrupt_checkpoint_is_reported_and_left_alone(tmp_path: Path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UserError, match=r"checkpoint.pt: not a readable checkpoint"):
        fit(load_config(None, tiny_overrides()), run, echo=False)
    assert (run / "checkpoint.pt").read_bytes() == b"PK\x03\x04 truncated"


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path: Path, monkeypatch):
    fit(load_config(None, tiny_overrides(**{"schedule.iterations": 4})), tmp_path / "r", echo=False)
    before = (tmp_path / "r/checkpoint.pt").read_bytes()

    def disk_full(obj, f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt_mod.torch, "save", disk_full)
    with pytest.raises(UserError, match="no space left on"):
        fit(load_config(None, tiny_overrides(**{"schedule.iterations": 8})), tmp_path / "r", echo=False)
    assert (tmp_path / "r/checkpoint.pt").read_bytes() == before
    assert not [p for p in (tmp_path / "r").iterdir() if p.name.endswith(".tmp")]


def test_lr_schedule_milestones_and_warmup_returns_to_base():
    s = LRSchedule(ScheduleConfig(), 0.1, torch.device("cpu"))
    assert [s.lr(i) for i in (0, 31_999, 32_000, 47_999, 48_000, 63_999)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    )
    w = LRSchedule(ScheduleConfig(warmup_lr=0.01, warmup_window=10), 0.1, torch.device("cpu"))
    ended = []
    for it in range(1, 41):
        assert w.lr(it - 1) == (0.01 if not ended else 0.1)
        err = 90.0 if it <= 15 else 50.0  # the running error (window 10) drops below 80% at iteration 20
        if w.observe(it, torch.tensor(err)):
            ended.append(it)
    assert ended == [20] and w.lr(20) == 0.1 and w.lr(40_000) == 0.01  # back to 0.1, then the milestones


def run_cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "resnet", *args], env=env, text=True, **kw)


def test_sigterm_checkpoints_and_the_resumed_run_matches_an_uninterrupted_one(tmp_path: Path):
    common = ["train", "-", "--device", "cpu", "--iterations", "300", "--checkpoint-every", "1000"]
    sets = [a for s in tiny_overrides(**{"schedule.iterations": 300, "train.eval_every": 1000}) for a in ("--set", s)]
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("description: tiny\n")
    common[1] = str(recipe)
    run = tmp_path / "run"
    proc = run_cli([*common, *sets, "--out", str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    log = run / "train.log"
    deadline = time.time() + HANG
    while time.time() < deadline and not (log.is_file() and "iter" in log.read_text().split("training", 1)[-1]):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM at iteration" in err and "Resume with: resnet train" in err
    stopped_at = load(run)["iteration"]
    assert 0 < stopped_at < 300
    # The unlogged part of the window travels in the checkpoint: no record is written at the stop itself.
    assert all(r["iteration"] % 2 == 0 for r in read_metrics(run / "metrics.jsonl"))
    resumed = run_cli([*common, *sets, "--out", str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    resumed.communicate(timeout=HANG)
    assert resumed.returncode == 0
    straight = run_cli([*common, *sets, "--out", str(tmp_path / "straight")], stdout=subprocess.PIPE)
    straight.communicate(timeout=HANG)
    a, b = load(run), load(tmp_path / "straight")
    assert a["iteration"] == b["iteration"] == 300
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    metrics = [strip_timing(read_metrics(r / "metrics.jsonl")) for r in (run, tmp_path / "straight")]
    assert metrics[0] == metrics[1]


def test_eval_command_prints_top1_and_per_class_error(tmp_path: Path, capsys):
    fit(load_config(None, tiny_overrides()), tmp_path / "r", echo=False)
    assert main(["eval", str(tmp_path / "r"), "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "top-1 error:" in out and "val split (144 images)" in out
    assert len([line for line in out.splitlines() if line[:1].isdigit()]) == 10  # one line per digit class
    assert main(["eval", str(tmp_path / "r" / "checkpoint.pt")]) == 0
    assert "test split (360 images)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "cifar10/resnet20", "--set", "optim.lrr=1"], "did you mean optim.lr"),
        (["train", "cifar10/resnet21"], "no config file"),
        (["train", "cifar10/resnet20", "--data-dir", "/nonexistent/cifar"], "does not exist"),
        (["eval", "/nonexistent/run"], "no checkpoint at"),
    ],
)
def test_train_and_eval_errors_are_one_line(args: list[str], message: str, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_bf16_autocast_and_channels_last_path_runs_on_cpu(tmp_path: Path):
    """The CUDA fast path's code (autocast + channels_last) exercised on the CPU; it must still learn."""
    cfg = load_config(
        None,
        tiny_overrides(
            **{
                "train.precision": "bf16",
                "train.channels_last": "true",
                "schedule.iterations": 20,
                "schedule.milestones": [100],
            }
        ),
    )
    summary = fit(cfg, tmp_path / "r", echo=False)
    assert summary["iterations"] == 20
    log = (tmp_path / "r" / "train.log").read_text()
    assert "bf16, channels_last" in log
    train = [r for r in read_metrics(tmp_path / "r/metrics.jsonl") if r.get("split") == "train"]
    assert train[-1]["loss"] < train[0]["loss"]
    assert all(t.dtype == torch.float32 for t in load(tmp_path / "r")["model"].values() if t.is_floating_point())


@pytest.mark.slow
def test_torch_compile_path(tmp_path: Path):
    cfg = load_config(None, tiny_overrides(**{"train.compile": "default", "schedule.iterations": 4}))
    summary = fit(cfg, tmp_path / "r", echo=False)
    assert summary["iterations"] == 4
    assert not any(k.startswith("_orig_mod") for k in load(tmp_path / "r")["model"])


def test_atomic_writes_get_ordinary_file_permissions(tmp_path: Path):
    old = os.umask(0o022)
    try:
        io_mod.atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


def test_tensorboard_events_mirror_the_metrics(tmp_path: Path):
    pytest.importorskip("tensorboard", reason="the [tb] extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    fit(load_config(None, tiny_overrides(**{"train.tensorboard": True})), tmp_path / "r", echo=False)
    events = EventAccumulator(str(tmp_path / "r" / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/error")] == [2, 4, 6, 8, 10, 12]
    assert {"val/error", "test/error", "train/lr"} <= set(events.Tags()["scalars"])


def test_blown_up_weights_are_never_saved_even_when_the_loss_was_still_finite(tmp_path: Path):
    # A checkpoint every iteration: the step at iteration 11 (lr 1e30) still had a finite loss but left
    # weights of ~1e29; saving them would make "the last good checkpoint" unusable.
    cfg = exploding_recipe(**{"train.checkpoint_every": 1})
    with pytest.raises(NonFiniteLoss, match=r"weights became NaN/Inf by iteration 11"):
        fit(cfg, tmp_path / "r", echo=False)
    saved = load(tmp_path / "r")
    assert saved["iteration"] == 10
    assert max(t.abs().max().item() for t in saved["model"].values() if t.is_floating_point()) < 1e3


def test_a_run_directory_in_use_is_refused_and_a_stale_lock_is_taken_over(tmp_path: Path):
    import socket

    run = tmp_path / "r"
    run.mkdir()
    (run / ".lock").write_text(f"{socket.gethostname()} {os.getpid()}\n")  # this very process: alive
    with pytest.raises(UserError, match=r"is being trained by .* wait for it or stop it"):
        fit(load_config(None, tiny_overrides(**{"schedule.iterations": 2})), run, echo=False)
    (run / ".lock").write_text(f"{socket.gethostname()} 999999999\n")  # no such process: a crash left it
    fit(load_config(None, tiny_overrides(**{"schedule.iterations": 2})), run, echo=False)
    assert not (run / ".lock").exists() and load(run)["iteration"] == 2


def test_extending_a_finished_run_drops_its_old_summary(tmp_path: Path, monkeypatch):
    fit(load_config(None, tiny_overrides(**{"schedule.iterations": 4})), tmp_path / "r", echo=False)
    assert (tmp_path / "r/summary.json").is_file()
    import resnet.train.trainer as train_mod

    def broken(*a, **k):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(train_mod, "train_one_step", broken)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(load_config(None, tiny_overrides(**{"schedule.iterations": 8})), tmp_path / "r", echo=False)
    assert not (tmp_path / "r/summary.json").exists()  # no stale "finished" summary for an unfinished run
    assert not (tmp_path / "r/.lock").exists() and load(tmp_path / "r")["iteration"] == 4


def test_ctrl_c_stops_parallel_runs_gracefully_and_the_same_command_resumes(tmp_path: Path):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--depths", "8", "14", "--iterations", "400", "--jobs", "2"]
    proc = run_cli(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline and not any(
        (out / n / "train.log").is_file() and "iter" in (out / n / "train.log").read_text().split("training", 1)[-1]
        for n in ("plain14", "resnet14")
    ):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    _, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 130, err[-2000:]
    assert "stopped by SIGINT" in err and "Resume with: resnet demo" in err and "Traceback" not in err
    stopped = [n for n in ("plain14", "resnet14") if (out / n / "checkpoint.pt").is_file()]
    assert stopped and all(load(out / n)["iteration"] < 400 for n in stopped)
    again = run_cli(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out_text, err = again.communicate(timeout=HANG)
    assert again.returncode == 0, err[-2000:]
    assert (out / "REPORT.md").is_file() and all(load(out / n)["iteration"] == 400 for n in stopped)


def test_tensorboard_writer_is_closed_when_a_run_stops_on_nan(tmp_path: Path, monkeypatch):
    """Events buffered in the writer reach the disk however the run ends (here: the NaN guard)."""
    import resnet.train.metrics_log as metrics_log

    writers = []

    class Writer:
        def __init__(self, log_dir: str) -> None:
            self.scalars, self.closed = [], 0
            writers.append(self)

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            self.scalars.append((tag, step))

        def close(self) -> None:
            self.closed += 1

    monkeypatch.setattr(metrics_log, "require_tensorboard", lambda: Writer)
    monkeypatch.setattr("resnet.train.loop.require_tensorboard", lambda: Writer)
    cfg = exploding_recipe(**{"train.tensorboard": True})
    with pytest.raises(NonFiniteLoss):
        fit(cfg, tmp_path / "r", echo=False)
    assert len(writers) == 1 and writers[0].scalars and writers[0].closed == 1
