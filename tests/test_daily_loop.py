"""The everyday loop at the command line, as a user runs it (``python -m resnet`` in a child process): train,
stop, resume by run directory, list recipes, print and dry-run a recipe, pipes and Ctrl-C."""

from __future__ import annotations

import argparse
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

from resnet.cli import build_parser
from resnet.cli.rundirs import resume_command
from resnet.config import config_roots, load_config

from conftest import HANG

SRC = Path(__file__).resolve().parents[1] / "src"
#: A ResNet-8 version of the ResNet-20 recipe: fast on a CPU, still the CIFAR recipe otherwise.
SMALL = ["--set", "model.name=resnet8", "--set", "train.batch_size=32", "--set", "train.log_every=2",
         "--set", "train.eval_every=30", "--device", "cpu"]  # fmt: skip


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def resnet(*args: str, cwd: Path | None = None, timeout: float = HANG) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "resnet", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env())


def start(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "resnet", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(pred, timeout: float = HANG) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and not pred():
        time.sleep(0.05)


def trained_some(run: Path) -> bool:
    log = run / "train.log"
    return log.is_file() and "iter" in log.read_text().split("training", 1)[-1]


def iteration(run: Path) -> int:
    return torch.load(run / "checkpoint.pt", weights_only=True)["iteration"]


def test_stop_then_resume_by_run_directory_from_anywhere(cifar_subset: Path, tmp_path: Path):
    (tmp_path / "data").symlink_to(cifar_subset)  # a relative --data-dir, as people type it
    first = ["train", "cifar10/resnet20", "--data-dir", "data", "--out", "run", "--iterations", "60", *SMALL]
    proc = start(*first, cwd=tmp_path)
    wait_for(lambda: trained_some(tmp_path / "run"))
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().endswith("Resume with: resnet train run") and "Traceback" not in err
    assert 0 < iteration(tmp_path / "run") < 60

    # The run directory alone, from another working directory: recipe, overrides and data folder recorded.
    (tmp_path / "elsewhere").mkdir()
    res = resnet("train", "../run", cwd=tmp_path / "elsewhere")
    assert res.returncode == 0, res.stderr[-2000:]
    assert iteration(tmp_path / "run") == 60
    cfg = yaml.safe_load((tmp_path / "run/config.yaml").read_text())
    assert cfg["data"]["data_dir"] == str(tmp_path / "data") and cfg["model"]["name"] == "resnet8"

    # The original command works again without --data-dir (the run is finished: it trains nothing more).
    # (--iterations scales the milestones too, so extending a run goes through --set schedule.iterations.)
    again = [a for a in first if a not in ("--data-dir", "data")]
    res = resnet(*again, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert iteration(tmp_path / "run") == 60
    commands = [i["command"] for i in json.loads((tmp_path / "run/run.json").read_text())["invocations"]]
    assert commands[1] == "resnet train ../run" and len(commands) == 3


def test_a_run_directory_refuses_a_changed_recipe_and_a_plain_folder_is_explained(tmp_path: Path):
    res = resnet("train", str(tmp_path))
    assert res.returncode == 2 and "without config.yaml" in res.stderr and "resnet recipes" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = resnet("train", "demo/digits", "--out", str(tmp_path / "r"), "--iterations", "4", *SMALL)
    assert res.returncode == 0, res.stderr[-2000:]
    res = resnet("train", str(tmp_path / "r"), "--set", "optim.lr=0.05")
    assert res.returncode == 2 and "different recipe" in res.stderr and "optim.lr" in res.stderr
    assert "--set schedule.iterations" not in res.stderr  # the hint is for --iterations only
    # --iterations scales the milestones with the run; the refusal says how to extend it instead.
    res = resnet("train", str(tmp_path / "r"), "--iterations", "8")
    assert res.returncode == 2 and "use --set schedule.iterations=8" in res.stderr, res.stderr
    res = resnet("train", str(tmp_path / "r"), "--iterations", "8", "--set", "optim.lr=0.05")
    assert res.returncode == 2 and "optim.lr" in res.stderr and "--set schedule.iterations" not in res.stderr
    res = resnet("train", str(tmp_path / "r"), "--set", "schedule.iterations=8")
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((tmp_path / "r/summary.json").read_text())["iterations"] == 8
    # The run's own config.yaml stands for the run: it continues there, no new run appears elsewhere.
    res = resnet("train", str(tmp_path / "r" / "config.yaml"), "--set", "schedule.iterations=10", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((tmp_path / "r/summary.json").read_text())["iterations"] == 10
    assert not (tmp_path / "runs").exists()
    # A run whose data folder has moved since: the message names the record and the way out.
    moved = tmp_path / "moved"
    printed = resnet("train", "cifar10/resnet20", "--data-dir", str(tmp_path / "gone"), "--print-config")
    moved.mkdir()
    (moved / "config.yaml").write_text(printed.stdout)
    res = resnet("train", str(moved))
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert f"{tmp_path / 'gone'} recorded in {moved / 'config.yaml'} does not exist" in res.stderr
    assert "pass --data-dir" in res.stderr


def test_resume_hint_under_torchrun_is_the_torchrun_command(tmp_path: Path):
    # What torchrun really puts in each worker's environment (read by the workers of a real 2-process launch).
    script = tmp_path / "hint.py"
    script.write_text("from pathlib import Path\nfrom resnet.cli.rundirs import resume_command\n"
                      "import os\nif os.environ['RANK'] == '0': print(resume_command(Path('runs/r50')))\n")  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG, env=env())
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "torchrun --standalone --nproc_per_node=2 -m resnet train runs/r50"
    # Two nodes of 8: the rendezvous is the user's; the run id is kept.
    multi = {"RANK": "3", "WORLD_SIZE": "16", "LOCAL_WORLD_SIZE": "8", "GROUP_WORLD_SIZE": "2",
             "TORCHELASTIC_RUN_ID": "r50"}  # fmt: skip
    hint = resume_command(Path("runs/r50"), multi)
    assert hint.startswith("torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d") and "--rdzv_id=r50" in hint
    assert resume_command(Path("runs/r50"), {}) == "resnet train runs/r50"


def test_recipes_are_listed_with_the_paper_result_they_reproduce():
    res = resnet("recipes")
    assert res.returncode == 0, res.stderr
    names = {p.relative_to(r).with_suffix("").as_posix() for r in config_roots() for p in r.rglob("*.yaml")}
    lines = {line.split()[0]: line for line in res.stdout.splitlines() if line.strip() and "/" in line.split()[0]}
    assert set(lines) == names and len(names) >= 22
    for line in lines.values():  # every recipe names the table or figure it belongs to
        assert "Table" in line or "Fig." in line, line
    assert "Table 6, 6.43% error" in lines["cifar10/resnet110"]
    assert resnet("train", "--list").stdout == res.stdout
    only = resnet("recipes", "cifar10/plain*").stdout
    assert "cifar10/plain56" in only and "resnet" not in only.split("\n\n")[0]


def test_every_flag_is_described_and_help_shows_defaults():
    def walk(parser: argparse.ArgumentParser, name: str):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, child in action.choices.items():
                    yield from walk(child, f"{name} {sub}")
            elif not isinstance(action, argparse._HelpAction):
                yield name, action

    bare = [f"{n}: {a.option_strings or a.dest}" for n, a in walk(build_parser(), "resnet") if not a.help]
    assert not bare
    demo = resnet("demo", "--help").stdout
    assert "(default: 500)" in demo and "(default: 20 56)" in demo and "(default: runs/demo)" in demo
    assert "(default: softmax)" in resnet("eval", "--help").stdout


def test_print_config_shows_the_resolved_recipe_with_overrides(tmp_path: Path):
    res = resnet("train", "cifar10/resnet110", "--set", "optim.lr=0.05", "--seed", "3", "--print-config")
    assert res.returncode == 0, res.stderr
    printed = yaml.safe_load(res.stdout)
    full = load_config("cifar10/resnet110", ["optim.lr=0.05", "train.seed=3"])
    whole = full.to_dict()
    assert all(whole[s][k] == v for s, keys in printed.items() if isinstance(keys, dict) for k, v in keys.items())
    assert printed["schedule"]["warmup_lr"] == 0.01 and not (Path("runs") / "cifar10-resnet110").exists()
    assert printed["optim"]["lr"] == 0.05 and printed["model"]["shortcut"] == "A"
    for imagenet_only in ("scale_min", "scale_max", "lighting", "eval_resize", "workers", "strict_decode"):
        assert imagenet_only not in printed["data"]
    assert "plateau_patience" not in printed["schedule"]


def test_dry_run_resolves_data_model_and_schedule_and_writes_nothing(cifar_subset: Path, tmp_path: Path):
    out = tmp_path / "never"
    res = resnet("train", "cifar10/resnet110", "--data-dir", str(cifar_subset), "--out", str(out), "--dry-run")
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert "5,085 train, 1,017 test" in text and "1,727,962 parameters" in text  # all 5,085: no val hold-out
    assert "64,000 iterations of batch 128" in text and "(39 iterations each)" in text
    assert "0.1; /10 at iteration 32,000 (lr 0.01), /10 at iteration 48,000 (lr 0.001)" in text
    assert "warm-up:    lr 0.01 until the running training error is below 80%" in text
    assert not out.exists()
    bad = resnet("train", "cifar10/resnet20", "--data-dir", str(tmp_path / "nothing"), "--dry-run")
    assert bad.returncode == 2 and "does not exist" in bad.stderr


def test_unknown_dataset_lists_every_kind():
    res = resnet("train", "cifar10/resnet20", "--set", "data.dataset=imagenet")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "cifar10, cifar100, digits, synthetic, imagefolder" in res.stderr


def test_a_closed_pipe_ends_quietly_with_status_0():
    cmd = [sys.executable, "-m", "resnet", "summary", "resnet152"]
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader (`head`) went away before the table was written
    _, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 0 and err == b""


def interrupted_at(marker: str, *args: str) -> subprocess.CompletedProcess:
    """Run a command and press Ctrl-C the moment the module ``marker`` has been imported (``-X importtime``
    reports each import on stderr as it completes), i.e. at a chosen stage of the command, not at a guess."""
    cmd = [sys.executable, "-X", "importtime", "-m", "resnet", *args]
    proc = subprocess.Popen(cmd, env=env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.split("|")[-1].strip() == marker:
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=HANG)
    assert any(marker in line for line in seen), f"{marker} was never imported"
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "".join(seen) + err)


@pytest.mark.parametrize(
    "marker",
    [
        "torch.nn.modules.conv",  # importing torch
        "resnet.cli.training",  # building the parser
        "resnet.data.cifar",  # reading the data files
        "resnet.train.loop",  # setting the run up
    ],
)
def test_ctrl_c_at_any_moment_prints_no_traceback(marker: str, cifar_subset: Path, tmp_path: Path):
    """Interrupted while importing, parsing, loading data or starting to train: one line, no traceback."""
    args = ["train", "cifar10/resnet20", "--data-dir", str(cifar_subset), "--out", str(tmp_path / "r"), *SMALL]
    res = interrupted_at(marker, *args, "--iterations", "40")
    assert "Traceback" not in res.stderr and "Exception ignored" not in res.stderr, res.stderr[-3000:]
    assert res.returncode in (130, 128 + signal.SIGINT), res.stderr[-3000:]


@pytest.mark.parametrize(
    ("command", "marker"),
    [
        ("eval", "resnet.interop.evaluate"),  # reading the checkpoint and the data, then evaluating
        ("eval", "resnet.data.datasets"),  # loading the digits for the evaluation
        ("plot", "matplotlib.pyplot"),  # drawing
    ],
)
def test_ctrl_c_while_evaluating_or_plotting_prints_no_traceback(command: str, marker: str, tmp_path: Path):
    from resnet.train.loop import fit

    from conftest import tiny_overrides

    fit(load_config(None, tiny_overrides(**{"schedule.iterations": 4})), tmp_path / "r", echo=False)
    res = interrupted_at(marker, command, str(tmp_path / "r"))
    assert "Traceback" not in res.stderr and "Exception ignored" not in res.stderr, res.stderr[-3000:]
    assert res.returncode == 130, res.stderr[-3000:]
