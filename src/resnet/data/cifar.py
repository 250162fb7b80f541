"""CIFAR-10 and CIFAR-100 from the official "python version" release, in plain numpy.

Accepts the extracted folder (``cifar-10-batches-py``), a folder containing it, or the ``.tar.gz`` archive
itself (read in place, nothing extracted). The batches are Python-2 pickles; they are read with a
restricted unpickler that only rebuilds numpy arrays, so a tampered file cannot run code. A loader must
trust the arrays, not the metadata: the shared subset keeps the official ``batches.meta`` (10000 per batch)
but holds 1017 images per batch and no ``filenames``.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from resnet.errors import UserError


@dataclass(frozen=True)
class CifarLayout:
    folder: str  # folder name inside the official archive
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: str
    names_key: str
    archive: str  # official archive name
    url: str
    md5: str  # of the official archive


LAYOUTS = {
    "cifar10": CifarLayout(
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        "batches.meta",
        "labels",
        "label_names",
        "cifar-10-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
    ),
    "cifar100": CifarLayout(
        "cifar-100-python",
        ("train",),
        "test",
        "meta",
        "fine_labels",
        "fine_label_names",
        "cifar-100-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
    ),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays, and refuses every other global."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are allowed)")


def read_pickle(f: BinaryIO, name: str) -> dict[str, Any]:
    """One batch file as a dict with str keys, whichever way its keys were pickled (bytes or str)."""
    try:
        data = _ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise UserError(
            f"{name}: truncated or corrupt CIFAR batch ({type(e).__name__}: {e}); "
            "download it again (resnet data download)"
        ) from None
    if not isinstance(data, dict):
        raise UserError(f"{name}: not a CIFAR batch (expected a dict, got {type(data).__name__})")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in data.items()}


def _batch_arrays(data: dict[str, Any], label_key: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        x = np.asarray(data["data"], dtype=np.uint8)
        y = np.asarray(data[label_key], dtype=np.int64)
    except KeyError as e:
        raise UserError(f"{name}: CIFAR batch without {e.args[0]!r}; is this the right dataset?") from None
    if x.ndim != 2 or x.shape[1] != 3072 or len(y) != len(x):
        raise UserError(f"{name}: expected N x 3072 images and N labels, got {x.shape} and {len(y)} labels")
    # Rows are 1024 R, 1024 G, 1024 B values, each a row-major 32x32 plane.
    return x.reshape(-1, 3, 32, 32), y


class _Source:
    """Reads named files from an extracted folder or straight out of the .tar.gz."""

    def __init__(self, root: Path, layout: CifarLayout) -> None:
        self.layout = layout
        self.tar: tarfile.TarFile | None = None
        if root.is_file():
            try:
                self.tar = tarfile.open(root, "r:*")
                self.members = {Path(m.name).name: m for m in self.tar.getmembers() if m.isfile()}
            except (tarfile.TarError, EOFError, OSError) as e:
                raise UserError(f"{root}: not a readable CIFAR archive ({e}); download it again") from None
            self.where = str(root)
        else:
            folder = root / layout.folder if (root / layout.folder).is_dir() else root
            if not (folder / layout.test).is_file():
                raise UserError(
                    f"no {layout.folder} data in {root} (looked for {layout.test}); "
                    f"point --data-dir at the extracted {layout.folder} folder or the {layout.archive}, "
                    f"or fetch it with `resnet data download {layout.archive.split('-python')[0].replace('-', '')}`"
                )
            self.folder = folder
            self.where = str(folder)

    def open(self, name: str) -> BinaryIO:
        if self.tar is not None:
            if name not in self.members:
                raise UserError(f"{self.where}: archive has no {name}; is it the {self.layout.archive}?")
            f = self.tar.extractfile(self.members[name])
            assert f is not None
            try:
                return io.BytesIO(f.read())
            except (tarfile.TarError, EOFError, OSError, zlib.error) as e:  # a cut or damaged archive
                raise UserError(f"{self.where}: {name} is truncated or corrupt in the archive ({e})") from None
        path = self.folder / name
        if not path.is_file():
            raise UserError(f"{path}: missing CIFAR batch file; the extracted folder is incomplete")
        return path.open("rb")

    def read(self, name: str) -> dict[str, Any]:
        with self.open(name) as f:
            return read_pickle(f, f"{self.where}/{name}")


@dataclass
class CifarData:
    """uint8 images N x 3 x 32 x 32 and int64 labels, in the official order."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list[str]


def load_cifar(root: str | Path, dataset: str = "cifar10") -> CifarData:
    """Load the official python release (folder or archive) of ``cifar10`` or ``cifar100``."""
    if dataset not in LAYOUTS:
        raise UserError(f"unknown CIFAR dataset {dataset!r}; choose cifar10 or cifar100")
    root = Path(root).expanduser()
    if not root.exists():
        raise UserError(f"data directory {root} does not exist; pass --data-dir or run `resnet data download`")
    layout = LAYOUTS[dataset]
    src = _Source(root, layout)
    xs, ys = zip(*(_batch_arrays(src.read(n), layout.label_key, n) for n in layout.train), strict=True)
    test_x, test_y = _batch_arrays(src.read(layout.test), layout.label_key, layout.test)
    meta = src.read(layout.meta)
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta.get(layout.names_key, [])]
    n_classes = int(max(np.max(test_y), max(int(np.max(y)) for y in ys))) + 1
    if len(classes) < n_classes:
        classes = [str(i) for i in range(n_classes)]
    return CifarData(np.concatenate(xs), np.concatenate(ys), test_x, test_y, classes)
