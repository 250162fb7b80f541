"""Damaged run-directory metadata and caches, a full disk, throughput timing, the umask (issue 12).

Each test is named after the defect it guards against.
"""

from __future__ import annotations

import json
import os
import types
from pathlib import Path

import pytest
import torch
import yaml

from resnet import io as io_mod
from resnet.analysis.report import read_run
from resnet.checkpoint import storage as ckpt_mod
from resnet.cli import main
from resnet.config import load_config
from resnet.errors import UserError
from resnet.experiments.registry import Options
from resnet.experiments.reproduce import reproduce
from resnet.rundir_format import read_metrics
from resnet.train.loop import fit
from test_reproduce import fake_run

from conftest import tiny_overrides


def tiny(**extra: object):
    return load_config(None, tiny_overrides(**{"schedule.iterations": 4, **extra}))


# 22. Damaged run-directory metadata: name it, never crash on it.


def test_defect22_damaged_metadata_does_not_crash_report_only(tmp_path: Path):
    runs = tmp_path / "runs"
    for name in ("plain20-s0", "resnet20-s0", "resnet56-s0", "plain56-s0"):
        fake_run(runs / name, name.split("-")[0], iterations=64_000, done=64_000, train_err=1.5, test_err=9.0)
    (runs / "plain20-s0/config.yaml").write_text("")  # emptied
    (runs / "resnet20-s0/run.json").write_text("[1, 2]\n")  # a list, not an object
    with (runs / "resnet56-s0/metrics.jsonl").open("a") as f:  # mistyped lines
        f.write(
            '{"iteration": "lots", "split": "test", "error": 1}\n[3]\n{"iteration": 9, "split": "val", "error": "x"}\n'
        )
    (runs / "plain56-s0/summary.json").write_text('{"iterations": "all", "test_error": [1]}')
    text = reproduce("cifar-fig6", Options(out=tmp_path, report_only=True)).read_text()
    assert "| plain20 | - | - | - | damaged (config.yaml is empty or not a mapping) |" in text
    assert "| resnet20 | 1.50 | 9.00 | 8.75 | finished |" in text  # run.json only feeds the metadata
    assert "| resnet56 | 1.50 | 9.00 | 6.97 | finished |" in text  # the damaged lines are skipped
    resnet56 = read_run("resnet56", runs / "resnet56-s0")
    assert resnet56.problems == ["metrics.jsonl: 3 damaged line(s) skipped (line 642, line 643, line 644)"]
    plain56 = read_run("plain56", runs / "plain56-s0")
    assert plain56.status == "partial" and "summary.json: mistyped iterations, test_error ignored" in plain56.problems


def test_defect22_damaged_metadata_does_not_block_resume(tmp_path: Path):
    run = tmp_path / "r"
    fit(tiny(), run, echo=False)
    (run / "config.yaml").write_text("")
    (run / "run.json").write_text("[]")
    (run / "summary.json").write_text("{torn")
    (run / "metrics.jsonl").write_text('{"iteration": "x"}\n[1]\n')
    fit(tiny(**{"schedule.iterations": 6}), run, echo=False)
    assert yaml.safe_load((run / "config.yaml").read_text())["schedule"]["iterations"] == 6
    assert [r["iteration"] for r in read_metrics(run / "metrics.jsonl") if r.get("split") == "train"] == [2, 4, 6]
    assert json.loads((run / "summary.json").read_text())["iterations"] == 6


def test_defect22_a_damaged_file_index_cache_is_rebuilt(tmp_path: Path, monkeypatch):
    from resnet.data import imagefolder

    from folders import build_folder

    monkeypatch.setenv("RESNET_CACHE", str(tmp_path / "cache"))
    root = build_folder(tmp_path / "imgs")
    first = imagefolder.scan(root / "train")
    for damage in ("[1, 2]", '{"classes": 5, "files": 3, "labels": null}', '{"files": ["a"], "labels": [0, 1]}'):
        for cache in (tmp_path / "cache/index").iterdir():
            cache.write_text(damage)
        again = imagefolder.scan(root / "train")
        assert (again.files, again.labels, again.classes) == (first.files, first.labels, first.classes)


