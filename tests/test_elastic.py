"""Elastic restarts and preemption: ``torchrun --max-restarts=2`` restarts the group after one worker is
SIGKILLed (mid-run, or half-way through writing a checkpoint), and a scheduler's signal to the launch script
(docs/cluster: SLURM's sbatch script, the Kubernetes entry point) stops every rank at one iteration with a
checkpoint and status 143; each time the run resumes and ends with the weights AND metrics.jsonl of an
uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch

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
from resnet.rundir_format import read_invocations, read_metrics

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


def check_same_as(run: Path, straight: Path, err: str = "") -> None:
    a, b = (torch.load(r / "checkpoint.pt", weights_only=True) for r in (run, straight))
    assert a["iteration"] == b["iteration"] == ITERATIONS
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert timeless(run) == timeless(straight)
    assert len(read_invocations(run)) == 2, err[-3000:]  # the group was restarted once, and resumed
    assert not list(run.glob(".*.tmp"))  # a torn temporary checkpoint was cleared by the restart


def launch(tmp_path: Path, **env: str):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("description: elastic test\n")
    run = tmp_path / "run"
    tag = uuid.uuid4().hex
    proc = torchrun([*STANDALONE, "--max-restarts=2"], [str(recipe), "--out", str(run), *sets(overrides())],
                    RESNET_TEST_TAG=tag, RESNET_DIST_TIMEOUT="120", **env)  # fmt: skip
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
    check_same_as(run, straight, err)


def test_a_worker_killed_while_writing_a_checkpoint_restarts_from_the_one_before(tmp_path: Path, straight: Path):
    proc, run, _ = launch(tmp_path, RESNET_TEST_KILL_AT="60", PYTHONPATH=str(ROOT / "tests" / "kill_in_checkpoint"))
    (status, _, err), = finish(proc)  # fmt: skip
    assert status == 0, err[-3000:]
    log = (run / "train.log").read_text()
    assert "resuming resnet8 on digits (1293 train, 144 val, 360 test) at iteration 40/" in log
    check_same_as(run, straight, err)


@pytest.mark.slow  # two launchers restarting together: 16-18 s at load 6-7 on 2 cores
def test_two_nodes_restart_together_when_one_nodes_worker_is_killed(tmp_path: Path, straight: Path):
    # Each launcher counts its own restarts; the round's namespace must not depend on that count.
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("description: elastic test\n")
    run, port, tag = tmp_path / "run", free_port(), uuid.uuid4().hex
    args = [str(recipe), "--out", str(run), *sets(overrides())]
    procs = [torchrun(two_nodes(port, node, "--max-restarts=2"), args, RESNET_TEST_TAG=tag, RESNET_DIST_TIMEOUT="120")
             for node in (0, 1)]  # fmt: skip
    with killing(*procs):
        wait_for(lambda: logged_iteration(run) >= 25, "iteration 25")
        (rank1,) = worker_pids(tag, rank=1)
        os.kill(rank1, signal.SIGKILL)
        results = finish(*procs)
    assert [status for status, _, _ in results] == [0, 0], results[1][2][-3000:]
    check_same_as(run, straight, results[0][2] + results[1][2])


def test_each_round_of_workers_forms_its_group_in_a_namespace_no_earlier_round_wrote():
    """torchrun's launcher keeps one store for every round; a restarted round must not read the dead round's
    keys (its gloo addresses): each round agrees on a fresh namespace, whatever an earlier round left."""
    import datetime
    import threading

    import torch.distributed as dist

    from resnet.train.distributed import _round_token

    from conftest import HANG

    store = dist.TCPStore("127.0.0.1", 0, is_master=True, timeout=datetime.timedelta(seconds=HANG))
    tokens: list[list[str]] = []
    for stale in (None, "a-dead-rank-1s-nonce", None):  # round 2 starts over the keys a dead round 1 left
        if stale:
            store.set("resnet/hello/1", stale)
            store.set("resnet/hello/2", stale)
        found = [""] * 3

        def join(rank: int, found=found) -> None:  # one client per rank, as each process has its own
            client = dist.TCPStore("127.0.0.1", store.port, is_master=False, timeout=datetime.timedelta(seconds=HANG))
            found[rank] = _round_token(client, rank, 3, datetime.timedelta(seconds=HANG))

        threads = [threading.Thread(target=join, args=(r,)) for r in (2, 1, 0)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(HANG)
        assert not any(t.is_alive() for t in threads)
        tokens.append(found)
    assert all(len(set(ts)) == 1 and ts[0] for ts in tokens)  # every rank of a round: one name
    assert len({ts[0] for ts in tokens}) == 3  # every round: a name of its own


def fake_cluster_tools(folder: Path) -> dict[str, str]:
    """``srun`` that runs its command here, ``scontrol`` that names this host and records requeues; PATH
    with them first, then this Python's torchrun."""
    folder.mkdir()
    (folder / "srun").write_text('#!/bin/bash\nwhile [[ "$1" == -* ]]; do shift; done\nexec "$@"\n')
    (folder / "scontrol").write_text(
        '#!/bin/bash\nif [ "$1 $2" = "show hostnames" ]; then echo 127.0.0.1; else echo "$@" >> "$SCONTROL_LOG"; fi\n'
    )
    for tool in ("srun", "scontrol"):
        (folder / tool).chmod(0o755)
    return {"PATH": os.pathsep.join([str(folder), str(Path(sys.executable).parent), os.environ["PATH"]])}


