"""The input rule: every reader refuses non-regular files in one line (never waits on a FIFO), every YAML read
goes through safe_yaml (no aliases, no duplicate keys), every JSON read bounds its depth, any Pillow refusal
is one line, and an optional cache gives way on any write failure."""

from __future__ import annotations

import errno
import os
import shutil
import struct
import threading
import time
from pathlib import Path

import pytest

from resnet.cli import main
from resnet.errors import UserError

DEEP = "[" * 100_000 + "]" * 100_000
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


def finishes(args: list[str], capsys, within: float = 120.0) -> tuple[int, str]:
    """``main(args)`` in a thread: its status and stderr, failing (not hanging) if it waits on a FIFO."""
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(status=main(args)), daemon=True)
    thread.start()
    thread.join(within)
    assert not thread.is_alive(), f"{args} hangs"
    return result["status"], capsys.readouterr().err


@pytest.fixture
def run(trained_run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(trained_run, out)
    return out


def fifo(path: Path) -> Path:
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("name", ["train.log", "invocations.jsonl", "metrics.jsonl", "run.json"])
def test_a_fifo_in_a_run_directory_is_refused_by_train(run: Path, name: str, capsys):
    fifo(run / name)
    status, err = finishes(["train", str(run), "--set", "schedule.iterations=16"], capsys)
    assert status == 2 and f"{name} is a named pipe" in err and err.count("\n") == 1


def test_readers_of_a_run_refuse_fifos(run: Path, capsys):
    fifo(run / "metrics.jsonl")
    status, err = finishes(["plot", str(run)], capsys)
    assert status == 2 and "metrics.jsonl: not a regular file (a named pipe)" in err
    fifo(run / "config.yaml")
    status, err = finishes(["train", str(run), "--dry-run"], capsys)
    assert status == 2 and err.count("\n") == 1


def test_a_fifo_as_an_onnx_file_is_refused(tmp_path: Path, capsys):
    pytest.importorskip("onnx")
    status, err = finishes(["eval", str(fifo(tmp_path / "model.onnx"))], capsys)
    assert status == 2 and "not a regular file (a named pipe)" in err


def test_an_alias_bomb_in_a_run_config_is_refused_at_once(run: Path, capsys):
    # the bomb is where plot (the model name) and train (a recorded data folder) turn the value into text
    (run / "config.yaml").write_text(ALIAS_BOMB + "model: {name: *i}\ndata: {data_dir: *i}\n")
    start = time.perf_counter()
    status, err = finishes(["train", str(run), "--dry-run"], capsys, within=60)
    assert status == 2 and "aliases are not allowed" in err
    status, _ = finishes(["train", "demo/digits", "--out", str(run), "--dry-run"], capsys, within=60)
    status, _ = finishes(["plot", str(run)], capsys, within=60)  # the model name is optional there
    assert status == 0
    assert time.perf_counter() - start < 60


def test_a_key_given_twice_is_refused(tmp_path: Path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  name: resnet20\nmodel:\n  name: resnet56\n")
    status, err = finishes(["train", str(recipe), "--print-config"], capsys)
    assert status == 2 and "key 'model' given twice" in err


def test_deep_json_is_one_line_or_a_skipped_record(run: Path, capsys):
    from resnet.analysis.report import _read_json
    from resnet.rundir_format import read_invocations, read_metrics
    from resnet.safe_json import load_json

    with (run / "metrics.jsonl").open("a") as f:
        f.write(DEEP + "\n")
    skipped: list[str] = []
    assert len(read_metrics(run / "metrics.jsonl", skipped)) > 0 and len(skipped) == 1
    assert finishes(["plot", str(run)], capsys)[0] == 0
    (run / "summary.json").write_text(DEEP)
    problems: list[str] = []
    assert _read_json(run / "summary.json", problems) == {} and "nested 100,000 levels" in problems[0]
    with (run / "invocations.jsonl").open("a") as f:
        f.write(DEEP + "\n")
    assert len(read_invocations(run)) == 1
    with pytest.raises(UserError, match="nested 100,000 levels deep"):
        load_json(DEEP, "x")
    with pytest.raises(UserError, match="given twice"):
        load_json('{"a": 1, "a": 2}', "x")


def test_deep_json_in_onnx_metadata_is_one_line(run: Path, tmp_path: Path, capsys):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    assert main(["export", "--checkpoint", str(run), "--out", str(tmp_path / "m.onnx")]) == 0
    proto = onnx.load(str(tmp_path / "m.onnx"))
    for p in proto.metadata_props:
        if p.key == "resnet.metadata":  # the one description (model, classes, preprocessing, ...)
            p.value = DEEP
    onnx.save(proto, str(tmp_path / "m.onnx"))
    capsys.readouterr()
    status, err = finishes(["eval", str(tmp_path / "m.onnx")], capsys)
    assert status == 2 and "nested 100,000 levels" in err and err.count("\n") == 1


def test_any_pillow_refusal_is_one_line(tmp_path: Path, monkeypatch):
    from PIL import Image

    from resnet.data.transforms import load_image

    path = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(path)

    def broken_plugin(*args, **kwargs):
        raise struct.error("unpack requires a buffer of 4 bytes")

    monkeypatch.setattr(Image.Image, "load", broken_plugin)
    with pytest.raises(UserError, match=r"a\.png: unreadable image \(unpack requires"):
        load_image(path)


def test_a_full_cache_disk_does_not_block_image_folder_training(tmp_path: Path, monkeypatch):
    from resnet.data.imagefolder import scan

    from folders import build_folder

    root = build_folder(tmp_path / "images", per_class=2, val_per_class=1)
    monkeypatch.setenv("RESNET_CACHE", str(tmp_path / "cache"))

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    index = scan(root / "train")  # the cache write fails as a full disk does: the index is still built
    assert len(index.files) > 0
    assert not any(p.suffix == ".json" for p in (tmp_path / "cache").rglob("*"))
