"""Every outside file is opened through the one reader, :func:`resnet.io.open_input`: a named pipe, a device or
a file swapped for one after a check by name is refused in one line on the open descriptor, never waited on,
and image files are bounded in bytes as well as in pixels."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from resnet.checkpoint import load_file, save_checkpoint
from resnet.data import fast_augment, transforms
from resnet.data.cifar import load_cifar
from resnet.data.transforms import load_image
from resnet.errors import UserError
from resnet.interop.predict import Predictor
from resnet.models import build_network

from conftest import HANG

PIPE = "not a regular file (a named pipe)"


def outcome(call: Callable[[], Any]) -> Any:
    """What ``call()`` returns or raises, in a thread: a reader that waits on a FIFO fails the test, not hangs it."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(call())
        except BaseException as e:  # noqa: BLE001  (handed to the test thread)
            result.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG)
    assert result, "the reader waited on a named pipe"
    return result[0]


def refusal(call: Callable[[], Any]) -> str:
    """The one-line ``UserError`` message ``call()`` raises."""
    error = outcome(call)
    assert isinstance(error, UserError), f"expected a UserError, got {error!r}"
    assert "\n" not in str(error)
    return str(error)


def swapped_after_check(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """``Path.is_file`` says yes for files called ``name``: as if a regular file were swapped for a FIFO between
    a reader's check by name and its open."""
    real = Path.is_file
    monkeypatch.setattr(Path, "is_file", lambda self: self.name == name or real(self))


def photo(path: Path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)).save(path)
    return path


def test_predict_skips_a_fifo_and_a_dev_zero_link_called_jpg_in_one_line_each(tmp_path: Path):
    model = build_network("resnet20")
    ckpt = tmp_path / "resnet20.pt"
    save_checkpoint(ckpt, {"model": model.state_dict(), "model_name": "resnet20", "model_kwargs": {},
                           "preprocessing": {"kind": "channel_mean_std", "mean": torch.zeros(3, 1, 1),
                                             "std": torch.ones(3, 1, 1)},
                           "classes": [f"c{i}" for i in range(10)], "input_size": [3, 32, 32]})  # fmt: skip
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    paths = [tmp_path / "pipe.jpg", tmp_path / "zero.jpg", photo(tmp_path / "ok.png")]
    report = outcome(lambda: Predictor.from_file(ckpt).predict(paths, progress=False))
    assert [p.path for p in report.predictions] == [str(tmp_path / "ok.png")]
    reasons = dict(report.skipped)
    assert f"pipe.jpg: {PIPE}" in reasons[str(paths[0])]
    assert "zero.jpg: not a regular file (a device or socket)" in reasons[str(paths[1])]
    assert all("\n" not in r for r in reasons.values())


def test_an_image_file_beyond_the_byte_bound_is_refused_unread(tmp_path: Path, monkeypatch):
    path = photo(tmp_path / "big.png")
    assert load_image(path).shape == (3, 40, 48)
    monkeypatch.setattr(transforms, "MAX_IMAGE_BYTES", 100)
    size = path.stat().st_size
    assert f"big.png: {size:,} bytes, more than the 100 this reader accepts" in refusal(lambda: load_image(path))


def test_the_fast_decoder_refuses_a_fifo_in_both_of_its_readers(tmp_path: Path):
    pipe = tmp_path / "pipe.jpg"
    os.mkfifo(pipe)
    g = torch.Generator().manual_seed(0)
    assert PIPE in refusal(lambda: fast_augment.decode_scale_crop_flip(pipe, g, (36, 40), 32))
    # simplejpeg's path reads the file again by name: through the one reader too (it fails before decoding)
    assert PIPE in refusal(lambda: fast_augment._simplejpeg_decode(pipe, "RGB"))


def test_a_checkpoint_swapped_for_a_fifo_after_its_check_is_refused_on_the_descriptor(tmp_path: Path, monkeypatch):
    model = build_network("resnet20")
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"model": model.state_dict()})
    assert set(load_file(good)) == {"format", "model"}
    os.mkfifo(tmp_path / "swapped.pt")
    swapped_after_check(monkeypatch, "swapped.pt")
    assert f"swapped.pt: {PIPE}" in refusal(lambda: load_file(tmp_path / "swapped.pt"))


def test_a_cifar_batch_swapped_for_a_fifo_after_its_check_is_refused(tmp_path: Path, monkeypatch, cifar_subset: Path):
    root = tmp_path / "cifar-10-batches-py"
    shutil.copytree(cifar_subset, root)
    assert len(load_cifar(root).test_y) > 0
    (root / "data_batch_3").unlink()
    os.mkfifo(root / "data_batch_3")
    swapped_after_check(monkeypatch, "data_batch_3")
    assert f"data_batch_3: {PIPE}" in refusal(lambda: load_cifar(root))


def test_a_run_config_swapped_for_a_fifo_is_a_problem_of_the_report_not_a_hang(tmp_path: Path, monkeypatch):
    from resnet.analysis.report import read_run

    run = tmp_path / "run"
    run.mkdir()
    os.mkfifo(run / "config.yaml")
    swapped_after_check(monkeypatch, "config.yaml")
    record = outcome(lambda: read_run("run", run))
    assert any(PIPE in p for p in record.problems), record.problems
