"""Elastic restarts: ``torchrun --max-restarts=2`` restarts the group after one worker is SIGKILLed (mid-run,
or half-way through writing a checkpoint); the run resumes from its last checkpoint and ends with the
weights AND metrics.jsonl of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest
import torch

from launch import STANDALONE, finish, killing, logged_iteration, sets, torchrun, wait_for, worker_pids
from resnet.train.metrics_log import read_metrics
from resnet.train.rundir import read_invocations

from conftest import ROOT, tiny_overrides

ITERATIONS = 120


def overrides() -> list[str]:
    return tiny_overrides(**{
        "schedule.iterations": ITERATIONS, "schedule.milestones": [80], "train.log_every": 5,
        "train.eval_every": 40, "train.checkpoint_every": 20,
    })  # fmt: skip


def timeless(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "img_per_s"} for r in read_metrics(run / "metrics.jsonl")]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The uninterrupted run both cases are compared with."""
    root = tmp_path_factory.mktemp("straight")
    (root / "tiny.yaml").write_text("description: elastic test\n")
    args = [str(root / "tiny.yaml"), "--out", str(root / "run"), *sets(overrides())]
    (status, _, err), = finish(torchrun(STANDALONE, args))  # fmt: skip
    assert status == 0, err[-3000:]
    return root / "run"


def check_same_as(run: Path, straight: Path) -> None:
    a, b = (torch.load(r / "checkpoint.pt", weights_only=True) for r in (run, straight))
    assert a["iteration"] == b["iteration"] == ITERATIONS
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert timeless(run) == timeless(straight)
    assert len(read_invocations(run)) == 2  # the group was restarted once, and resumed
    assert not list(run.glob(".*.tmp"))  # a torn temporary checkpoint was cleared by the restart


def launch(tmp_path: Path, **env: str):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("description: elastic test\n")
    run = tmp_path / "run"
    tag = uuid.uuid4().hex
    proc = torchrun([*STANDALONE, "--max-restarts=2"], [str(recipe), "--out", str(run), *sets(overrides())],
                    RESNET_TEST_TAG=tag, **env)  # fmt: skip
    return proc, run, tag


def test_a_worker_killed_mid_run_restarts_the_group_which_resumes(tmp_path: Path, straight: Path):
    proc, run, tag = launch(tmp_path)
    with killing(proc):
        wait_for(lambda: logged_iteration(run) >= 25, "iteration 25")  # past the first checkpoint (20)
        (rank1,) = worker_pids(tag, rank=1)
        os.kill(rank1, signal.SIGKILL)
        (status, _, err), = finish(proc)  # fmt: skip
    assert status == 0, err[-3000:]
    assert logged_iteration(run) == ITERATIONS and 0 < logged_iteration(run)
    check_same_as(run, straight)


@pytest.mark.slow  # about 35 s on 2 busy cores; the mid-run case above holds the restart in CI
def test_a_worker_killed_while_writing_a_checkpoint_restarts_from_the_one_before(tmp_path: Path, straight: Path):
    proc, run, _ = launch(tmp_path, RESNET_TEST_KILL_AT="60", PYTHONPATH=str(ROOT / "tests" / "kill_in_checkpoint"))
    (status, _, err), = finish(proc)  # fmt: skip
    assert status == 0, err[-3000:]
    log = (run / "train.log").read_text()
    assert "resuming resnet8 on digits (1293 train, 144 val, 360 test) at iteration 40/" in log
    check_same_as(run, straight)