def test_defect22_a_damaged_stats_cache_is_rebuilt(tmp_path: Path, monkeypatch):
    from resnet.data import imagefolder
    from resnet.data.folder_stats import estimate_stats

    from folders import build_folder

    monkeypatch.setenv("RESNET_CACHE", str(tmp_path / "cache"))
    index = imagefolder.scan(build_folder(tmp_path / "imgs") / "train")
    kwargs = {"resize": 40, "size": 32, "workers": 0}
    normalizer, _ = estimate_stats(index, "pixel_mean", 8, **kwargs)
    for damage in (b"", b"\x80\x04K\x05.", b"not a pickle at all"):
        for cache in (tmp_path / "cache/stats").iterdir():
            cache.write_bytes(damage)
        again, _ = estimate_stats(index, "pixel_mean", 8, **kwargs)
        assert torch.equal(again.mean, normalizer.mean)
    for cache in (tmp_path / "cache/stats").iterdir():
        torch.save({"normalizer": [1, 2], "lighting": "x"}, cache)
    again, _ = estimate_stats(index, "pixel_mean", 8, **kwargs)
    assert torch.equal(again.mean, normalizer.mean)


# 19. A full disk: one line naming the place; the previous checkpoint stays.


def torch_disk_full(obj, f):
    """What torch.save does when the disk fills up: its zip writer turns ENOSPC into "unexpected pos"."""
    f.write(b"partial")
    try:
        raise OSError(28, "No space left on device")
    except OSError:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 768 vs 662") from None


def test_defect19_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_previous(tmp_path: Path, monkeypatch):
    run = tmp_path / "r"
    fit(tiny(), run, echo=False)
    before = (run / "checkpoint.pt").read_bytes()
    monkeypatch.setattr(ckpt_mod.torch, "save", torch_disk_full)
    with pytest.raises(
        UserError, match=r"^no space left on .*/r \(writing checkpoint.pt\).*previous checkpoint.pt is kept$"
    ):
        fit(tiny(**{"schedule.iterations": 8}), run, echo=False)
    assert (run / "checkpoint.pt").read_bytes() == before
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")] and not (run / ".lock").exists()


def test_defect19_a_full_disk_during_convert_is_one_line(tmp_path: Path, monkeypatch, capsys):
    fit(tiny(), tmp_path / "r", echo=False)
    monkeypatch.setattr(ckpt_mod.torch, "save", torch_disk_full)
    assert main(["convert", str(tmp_path / "r"), "--to", str(tmp_path / "w.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"resnet: error: no space left on {tmp_path} (writing w.pt): free some space and run again"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


# 13. img/s counts training steps only, wherever eval and checkpoint points fall.


def test_defect13_throughput_excludes_evaluation_and_checkpoint_time(tmp_path: Path, monkeypatch):
    import resnet.train.meters as meters
    import resnet.train.trainer as loop
    from resnet.checkpoint import Checkpoint

    now = [0.0]  # a fake clock: each training step takes 1 s, each evaluation or checkpoint 1000 s
    monkeypatch.setattr(meters, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))

    def slow(seconds, real):
        def wrapped(*a, **k):
            now[0] += seconds
            return real(*a, **k)

        return wrapped

    monkeypatch.setattr(loop, "train_one_step", slow(1.0, loop.train_one_step))
    monkeypatch.setattr(loop, "evaluate_split", slow(1000.0, loop.evaluate_split))
    monkeypatch.setattr(Checkpoint, "save", slow(1000.0, Checkpoint.save))
    # Eval every 3 and checkpoints every 5 iterations: neither a multiple of log_every (4).
    cfg = tiny(**{"schedule.iterations": 12, "train.log_every": 4, "train.eval_every": 3, "train.checkpoint_every": 5})
    fit(cfg, tmp_path / "r", echo=False)
    train = [r for r in read_metrics(tmp_path / "r/metrics.jsonl") if r.get("split") == "train"]
    assert len(train) > 3 and all(r["img_per_s"] == pytest.approx(32.0) for r in train), train


# 23. The umask is read, never set (os.umask would change it for every thread for a moment).


def test_defect23_the_umask_is_read_without_setting_it(monkeypatch):
    old = os.umask(0o027)
    try:

        def forbidden(mask):
            raise AssertionError("os.umask called: it changes the umask of every thread")

        monkeypatch.setattr(io_mod.files.os, "umask", forbidden)
        assert io_mod.current_umask() == 0o027
    finally:
        monkeypatch.undo()
        os.umask(old)
