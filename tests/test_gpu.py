"""The CUDA path: numerics against the CPU, bf16 training, resume, the captured step, compile, DDP/NCCL.

Marked ``gpu`` and skipped without CUDA; ``benchmarks/gpu_check.py`` runs them first on a GPU machine
(``pytest -m gpu tests/test_gpu.py``). Tolerances are those of different kernels on different devices
(cuDNN's convolutions sum in another order than oneDNN's); TF32 is turned off where fp32 is compared.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnet.config import Config, ScheduleConfig, load_config
from resnet.data.datasets import load_dataset
from resnet.data.loader import DeviceLoader
from resnet.data.preprocess import Normalizer
from resnet.models import build_network
from resnet.rundir_format import read_metrics
from resnet.train.graphed import GraphedStep
from resnet.train.loop import fit
from resnet.train.meters import LossWindow
from resnet.train.multiseed import MultiSeedTrainer
from resnet.train.runtime import Runtime
from resnet.train.schedule import LRSchedule
from resnet.train.step import train_one_step

from conftest import tiny_overrides

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on a GPU machine)"),
]
CUDA = torch.device("cuda")


@pytest.fixture
def exact_fp32():
    """fp32 matmuls and convolutions without TF32 (its 10-bit mantissa would dominate every comparison)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def relative(a: dict, b: dict) -> float:
    keys = [k for k, t in a.items() if t.is_floating_point()]
    x = torch.cat([a[k].float().flatten().cpu() for k in keys])
    y = torch.cat([b[k].float().flatten().cpu() for k in keys])
    return ((x - y).norm() / x.norm()).item()


def cifar_arrays(cifar_subset: Path):
    cfg = Config()
    cfg.data.data_dir = str(cifar_subset)
    data = load_dataset(cfg.data)
    return torch.from_numpy(data.train_x), torch.from_numpy(data.train_y), Normalizer.fit("pixel_mean", data.train_x)


def test_one_step_on_cuda_matches_the_cpu(cifar_subset: Path, exact_fp32):
    images, labels, norm = cifar_arrays(cifar_subset)
    states = []
    for device in (torch.device("cpu"), CUDA):
        torch.manual_seed(0)
        model = build_network("resnet20").to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        x, y = DeviceLoader(images.to(device), labels.to(device), 128, norm, seed=0).next()
        loss, _ = train_one_step(model, opt, x.contiguous(), y, 0.1)
        states.append((loss.item(), model.state_dict()))
    (cpu_loss, cpu), (gpu_loss, gpu) = states
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-5)
    assert relative(cpu, gpu) < 1e-5


def subset_recipe(cifar_subset: Path, *extra: str) -> Config:
    return load_config(
        "cifar10/resnet20",
        ["model.name=resnet8", f"data.data_dir={cifar_subset}", "schedule.iterations=60", "train.batch_size=64",
         "train.log_every=5", "train.eval_every=60", "train.checkpoint_every=60", "train.device=cuda", *extra],
    )  # fmt: skip


@pytest.mark.parametrize("graph", ["false", "true"])
def test_bf16_training_lowers_the_loss_on_the_subset(cifar_subset: Path, tmp_path: Path, graph: str):
    summary = fit(subset_recipe(cifar_subset, f"train.cuda_graph={graph}"), tmp_path / "r", echo=False)
    train = [r for r in read_metrics(tmp_path / "r/metrics.jsonl") if r.get("split") == "train"]
    first, last = sum(r["loss"] for r in train[:2]) / 2, sum(r["loss"] for r in train[-2:]) / 2
    assert last < first - 0.15, (first, last)
    assert summary["test_error"] < 85.0
    first_line = (tmp_path / "r/train.log").read_text().splitlines()[0]
    assert "bf16" in first_line and ("CUDA graph" in first_line) == (graph == "true"), first_line


def warmup_recipe(**extra: object) -> Config:
    warm = {"schedule.iterations": 30, "schedule.milestones": [24, 27], "schedule.warmup_lr": 0.01,
            "schedule.warmup_until_error": 99.0, "schedule.warmup_window": 4, "train.device": "cuda",
            "train.precision": "fp32", "train.checkpoint_every": 10}  # fmt: skip
    return load_config(None, tiny_overrides(**{**warm, **extra}))


