"""A stop between log points (a signal, a preemption) and the resumed run: weights AND metrics.jsonl equal an
uninterrupted run's. The unlogged part of the loss window travels in the checkpoint, so the record that
straddles the stop is written once, by the resumed run, with the same numbers."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from resnet.config import load_config
from resnet.errors import TrainingInterrupted
from resnet.rundir_format import read_metrics
from resnet.train import trainer as trainer_module
from resnet.train.loop import fit

from conftest import tiny_overrides


def timeless(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "img_per_s"} for r in read_metrics(run / "metrics.jsonl")]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_a_stop_inside_a_log_window_resumes_to_the_same_metrics(tmp_path: Path, monkeypatch, signum):
    cfg = load_config(None, tiny_overrides(**{"train.log_every": 4, "train.checkpoint_every": 100}))
    fit(cfg, tmp_path / "straight", echo=False)

    step = trainer_module.Trainer.step

    def step_then_signal(self, lr):
        wrong = step(self, lr)
        if self.state.iteration == 5:  # one iteration into the window that ends at 8
            os.kill(os.getpid(), signum)
        return wrong

    monkeypatch.setattr(trainer_module.Trainer, "step", step_then_signal)
    with pytest.raises(TrainingInterrupted) as stopped:
        fit(cfg, tmp_path / "run", echo=False)
    assert stopped.value.iteration == 5 and stopped.value.exit_code == 128 + signum
    assert [r["iteration"] for r in timeless(tmp_path / "run")] == [4]  # nothing written at the stop
    assert torch.load(tmp_path / "run/checkpoint.pt", weights_only=True)["window"]["rows"].shape == (1, 1, 2)
    monkeypatch.setattr(trainer_module.Trainer, "step", step)

    fit(cfg, tmp_path / "run", echo=False)
    assert timeless(tmp_path / "run") == timeless(tmp_path / "straight")
    a, b = (torch.load(tmp_path / r / "checkpoint.pt", weights_only=True) for r in ("run", "straight"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_batched_seeds_stopped_inside_a_log_window_resume_to_the_same_metrics(tmp_path: Path, monkeypatch):
    from resnet.train import multiseed
    from resnet.train.multiseed_fit import fit_seeds

    cfg = load_config(None, tiny_overrides(**{"train.log_every": 4, "train.checkpoint_every": 100}))
    fit_seeds(cfg, {0: tmp_path / "a0", 1: tmp_path / "a1"}, echo=False)
    step = multiseed.MultiSeedTrainer.step

    def step_then_signal(self):
        out = step(self)
        if self.iteration == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(multiseed.MultiSeedTrainer, "step", step_then_signal)
    with pytest.raises(TrainingInterrupted):
        fit_seeds(cfg, {0: tmp_path / "b0", 1: tmp_path / "b1"}, echo=False)
    monkeypatch.setattr(multiseed.MultiSeedTrainer, "step", step)
    assert [r["iteration"] for r in timeless(tmp_path / "b1")] == [4]
    fit_seeds(cfg, {0: tmp_path / "b0", 1: tmp_path / "b1"}, echo=False)
    for seed in (0, 1):
        assert timeless(tmp_path / f"b{seed}") == timeless(tmp_path / f"a{seed}")
