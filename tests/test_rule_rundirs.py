"""Run directories: a run that lost its checkpoint is refused with the choices (``--restart`` keeps the old
metrics aside); a run killed before its first checkpoint starts again with ``resnet train RUN``; a
non-UTF-8 run directory name works and leaves nothing half-made; a FIFO among the run's files is refused."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from resnet.cli import main
from resnet.config import dump, load_config
from resnet.errors import UserError
from resnet.train.loop import fit

from conftest import tiny_overrides


@pytest.fixture
def run(trained_run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(trained_run, out)
    return out


def test_a_run_whose_checkpoint_is_gone_is_refused_with_the_choices(run: Path, capsys):
    metrics = (run / "metrics.jsonl").read_bytes()
    (run / "checkpoint.pt").unlink()
    assert main(["train", str(run)]) == 2
    err = capsys.readouterr().err
    assert "metrics up to iteration 12 but no checkpoint.pt" in err and "--restart" in err and "--out" in err
    assert err.count("\n") == 1
    assert (run / "metrics.jsonl").read_bytes() == metrics  # nothing rewritten


def test_restart_keeps_the_old_metrics_aside(run: Path):
    metrics = (run / "metrics.jsonl").read_bytes()
    (run / "checkpoint.pt").unlink()
    assert main(["train", str(run), "--restart"]) == 0
    assert (run / "metrics.jsonl.old").read_bytes() == metrics
    assert (run / "checkpoint.pt").is_file() and (run / "metrics.jsonl").read_bytes() != b""
    assert main(["train", str(run), "--restart"]) == 2  # a checkpoint exists now: nothing to restart


def test_a_checkpoint_replaced_by_a_fifo_is_refused_without_waiting(run: Path, capsys):
    (run / "checkpoint.pt").unlink()
    os.mkfifo(run / "checkpoint.pt")
    assert main(["train", str(run)]) == 2
    assert "checkpoint.pt is a named pipe" in capsys.readouterr().err


def test_a_run_killed_before_its_first_checkpoint_starts_again(tmp_path: Path, monkeypatch):
    """A kill while the data loads leaves the lock and the recorded recipe: ``resnet train RUN`` retries."""
    import resnet.train.loop as loop

    out = tmp_path / "run"
    seen = {}

    def killed(cfg):  # what a SIGKILL while the data loads leaves behind is what exists at this moment
        seen["files"] = sorted(p.name for p in out.iterdir())
        raise SystemExit(137)

    monkeypatch.setattr(loop, "open_source", killed)
    with pytest.raises(SystemExit):
        fit(load_config(None, tiny_overrides()), out, echo=False)
    assert "config.yaml" in seen["files"]
    monkeypatch.undo()
    # rebuild what the kill left (the SystemExit above unwound and tidied up; a SIGKILL does not): a stale
    # lock of a dead process on this host, and the recipe
    out.mkdir(exist_ok=True)
    (out / "config.yaml").write_text(dump(load_config(None, tiny_overrides())))
    (out / ".lock").write_text(f"{socket.gethostname()} 999999\n")
    assert main(["train", str(out)]) == 0
    assert (out / "checkpoint.pt").is_file()
    # the recipe written early is taken back when the run fails before training: a bad --data-dir leaves nothing
    bad = tmp_path / "new" / "run"
    with pytest.raises(UserError):
        fit(load_config(None, tiny_overrides(**{"data.dataset": "cifar10", "data.data_dir": tmp_path / "no"})), bad)
    assert not (tmp_path / "new").exists()


def test_a_non_utf8_run_directory_works_and_resumes(tmp_path: Path, capsysbinary):
    out = os.fsdecode(bytes(tmp_path) + b"/run\xff")
    args = ["train", "demo/digits", "--out", out, *sum((["--set", o] for o in tiny_overrides()), [])]
    assert main(args) == 0, capsysbinary.readouterr().err
    assert main(["train", out]) == 0, capsysbinary.readouterr().err  # finished: resumed and done at once
    assert main(["plot", out, "--title", os.fsdecode(b"\xfe title")]) == 0, capsysbinary.readouterr().err
    assert Path(out, "curves.png").read_bytes().startswith(b"\x89PNG")
    assert os.fsencode(out).endswith(b"\xff") and (Path(out) / "checkpoint.pt").is_file()