@pytest.fixture
def deterministic_cudnn():
    """cuDNN's deterministic kernels: otherwise atomics in some backward kernels differ run to run by ~1e-7,
    which 20 iterations at lr 0.1 amplify far beyond any tolerance a comparison could use."""
    old = torch.backends.cudnn.deterministic
    torch.backends.cudnn.deterministic = True
    yield
    torch.backends.cudnn.deterministic = old


@pytest.mark.parametrize("graph", ["false", "true"])
def test_resume_on_cuda_continues_the_run(tmp_path: Path, exact_fp32, deterministic_cudnn, graph: str):
    fit(warmup_recipe(**{"train.cuda_graph": graph}), tmp_path / "whole", echo=False)
    fit(warmup_recipe(**{"train.cuda_graph": graph, "schedule.iterations": 15}), tmp_path / "split", echo=False)
    fit(warmup_recipe(**{"train.cuda_graph": graph}), tmp_path / "split", echo=False)
    a = torch.load(tmp_path / "whole/checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "split/checkpoint.pt", weights_only=True)
    assert a["iteration"] == b["iteration"] == 30 and a["loader"] == b["loader"]
    assert a["schedule"]["warmup_ended_at"] == b["schedule"]["warmup_ended_at"] == 10
    assert relative(a["model"], b["model"]) < 1e-3


def test_graph_replay_equals_the_uncaptured_step(cifar_subset: Path, exact_fp32):
    images, labels, norm = cifar_arrays(cifar_subset)
    # Threshold above 100%: the warm-up ends at the first check (iteration 10), inside the graph's replays.
    cfg = ScheduleConfig(iterations=40, milestones=[60], warmup_lr=0.01, warmup_until_error=101.0, warmup_window=10)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    runs = []
    for capture in (False, True):
        torch.manual_seed(0)
        model = build_network("resnet20").to(CUDA)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, foreach=True)
        loader = DeviceLoader(images.to(CUDA), labels.to(CUDA), 128, norm, seed=0)
        schedule, window = LRSchedule(cfg, 0.1, CUDA), LossWindow(40, CUDA, 128, 1)
        step = GraphedStep(model, opt, schedule, loader, Runtime(CUDA, None, False), window, capture=capture)
        for it in range(40):
            step.run(it)
            window.filled += 1
        assert (step.graph is not None) == capture
        runs.append((step.read_back(), window.values[:40].clone(), model.state_dict()))
    torch.backends.cudnn.deterministic = False
    (ended_eager, losses_eager, eager), (ended_graph, losses_graph, graph) = runs
    assert ended_eager == ended_graph and ended_eager is not None and ended_eager[0] == 10
    assert torch.allclose(losses_eager, losses_graph, rtol=1e-5)
    assert relative(eager, graph) < 1e-5


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compile_modes_train(tmp_path: Path, mode: str):
    summary = fit(load_config(None, tiny_overrides(**{"train.device": "cuda", "train.compile": mode})),
                  tmp_path / "r", echo=False)  # fmt: skip
    assert summary["iterations"] == 12 and summary["test_error"] < 100.0


@pytest.mark.skipif(not torch.distributed.is_nccl_available(), reason="NCCL is not available")
@pytest.mark.parametrize("graph", ["false", "true"])
def test_torchrun_with_nccl_on_one_device(tmp_path: Path, graph: str):
    """One rank (NCCL refuses two ranks on one GPU): the process group, rank-0 duties and resume paths."""
    sets = tiny_overrides(**{"train.device": "cuda", "schedule.iterations": 16, "train.cuda_graph": graph})
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("description: nccl test\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
           "-m", "resnet", "train", str(recipe), "--out", str(tmp_path / "r"),
           *[a for s in sets for a in ("--set", s)]]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = torch.load(tmp_path / "r/checkpoint.pt", weights_only=True)
    assert ckpt["iteration"] == 16


def test_several_seeds_at_once_on_cuda(cifar_subset: Path):
    images, labels, norm = cifar_arrays(cifar_subset)
    cfg = subset_recipe(cifar_subset)
    rt = Runtime(CUDA, torch.bfloat16, True)
    multi = MultiSeedTrainer(cfg, [0, 1, 2], images.to(CUDA), labels.to(CUDA), norm, rt, 10)
    records = multi.run(60)
    first = torch.tensor([r["loss"] for r in records[:5]]).mean(0)
    last = torch.tensor([r["loss"] for r in records[-5:]]).mean(0)
    assert torch.isfinite(last).all() and (last < first).all(), (first, last)
