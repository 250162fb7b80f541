"""Shortened schedules at any length, the dry run's checks, the first log line, and the command line's hints."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

import resnet.cli as cli
from resnet.config import load_config, shortened_schedule
from resnet.errors import UserError
from resnet.train.runtime import choose_threads
from resnet.train.schedule import describe_schedule, lr_drops

from conftest import HANG

SRC = Path(__file__).resolve().parents[1] / "src"


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        code = cli.main(list(argv))
    finally:
        sys.stdout, sys.stderr = old
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("n", [1, 2, 3, 5, 64])
def test_every_shortened_length_is_a_valid_recipe(n: int):
    for recipe in ("cifar10/resnet20", "cifar10/resnet110", "demo/digits"):
        cfg = load_config(recipe)
        keys = shortened_schedule(cfg, n)
        cfg = load_config(recipe, [f"{k}={v}" for k, v in keys.items()])  # validated, as train would
        assert all(1 <= m for m in cfg.schedule.milestones)


def test_coinciding_and_unreached_milestones_are_described_as_they_happen():
    assert lr_drops([1, 1], 0.1, 0.1, 2) == [(1, 2, pytest.approx(0.001))]
    assert lr_drops([1, 1], 0.1, 0.1, 1) == []
    cfg = load_config("cifar10/resnet20", ["schedule.iterations=2", "schedule.milestones=[1, 1]"])
    line = describe_schedule(cfg)
    assert "/100 at 1 (lr 0.001)" in line and "over 2 iterations" in line and "1 (lr 0.01)" not in line
    # A run trained to 40 of a 150-iteration recipe's milestones: none of them is reached.
    cfg = load_config("cifar10/resnet20", ["schedule.iterations=40", "schedule.milestones=[75, 112]"])
    line = describe_schedule(cfg)
    assert "lr 0.1 constant" in line and "not reached" in line and "/10 at 75" not in line
    one = load_config("cifar10/resnet20", ["schedule.iterations=1", "schedule.milestones=[1, 1]"])
    assert "over 1 iteration (milestones 1, 1 not reached);" in describe_schedule(one)


def test_train_one_iteration_then_again_says_it_is_finished(tmp_path: Path):
    out = tmp_path / "d1"
    code, text, err = run_cli("train", "demo/digits", "--iterations", "1", "--out", str(out), "--threads", "1")
    assert code == 0, err
    first = text.splitlines()[0]
    assert "lr 0.1 constant" in first and "over 1 iteration (milestones" in first and "1 thread (requested)" in first
    assert "done: 1 iteration;" in text
    code, text, err = run_cli("train", str(out))
    assert code == 0, err
    assert "is finished (1/1 iterations): nothing to train" in text and "resuming" not in text


def test_dry_run_refuses_what_the_real_run_refuses(tmp_path: Path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my own file")
    for extra in ([], ["--dry-run"]):
        code, _, err = run_cli("train", "demo/digits", "--iterations", "1", "--out", str(mine), *extra)
        assert code == 2 and "holds other files (notes.txt)" in err
    big = ["--set", "train.batch_size=2000", "--iterations", "1", "--threads", "1"]
    for extra in ([], ["--dry-run"]):
        code, _, err = run_cli("train", "demo/digits", *big, "--out", str(tmp_path / f"b{len(extra)}"), *extra)
        assert code == 2 and "fewer than one batch of 2000" in err, err
    assert (mine / "notes.txt").read_text() == "my own file"


def test_threads_policy_respects_the_flag_then_the_environment_then_the_free_cores():
    assert choose_threads(3, env={"OMP_NUM_THREADS": "2"}) == (3, "requested")
    assert choose_threads(None, env={"OMP_NUM_THREADS": "2"}) == (2, "OMP_NUM_THREADS")
    n, why = choose_threads(None, env={})
    cores = len(os.sched_getaffinity(0))
    assert 1 <= n <= cores and why.startswith("auto:")
    n_workers, _ = choose_threads(None, workers=cores + 4, env={})
    assert n_workers == 1  # decode workers take the cores first
    with pytest.raises(UserError):
        choose_threads(0)


def test_a_mistyped_option_gets_did_you_mean():
    code, _, err = run_cli("train", "cifar10/resnet20", "--iteratons", "3")
    assert code == 2 and "unknown option --iteratons; did you mean --iterations" in err
    code, _, err = run_cli("data", "download", "cifar10", "--dedline", "3")
    assert code == 2 and "resnet data download: unknown option --dedline; did you mean --deadline" in err


def help_of(*words: str) -> str:
    parser = cli.build_parser()
    for w in words:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[w]
    return parser.format_help()


def test_help_shows_every_default_once_and_describes_every_command():
    train = " ".join(help_of("train").split())
    assert "the recipe's schedule.iterations" in train and "the recipe's train.seed, 0" in train
    assert "the recipe's train.checkpoint_every" in train and "OMP_NUM_THREADS" in train
    download = help_of("data", "download")
    assert download.count("default") == 2 and "(default: data)" in download and "(default: 3600.0)" in download
    for words in (("demo",), ("models",)):
        usage, _, rest = help_of(*words).partition("\n\n")
        assert not rest.startswith(("positional", "options")), words  # a description comes first


def test_resnet_models_is_reachable_from_import_resnet_alone():
    code = "import resnet; m = resnet.models.cifar_resnet(20); print(type(m).__name__)"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=HANG)
    assert res.returncode == 0 and res.stdout.strip() == "ResNet", res.stderr


def test_no_test_waits_with_a_wall_clock_limit_a_slow_machine_could_hit():
    """Waits on processes and threads use conftest.HANG (a ceiling against hangs); a literal limit below it
    is a speed test in disguise (a 300 s wait failed `make test` on a busy machine)."""
    import re

    short = []
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        for no, line in enumerate(path.read_text().splitlines(), 1):
            for m in re.finditer(r"(?:timeout\s*[=:]\s*(?:float\s*=\s*)?|\.join\()(\d+(?:\.\d+)?)", line):
                # test_gpu runs on the GPU machine only; reader.join waits for a call that returns at once
                if float(m.group(1)) < HANG and "reader.join" not in line and "gpu" not in path.name:
                    short.append(f"{path.name}:{no}: {line.strip()}")
    assert not short, "\n".join(short)


def test_readme_names_the_test_data_variable_and_keeps_the_editable_install():
    readme = (SRC.parent / "README.md").read_text()
    assert "RESNET_CIFAR_SUBSET" in readme
    assert "pip install -e '.[export]'" in readme and "pip install '.[export]'            #" not in readme


def test_applicable_config_names_the_shortcut_a_net_uses():
    from resnet.analysis.report import applicable_config

    resnet = applicable_config(load_config("demo/digits", ["model.name=resnet56"]).to_dict())
    assert resnet["model.shortcut"] == "A"  # the model's default, not None
    plain = applicable_config(load_config("demo/digits", ["model.name=plain56"]).to_dict())
    assert "model.shortcut" not in plain  # a plain net has no shortcuts
    imagenet = applicable_config(load_config("imagenet/resnet50").to_dict())
    assert imagenet["model.shortcut"] == "B"


def test_progress_bars_stay_out_of_logs_and_done_follows_the_last_bar(tmp_path: Path):
    """Not a terminal (a log file): no bar redraws (\\r) in the output; on a terminal "done:" comes after the
    bar is closed, so it prints below it."""
    from resnet.train.console import Console

    code, text, err = run_cli("train", "demo/digits", "--iterations", "2", "--out", str(tmp_path / "r"))
    assert code == 0 and "\r" not in text + err
    events = []

    class Bar:
        n = 0

        def close(self):
            events.append("closed")

        def write(self, message):
            events.append(message)

    console = Console(None, 2, 0, echo=True)
    console.bar = Bar()
    console.end_bar()
    console.log("done: 2 iterations")
    assert events == ["closed"]  # the bar closed first; "done:" then printed below it (plain print)