def run_script(script: Path, tmp_path: Path, extra_env: dict[str, str]) -> subprocess.Popen:
    args = ["--set", "train.device=cpu", *sets(overrides())]
    pipe = subprocess.PIPE
    return subprocess.Popen(["bash", str(script), *args], env=env(RESNET_TEST_TAG="script", **extra_env),
                            stdout=pipe, stderr=pipe, text=True, start_new_session=True)  # fmt: skip


@pytest.mark.slow  # two launches of the script: 15-17 s each at load 6-7 on 2 cores
@pytest.mark.parametrize("kind", ["sbatch", "kubernetes"])
def test_a_preempted_job_stops_every_rank_checkpoints_and_resumes_bit_exactly(kind, tmp_path: Path, straight: Path):
    # The scheduler's signal goes to the script alone (SLURM: SIGUSR1 90 s early to the batch shell;
    # Kubernetes: SIGTERM to PID 1); the script passes SIGTERM to torchrun, torchrun to every rank.
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text("description: elastic test\n")
    run, port = tmp_path / "run", str(free_port())
    common = {"RECIPE": str(recipe), "OUT": str(run), "PROCS_PER_NODE": "2", "PET_NPROC_PER_NODE": "2",
              "RESNET_TEST_STOPS": str(tmp_path), "PYTHONPATH": str(ROOT / "tests" / "record_stops")}  # fmt: skip
    if kind == "sbatch":
        script, signum = ROOT / "docs/cluster/resnet.sbatch", signal.SIGUSR1
        extra = {**fake_cluster_tools(tmp_path / "bin"), "SLURM_JOB_ID": "4242", "SLURM_NNODES": "1",
                 "SLURM_JOB_NODELIST": "node001", "SCONTROL_LOG": str(tmp_path / "scontrol.log"),
                 "RDZV_PORT": port}  # fmt: skip
    else:
        script, signum = ROOT / "docs/cluster/entrypoint.sh", signal.SIGTERM
        extra = {"PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
                 "MASTER_ADDR": "127.0.0.1", "PET_NNODES": "1", "RDZV_PORT": port}  # fmt: skip
    proc = run_script(script, tmp_path, {**common, **extra})
    with killing(proc):
        wait_for(lambda: logged_iteration(run) >= 25, "iteration 25")
        os.kill(proc.pid, signum)
        (status, _, err), = finish(proc)  # fmt: skip
    assert status == 143, err[-3000:]
    stopped = torch.load(run / "checkpoint.pt", weights_only=True)["iteration"]
    assert 25 <= stopped < ITERATIONS and stopped % 10 == 0  # the ranks agree on a stop every 10 iterations
    assert err.count(f"resnet: stopped by SIGTERM at iteration {stopped}; checkpoint written") == 1
    stops = sorted((tmp_path / "stops.txt").read_text().splitlines())
    assert stops == [f"0 {stopped}", f"1 {stopped}"]  # every rank stopped, all at the checkpoint's iteration
    if kind == "sbatch":
        assert (tmp_path / "scontrol.log").read_text() == "requeue 4242\n"
    (status, _, err), = finish(run_script(script, tmp_path, {**common, **extra}))  # the requeued job  # fmt: skip
    assert status == 0, err[-3000:]
    assert len((tmp_path / "stops.txt").read_text().splitlines()) == 2  # the resumed job ran to the end
    check_same_as(run, straight)
