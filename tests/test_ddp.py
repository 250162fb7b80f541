"""``torchrun`` with 2 gloo processes on the CPU against one process with the same global batch.

How BN differs: under DDP each rank normalises with the statistics of its own shard of the batch (16 of
32 images here), and the gradients are averaged over ranks. One process with plain BN would use the
statistics of all 32 images, so the two runs are *not* the same computation. The reference below does what
DDP does: it runs BN on each half of the global batch separately ("ghost" batches) and averages the two
halves' losses, which gives exactly DDP's averaged gradient; the parameters must then agree to float
tolerance. BN running statistics are left out of the comparison: DDP keeps rank 0's (broadcast at every
forward), the reference updates them with both halves in turn.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from resnet.config import load_config
from resnet.data.datasets import load_dataset
from resnet.data.loader import DeviceLoader
from resnet.data.preprocess import Normalizer
from resnet.models import build_network
from resnet.train.schedule import LRSchedule
from resnet.train.state import build_optimizer

from conftest import HANG, tiny_overrides

STEPS = 14


def overrides() -> list[str]:
    # The ResNet-110 warm-up is on: its end is decided from the error over *both* ranks (iteration 10 here),
    # so both ranks switch lr together; the reference decides from the global batch.
    return tiny_overrides(
        **{
            "schedule.iterations": STEPS,
            "schedule.milestones": [12],
            "schedule.warmup_lr": 0.02,
            "schedule.warmup_until_error": 99.0,
            "schedule.warmup_window": 4,
            "train.log_every": 3,
            "train.eval_every": 100,
            "train.checkpoint_every": 100,
        }
    )


def torchrun(out: Path, extra: list[str] = ()) -> subprocess.CompletedProcess:
    sets = [a for s in [*overrides(), *extra] for a in ("--set", s)]
    recipe = out.parent / "tiny.yaml"
    recipe.write_text("description: ddp test\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "resnet", "train", str(recipe), "--out", str(out), *sets]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=HANG, env=env)


def reference_params(cfg) -> dict[str, torch.Tensor]:
    """One process, global batch 32, BN over each 16-image half (what the two ranks see)."""
    data = load_dataset(cfg.data)
    norm = Normalizer.fit(cfg.data.normalize, data.train_x)
    torch.manual_seed(cfg.train.seed)
    model = build_network(cfg.model.name, num_classes=10, in_channels=1)
    opt = build_optimizer(cfg, model, torch.device("cpu"))
    loader = DeviceLoader(
        torch.from_numpy(data.train_x),
        torch.from_numpy(data.train_y),
        cfg.train.batch_size,
        norm,
        augment=cfg.data.augment,
        pad=cfg.data.pad,
        flip=cfg.data.flip,
        seed=cfg.train.seed,
    )
    schedule = LRSchedule(cfg.schedule, cfg.optim.lr, torch.device("cpu"))
    for it in range(STEPS):
        x, y = loader.next()
        x = x.contiguous()
        for g in opt.param_groups:
            g["lr"] = schedule.lr(it)
        half = len(y) // 2
        out0, out1 = model(x[:half]), model(x[half:])
        loss = (F.cross_entropy(out0, y[:half]) + F.cross_entropy(out1, y[half:])) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        wrong = (torch.cat([out0, out1]).argmax(1) != y).sum()
        schedule.observe(it + 1, wrong.double() * 100.0 / len(y))
    assert schedule.warmup_ended_at == 10
    return dict(model.named_parameters())


def test_two_gloo_ranks_match_one_process_and_resume(tmp_path: Path):
    res = torchrun(tmp_path / "ddp")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "x 2 ranks" in (tmp_path / "ddp" / "train.log").read_text()
    ckpt = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)
    assert ckpt["iteration"] == STEPS
    ref = reference_params(load_config(None, overrides()))
    for name, p in ref.items():
        torch.testing.assert_close(ckpt["model"][name], p.detach(), rtol=1e-4, atol=1e-5, msg=name)

    assert "warm-up ends" in (tmp_path / "ddp" / "train.log").read_text()
    # Resume in distributed mode: 7 iterations, then the same command to 14, equals 14 in one go.
    res = torchrun(tmp_path / "split", ["schedule.iterations=7"])
    assert res.returncode == 0, res.stderr[-3000:]
    res = torchrun(tmp_path / "split")
    assert res.returncode == 0, res.stderr[-3000:]
    split = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    for name in ref:
        torch.testing.assert_close(split["model"][name], ckpt["model"][name], rtol=1e-6, atol=1e-7, msg=name)
    # Rank 0 alone logs: one "training" line per invocation, and metrics averaged over both ranks.
    assert (tmp_path / "ddp" / "train.log").read_text().count("training resnet8") == 1


def test_sync_bn_on_cpu_is_a_clear_error(tmp_path: Path):
    res = torchrun(tmp_path / "sync", ["train.sync_bn=true"])
    assert res.returncode != 0
    # Every rank ends; the line names the rank and is printed once per node, not once per process.
    errors = [line for line in res.stderr.splitlines() if line.startswith("resnet: error:")]
    assert len(errors) == 1 and errors[0].startswith("resnet: error: rank 0: train.sync_bn needs CUDA")


def test_the_capturable_step_under_ddp_matches_one_process(tmp_path: Path):
    # train.cuda_graph=true on the CPU: the same step uncaptured, with DDP's gradient all-reduce inside it and
    # the warm-up check (all-reducing the running error) outside it; the warm-up ends where one process's does.
    res = torchrun(tmp_path / "graph", ["train.cuda_graph=true"])
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = torch.load(tmp_path / "graph" / "checkpoint.pt", weights_only=True)
    assert ckpt["iteration"] == STEPS and ckpt["schedule"]["warmup_ended_at"] == 10
    ref = reference_params(load_config(None, overrides()))
    for name, p in ref.items():
        torch.testing.assert_close(ckpt["model"][name], p.detach(), rtol=1e-4, atol=1e-5, msg=name)
    assert "capturable step" in (tmp_path / "graph" / "train.log").read_text()
