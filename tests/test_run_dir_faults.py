"""Run directories under faults and hostile neighbours: the lock, foreign folders, torn records, other data.

Each test is named after the defect it guards against (issue 12's list).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from resnet.config import load_config
from resnet.errors import UserError
from resnet.io import DirLock
from resnet.rundir_format import read_invocations
from resnet.train.loop import fit

from conftest import HANG, ROOT, tiny_overrides


def tiny(**extra: object):
    return load_config(None, tiny_overrides(**{"schedule.iterations": 2, **extra}))


def hold_lock(folder: Path) -> subprocess.Popen:
    """Another process that holds ``folder``'s lock until it is killed; returns once it holds it."""
    code = (
        "import sys, time; from pathlib import Path; from resnet.io import DirLock\n"
        "with DirLock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


# 1. The lock is taken before anything in the run directory is read.


def test_defect1_the_lock_is_taken_before_the_checkpoint_is_read(tmp_path: Path):
    run = tmp_path / "r"
    run.mkdir()
    holder = hold_lock(run)
    try:
        # A checkpoint being replaced by the holder; a second command must not even read it.
        (run / "checkpoint.pt").write_bytes(b"PK\x03\x04 half written")
        with pytest.raises(UserError, match=r"is being trained by process \d+ on host"):
            fit(tiny(), run, echo=False)
    finally:
        holder.kill()
        holder.wait()


def test_defect1_a_live_lock_is_never_taken_whatever_its_file_says(tmp_path: Path):
    run = tmp_path / "r"
    run.mkdir()
    holder = hold_lock(run)
    try:
        (run / ".lock").write_text(f"{socket.gethostname()} 999999999\n")  # looks stale; its holder lives
        with pytest.raises(UserError, match="is being trained by"):
            fit(tiny(), run, echo=False)
        assert (run / ".lock").is_file() and not (run / "checkpoint.pt").exists()
    finally:
        holder.kill()
        holder.wait()
    fit(tiny(), run, echo=False)  # killed: the kernel dropped its flock, so its lock is stale and taken over
    assert not (run / ".lock").exists() and (run / "checkpoint.pt").is_file()


def test_defect1_a_lock_from_another_host_names_it_and_how_to_clear_it(tmp_path: Path):
    run = tmp_path / "r"
    run.mkdir()
    (run / ".lock").write_text("gpu-node-7 4242\n")
    with pytest.raises(UserError, match=r"locked by process 4242 on host gpu-node-7.*delete .*\.lock and run again"):
        fit(tiny(), run, echo=False)
    assert (run / ".lock").read_text() == "gpu-node-7 4242\n"  # never deleted by us
    (run / ".lock").unlink()  # what the message says to do
    fit(tiny(), run, echo=False)


def _try_lock(folder: str, barrier, results) -> None:
    barrier.wait()
    try:
        with DirLock(Path(folder)):
            results.put("held")
            time.sleep(1.0)
    except UserError:
        results.put("refused")


def test_defect1_concurrent_starters_on_a_stale_lock_never_both_hold_it(tmp_path: Path):
    (tmp_path / ".lock").write_text(f"{socket.gethostname()} 999999999\n")  # left by a crash
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_try_lock, args=(str(tmp_path), barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(HANG)
    outcomes = sorted(results.get(timeout=HANG) for _ in procs)
    assert outcomes == ["held", "refused", "refused", "refused"]
    assert not (tmp_path / ".lock").exists()


def test_defect1_a_bad_data_dir_leaves_no_run_directory_behind(tmp_path: Path):
    out = tmp_path / "runs" / "new"
    with pytest.raises(UserError):
        fit(tiny(**{"data.dataset": "cifar10", "data.data_dir": str(tmp_path / "nowhere")}), out, echo=False)
    assert not (tmp_path / "runs").exists()


# 2. A folder of the user's own files is not a run directory.


def test_defect2_out_pointing_at_a_folder_of_other_files_is_refused(tmp_path: Path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("my: notes\n")
    (mine / "metrics.jsonl").write_text('{"mine": 1}\n')
    with pytest.raises(UserError, match=r"holds other files \(config.yaml, metrics.jsonl\) and no run"):
        fit(tiny(), mine, echo=False)
    assert (mine / "config.yaml").read_text() == "my: notes\n"
    assert (mine / "metrics.jsonl").read_text() == '{"mine": 1}\n'
    assert sorted(p.name for p in mine.iterdir()) == ["config.yaml", "metrics.jsonl"]
    empty = tmp_path / "empty"
    empty.mkdir()
    fit(tiny(), empty, echo=False)  # an empty folder is fine
    fit(tiny(**{"schedule.iterations": 4}), empty, echo=False)  # and, once a run, resumable


# 4. Invocation records survive a torn run.json.


def test_defect4_a_torn_run_json_loses_no_invocation_record(tmp_path: Path):
    run = tmp_path / "r"
    fit(tiny(), run, argv=["resnet", "train", "first"], echo=False)
    text = (run / "run.json").read_text()
    (run / "run.json").write_text(text[: len(text) // 2])  # torn by a crash or an editor
    fit(tiny(**{"schedule.iterations": 4}), run, argv=["resnet", "train", "second"], echo=False)
    commands = [i["command"] for i in json.loads((run / "run.json").read_text())["invocations"]]
    assert commands == ["resnet train first", "resnet train second"]
    with (run / "invocations.jsonl").open("a") as f:
        f.write('{"command": "killed mid-wri')  # a torn tail of the log itself
    fit(tiny(**{"schedule.iterations": 6}), run, argv=["resnet", "train", "third"], echo=False)
    commands = [i["command"] for i in read_invocations(run)]
    assert commands == ["resnet train first", "resnet train second", "resnet train third"]


def test_defect4_an_old_run_json_seeds_the_log_and_a_damaged_one_does_not_block_resume(tmp_path: Path):
    run = tmp_path / "r"
    fit(tiny(), run, argv=["resnet", "train", "first"], echo=False)
    (run / "invocations.jsonl").unlink()  # a run directory of the previous version: run.json alone
    fit(tiny(**{"schedule.iterations": 4}), run, argv=["resnet", "train", "second"], echo=False)
    assert [i["command"] for i in read_invocations(run)] == ["resnet train first", "resnet train second"]
    (run / "invocations.jsonl").unlink()
    (run / "run.json").write_text("[1, 2, 3]\n")  # a list, not the expected object
    fit(tiny(**{"schedule.iterations": 6}), run, argv=["resnet", "train", "third"], echo=False)
    assert [i["command"] for i in read_invocations(run)] == ["resnet train third"]
    assert (run / "run.json.damaged").read_text() == "[1, 2, 3]\n"  # what could not be read is kept aside


# 12. Resuming on other data is refused.


def relabelled_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    batch = dst / "data_batch_1"
    with batch.open("rb") as f:
        d = pickle.load(f, encoding="bytes")
    d[b"labels"] = [(y + 1) % 10 for y in d[b"labels"]]
    with batch.open("wb") as f:
        pickle.dump(d, f)
    return dst


def test_defect12_resuming_with_another_data_dir_is_refused(cifar_subset: Path, tmp_path: Path):
    def cifar(data_dir: Path, iterations: int):
        return tiny(**{"data.dataset": "cifar10", "data.data_dir": str(data_dir), "schedule.iterations": iterations,
                       "train.eval_every": 100})  # fmt: skip

    run = tmp_path / "r"
    fit(cifar(cifar_subset, 2), run, echo=False)
    stored = torch.load(run / "checkpoint.pt", weights_only=True)["data"]
    assert stored["sizes"]["train"] > 0 and len(stored["labels"]) == 64
    other = relabelled_copy(cifar_subset, tmp_path / "other")
    with pytest.raises(UserError, match=r"trained on other data .*same sizes but other labels"):
        fit(cifar(other, 4), run, echo=False)
    moved = shutil.copytree(cifar_subset, tmp_path / "moved")  # the same data elsewhere: fine
    fit(cifar(moved, 4), run, echo=False)
    assert torch.load(run / "checkpoint.pt", weights_only=True)["iteration"] == 4


# 18 (run-directory half). What a killed checkpoint write left is cleaned on the next start.


def test_defect18_torn_checkpoint_writes_are_cleaned_on_the_next_start(tmp_path: Path):
    run = tmp_path / "r"
    fit(tiny(**{"schedule.iterations": 4}), run, echo=False)
    torn = [run / ".checkpoint.pt.k1ll3d.tmp", run / ".metrics.jsonl.abc123.tmp"]
    for t in torn:
        t.write_bytes(b"half a checkpoint")
    (run / ".notes.txt").write_text("the user's own hidden file stays")
    fit(tiny(**{"schedule.iterations": 6}), run, echo=False)
    assert not any(t.exists() for t in torn)
    assert (run / ".notes.txt").read_text().startswith("the user's")
    assert torch.load(run / "checkpoint.pt", weights_only=True)["iteration"] == 6
