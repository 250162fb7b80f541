"""The digits shipped as package data: scikit-learn's load_digits, byte for byte, without scikit-learn."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from resnet.config import DataConfig
from resnet.data.datasets import DIGITS_FILE, load_dataset, load_digits_arrays


def test_shipped_digits_equal_scikit_learns():
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_digits()
    with np.load(DIGITS_FILE, allow_pickle=False) as f:
        assert f["images"].shape == (1797, 8, 8) and f["images"].dtype == np.uint8
        np.testing.assert_array_equal(f["images"], d.images)
        np.testing.assert_array_equal(f["target"], d.target)
    # ... and the arrays the trainer sees are today's scaling of sklearn's (0..16 -> 0..255, last 360 = test).
    train_x, train_y, test_x, test_y, classes = load_digits_arrays()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    np.testing.assert_array_equal(np.concatenate([train_x, test_x]), x)
    np.testing.assert_array_equal(np.concatenate([train_y, test_y]), d.target)
    assert classes == [str(i) for i in range(10)]


def test_digits_load_with_scikit_learn_unimportable(monkeypatch: pytest.MonkeyPatch):
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # `import sklearn` now raises ImportError
    data = load_dataset(DataConfig(dataset="digits", val_fraction=0.0))
    assert data.train_x.shape == (1437, 1, 8, 8) and data.test_x.shape == (360, 1, 8, 8)
    assert np.bincount(data.test_y, minlength=10).min() > 30  # every class in the test fifth


def test_digits_credit_travels_with_the_data():
    readme = (DIGITS_FILE.parent / "README.md").read_text()
    assert "BSD-3-Clause" in readme and "Alpaydin" in readme and "scikit-learn" in readme
