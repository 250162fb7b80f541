"""Failures under torchrun end every rank within a bounded time, each with one line naming the rank and the
cause; no rank waits forever in a collective that another rank never joins."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launch import (
    STANDALONE,
    env,
    finish,
    free_port,
    killing,
    logged_iteration,
    sets,
    torchrun,
    two_nodes,
    wait_for,
    worker_pids,
)

from conftest import HANG, tiny_overrides
from folders import build_folder

#: How long a lone node waits at torchrun's rendezvous before giving up (what that test checks).
ALONE_AT_RENDEZVOUS_S = 5


def errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("resnet: error:")]


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text("description: failures\n")
    return path


@pytest.mark.slow  # a torchrun launch: 12-20 s on 2 busy cores
def test_a_world_size_that_does_not_divide_the_batch_is_one_line(recipe: Path, tmp_path: Path):
    args = [str(recipe), "--out", str(tmp_path / "run"), *sets(tiny_overrides())]
    (status, _, err), = finish(torchrun(["--standalone", "--nproc_per_node=3"], args))  # fmt: skip
    assert status != 0
    assert errors(err) == [
        "resnet: error: rank 0: train.batch_size 32 does not divide evenly over 3 ranks; choose a multiple of 3 "
        "(e.g. --set train.batch_size=30) or another number of processes"
    ]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # a torchrun launch: 12-20 s on 2 busy cores
def test_a_node_that_cannot_read_the_data_ends_both_nodes_with_its_line(recipe: Path, tmp_path: Path):
    data = build_folder(tmp_path / "images", per_class=4)
    missing = tmp_path / "not-mounted-here"
    port = free_port()
    nodes = []
    for node, folder in ((0, data), (1, missing)):
        overrides = tiny_overrides(**{"data.dataset": "imagefolder", "data.data_dir": str(folder),
                                      "data.crop": 32, "data.eval_resize": 36, "train.batch_size": 4})  # fmt: skip
        nodes.append(torchrun(two_nodes(port, node), [str(recipe), "--out", str(tmp_path / "run"), *sets(overrides)]))
    for status, _, err in finish(*nodes):
        assert status != 0
        (line,) = errors(err)  # one line on each node, naming the rank that failed and why
        assert line.startswith("resnet: error: rank 1: ") and str(missing) in line, line
    assert not (tmp_path / "run").exists()  # nothing written: the failure was agreed on before the run started


def test_ranks_that_never_all_arrive_give_up_with_one_line(recipe: Path, tmp_path: Path):
    # Rank 0 of 2 started by hand (as a scheduler without torchrun would), rank 1 never comes.
    port = free_port()
    extra = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
             "MASTER_PORT": str(port), "RESNET_DIST_TIMEOUT": "5"}  # fmt: skip
    cmd = [
        sys.executable,
        "-m",
        "resnet",
        "train",
        str(recipe),
        "--out",
        str(tmp_path / "run"),
        *sets(tiny_overrides()),
    ]
    start = time.monotonic()
    res = subprocess.run(cmd, env=env(**extra), capture_output=True, text=True, timeout=HANG)
    assert res.returncode == 2 and time.monotonic() - start < 600
    (line,) = errors(res.stderr)
    assert line.startswith(f"resnet: error: rank 0 of 2: the process group could not be formed at 127.0.0.1:{port}")
    assert "RESNET_DIST_TIMEOUT" in line and not (tmp_path / "run").exists()


@pytest.mark.slow  # a torchrun launch: 12-20 s on 2 busy cores
def test_a_node_alone_gives_up_its_rendezvous(recipe: Path, tmp_path: Path):
    # torchrun's own rendezvous (before any rank exists) is bounded by --rdzv_conf join_timeout.
    launcher = two_nodes(free_port(), 0)
    launcher[-1] = f"--rdzv_conf=join_timeout={ALONE_AT_RENDEZVOUS_S}"  # the limit under test, not a wait
    (status, _, err), = finish(torchrun(launcher, [str(recipe), "--out", str(tmp_path / "run")]))  # fmt: skip
    assert status != 0 and "RendezvousTimeoutError" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # a torchrun launch: 12-20 s on 2 busy cores
def test_a_bad_timeout_setting_is_one_line(recipe: Path, tmp_path: Path):
    args = [str(recipe), "--out", str(tmp_path / "run"), *sets(tiny_overrides())]
    (status, _, err), = finish(torchrun(STANDALONE, args, RESNET_DIST_TIMEOUT="soon"))  # fmt: skip
    assert status != 0 and errors(err) == [
        "resnet: error: RESNET_DIST_TIMEOUT is 'soon'; set it to a number of seconds (e.g. 600), or unset it"
    ]


@pytest.mark.slow  # a torchrun launch: about 25 s on 2 busy cores
def test_a_rank_that_dies_mid_run_ends_the_others_with_one_line(recipe: Path, tmp_path: Path):
    run = tmp_path / "run"
    overrides = tiny_overrides(**{"schedule.iterations": 2000, "train.eval_every": 5000})
    proc = torchrun(STANDALONE, [str(recipe), "--out", str(run), *sets(overrides)], RESNET_TEST_TAG="dies")
    with killing(proc):
        wait_for(lambda: logged_iteration(run) >= 10, "iteration 10")
        (rank1,) = worker_pids("dies", rank=1)
        os.kill(rank1, signal.SIGKILL)
        (status, _, err), = finish(proc)  # fmt: skip
    assert status != 0 and "[rank0]: Traceback" not in err
    (line,) = errors(err)
    assert line.startswith("resnet: error: rank 0: another rank stopped or lost contact during training"), line
