"""CIFAR loading on the genuine subset: both pickle encodings, archives, corrupt files, splits, statistics."""

from __future__ import annotations

import hashlib
import io
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from resnet.config import DataConfig
from resnet.data.cifar import load_cifar
from resnet.data.datasets import holdout, load_dataset
from resnet.data.preprocess import Normalizer
from resnet.errors import UserError

BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
MD5 = {  # the subset's README
    "data_batch_1": "a4555000a7d0b371de77572d7d795f55",
    "test_batch": "e2831ea7becdbb358e1a6153833b158e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}


def raw(path: Path, encoding: str) -> dict:
    with path.open("rb") as f:
        return pickle.load(f, encoding=encoding)


def test_fixture_is_the_genuine_subset(cifar_subset: Path):
    for name, md5 in MD5.items():
        assert hashlib.md5((cifar_subset / name).read_bytes()).hexdigest() == md5


def test_subset_loads_with_the_right_shapes_and_labels(cifar_subset: Path):
    c = load_cifar(cifar_subset)
    assert c.train_x.shape == (5085, 3, 32, 32) and c.train_x.dtype == np.uint8
    assert c.test_x.shape == (1017, 3, 32, 32)
    assert c.classes[:3] == ["airplane", "automobile", "bird"] and len(c.classes) == 10
    # The official first training image is a frog (6), the first test image a cat (3).
    assert c.train_y[0] == 6 and c.test_y[0] == 3
    # Class counts as the README states them: 83-120 per class per batch, 87-114 in the test batch.
    for i in range(5):
        counts = np.bincount(c.train_y[i * 1017 : (i + 1) * 1017], minlength=10)
        assert counts.min() >= 83 and counts.max() <= 120
    test_counts = np.bincount(c.test_y, minlength=10)
    assert test_counts.min() >= 87 and test_counts.max() <= 114


@pytest.mark.parametrize("encoding", ["latin1", "bytes"])
def test_loader_agrees_with_plain_pickle_under_both_encodings(cifar_subset: Path, encoding: str):
    c = load_cifar(cifar_subset)
    d = raw(cifar_subset / "data_batch_3", encoding)
    key = (lambda k: k.encode()) if encoding == "bytes" else (lambda k: k)
    data = np.asarray(d[key("data")]).reshape(-1, 3, 32, 32)
    np.testing.assert_array_equal(c.train_x[2 * 1017 : 3 * 1017], data)
    np.testing.assert_array_equal(c.train_y[2 * 1017 : 3 * 1017], d[key("labels")])
    # Channel layout: the first 1024 values of a row are the red plane, row-major.
    row = np.asarray(d[key("data")])[5]
    np.testing.assert_array_equal(c.train_x[2 * 1017 + 5, 0].ravel(), row[:1024])
    np.testing.assert_array_equal(c.train_x[2 * 1017 + 5, 2].ravel(), row[2048:])


def test_python3_pickles_with_str_keys_load_the_same(cifar_subset: Path, tmp_path: Path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [*BATCHES, "test_batch", "batches.meta"]:
        d = raw(cifar_subset / name, "latin1")  # str keys
        with (folder / name).open("wb") as f:
            pickle.dump(d, f, protocol=4)
    a, b = load_cifar(cifar_subset), load_cifar(tmp_path)  # the parent folder is accepted too
    np.testing.assert_array_equal(a.train_x, b.train_x)
    np.testing.assert_array_equal(a.test_y, b.test_y)


def test_loads_straight_from_the_tar_gz(cifar_subset: Path, tmp_path: Path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(cifar_subset, arcname="cifar-10-batches-py")
    a, b = load_cifar(cifar_subset), load_cifar(archive)
    np.testing.assert_array_equal(a.train_x, b.train_x)
    np.testing.assert_array_equal(a.test_x, b.test_x)


def copy_subset(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "cifar-10-batches-py"
    shutil.copytree(src, dst)
    return dst


def test_truncated_batch_names_the_file(cifar_subset: Path, tmp_path: Path):
    folder = copy_subset(cifar_subset, tmp_path)
    blob = (folder / "data_batch_4").read_bytes()
    (folder / "data_batch_4").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(UserError, match=r"data_batch_4: truncated or corrupt"):
        load_cifar(folder)


def test_garbage_and_missing_files(cifar_subset: Path, tmp_path: Path):
    folder = copy_subset(cifar_subset, tmp_path)
    (folder / "test_batch").write_bytes(b"not a pickle at all" * 10)
    with pytest.raises(UserError, match="test_batch"):
        load_cifar(folder)
    (folder / "data_batch_2").unlink()
    with pytest.raises(UserError, match="data_batch_2"):
        load_cifar(folder)
    with pytest.raises(UserError, match="does not exist"):
        load_cifar(tmp_path / "nowhere")


def test_a_pickle_that_runs_code_is_refused(cifar_subset: Path, tmp_path: Path):
    folder = copy_subset(cifar_subset, tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (folder / "data_batch_1").write_bytes(pickle.dumps({"data": Evil(), "labels": [0]}))
    with pytest.raises(UserError, match="data_batch_1"):
        load_cifar(folder)
    assert not marker.exists()


def test_corrupt_archive(tmp_path: Path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"\x1f\x8b" + b"\x00" * 100)
    with pytest.raises(UserError, match="cifar-10-python.tar.gz"):
        load_cifar(archive)


def test_45k_5k_split_is_the_last_tenth(cifar_subset: Path):
    d = load_dataset(DataConfig(dataset="cifar10", data_dir=str(cifar_subset), val_fraction=0.1))
    c = load_cifar(cifar_subset)
    assert len(d.train_x) + len(d.val_x) == 5085 and len(d.val_x) == 508
    np.testing.assert_array_equal(d.val_x, c.train_x[-508:])
    np.testing.assert_array_equal(d.train_y, c.train_y[:-508])
    full = load_dataset(DataConfig(dataset="cifar10", data_dir=str(cifar_subset), val_fraction=0.0))
    assert len(full.train_x) == 5085 and len(full.val_x) == 0
    x = np.arange(50_000)
    tr, _, va, _ = holdout(x, x, 0.1)
    assert len(tr) == 45_000 and va[0] == 45_000  # the full set: 45k/5k, validation = second half of batch 5


def test_mean_image_and_channel_statistics(cifar_subset: Path):
    d = load_dataset(DataConfig(dataset="cifar10", data_dir=str(cifar_subset)))
    x = d.train_x.astype(np.float64) / 255.0
    pixel = Normalizer.fit("pixel_mean", d.train_x)
    np.testing.assert_allclose(pixel.mean.numpy(), x.mean(axis=0), rtol=1e-6, atol=1e-6)
    assert pixel.mean.shape == (3, 32, 32) and (pixel.std == 1).all()
    chan = Normalizer.fit("channel_mean_std", d.train_x)
    np.testing.assert_allclose(chan.mean.flatten().numpy(), x.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(chan.std.flatten().numpy(), x.std(axis=(0, 2, 3)), rtol=1e-5)
    # Mean-subtracted training images average to zero at every pixel.
    normed = pixel(torch.from_numpy(d.train_x))
    assert normed.mean(dim=0).abs().max() < 1e-5
    state = pixel.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    again = Normalizer.from_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(again.mean, pixel.mean)


def test_digits_and_synthetic_datasets():
    digits = load_dataset(DataConfig(dataset="digits", val_fraction=0.0))
    assert digits.train_x.shape == (1437, 1, 8, 8) and digits.test_x.shape == (360, 1, 8, 8)
    assert digits.train_x.max() == 255 and set(np.unique(digits.test_y)) == set(range(10))
    synth = load_dataset(DataConfig(dataset="synthetic", synthetic_size=500, val_fraction=0.0))
    assert synth.train_x.shape == (500, 3, 32, 32) and synth.num_classes == 10
    with pytest.raises(UserError, match="choose one of"):
        load_dataset(DataConfig(dataset="mnist"))
