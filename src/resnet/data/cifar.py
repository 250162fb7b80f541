"""CIFAR-10 and CIFAR-100 from the official "python version" release, in plain numpy.

Accepts the extracted folder (``cifar-10-batches-py``), a folder containing it, or the ``.tar.gz`` archive
itself (read in place, nothing extracted). The batches are Python-2 pickles; they are read with a
restricted, bounded unpickler (:mod:`resnet.data.cifar_pickle`) that only rebuilds numpy arrays, so a
tampered file can neither run code nor exhaust memory. Pixels must be 0..255 and labels 0..9 (0..99), with
as many class names as classes; anything else is refused with the file's name, never converted. A loader must
trust the arrays, not the metadata: the shared subset keeps the official ``batches.meta`` (10000 per batch)
but holds 1017 images per batch and no ``filenames``.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from resnet.data.cifar_pickle import MAX_BATCH_BYTES, read_pickle
from resnet.errors import UserError
from resnet.io import open_input


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
    num_classes: int


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
        10,
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
        100,
    ),
}


def _batch_arrays(data: dict[str, Any], layout: CifarLayout, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Images N x 3 x 32 x 32 (uint8) and labels (int64), refusing values a CIFAR batch cannot hold rather
    than converting them (uint8 would wrap 256 to 0; a label 255 would build a 256-class model)."""
    try:
        x, y = np.asarray(data["data"]), np.asarray(data[layout.label_key])
    except KeyError as e:
        raise UserError(f"{name}: CIFAR batch without {e.args[0]!r}; is this the right dataset?") from None
    except (ValueError, TypeError) as e:
        raise UserError(f"{name}: CIFAR images or labels are not arrays ({e})") from None
    if x.ndim != 2 or x.shape[1] != 3072 or y.ndim != 1 or len(y) != len(x):
        raise UserError(f"{name}: expected N x 3072 images and N labels, got {x.shape} and {y.shape} labels")
    if x.dtype != np.uint8:
        if x.dtype.kind not in "ui" or (x.size and (x.min() < 0 or x.max() > 255)):
            raise UserError(f"{name}: pixel array of {x.dtype} outside 0..255; CIFAR pixels are 8-bit (uint8)")
        x = x.astype(np.uint8)
    if len(y) and (y.dtype.kind not in "ui" or y.min() < 0 or y.max() >= layout.num_classes):
        bad = y[(y < 0) | (y >= layout.num_classes)][:3] if y.dtype.kind in "ui" else y[:3]
        raise UserError(
            f"{name}: labels must be integers 0..{layout.num_classes - 1} ({layout.num_classes} classes), "
            f"found {', '.join(map(str, bad.tolist()))} ({y.dtype})"
        )
    # Rows are 1024 R, 1024 G, 1024 B values, each a row-major 32x32 plane.
    return x.reshape(-1, 3, 32, 32), y.astype(np.int64)


def _class_names(meta: dict[str, Any], layout: CifarLayout, name: str) -> list[str]:
    names = meta.get(layout.names_key)
    if not isinstance(names, (list, tuple)) or not all(isinstance(c, (str, bytes)) for c in names):
        raise UserError(f"{name}: no list of class names under {layout.names_key!r}; is it the official file?")
    if len(names) != layout.num_classes:
        raise UserError(f"{name}: {len(names)} class names for the {layout.num_classes} classes of this dataset")
    return [c.decode("utf-8", "replace") if isinstance(c, bytes) else c for c in names]


class _Source:
    """Reads named files from an extracted folder or straight out of the .tar.gz."""

    def __init__(self, root: Path, layout: CifarLayout) -> None:
        self.layout = layout
        self.tar: tarfile.TarFile | None = None
        if root.is_file():
            try:
                self.tar = tarfile.open(root, "r:*")
                self.members = {Path(m.name).name: m for m in self.tar.getmembers() if m.isfile()}
            except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
                reason = " ".join(str(e).split())[:300]  # tarfile's message spans lines: one line for people
                raise UserError(f"{root}: not a readable CIFAR archive ({reason}); download it again") from None
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

    def open(self, name: str) -> AbstractContextManager[IO[bytes]]:
        if self.tar is not None:
            if name not in self.members:
                raise UserError(f"{self.where}: archive has no {name}; is it the {self.layout.archive}?")
            if self.members[name].size > MAX_BATCH_BYTES:
                raise UserError(
                    f"{self.where}: {name} is larger than any CIFAR batch; is it the {self.layout.archive}?"
                )
            f = self.tar.extractfile(self.members[name])
            assert f is not None
            try:
                return io.BytesIO(f.read())
            except (tarfile.TarError, EOFError, OSError, zlib.error) as e:  # a cut or damaged archive
                raise UserError(f"{self.where}: {name} is truncated or corrupt in the archive ({e})") from None
        path = self.folder / name
        if not path.is_file():
            raise UserError(f"{path}: missing CIFAR batch file; the extracted folder is incomplete")
        return open_input(path)  # a regular file, checked on the descriptor; read_pickle bounds the read

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
    where = src.where
    xs, ys = zip(*(_batch_arrays(src.read(n), layout, f"{where}/{n}") for n in layout.train), strict=True)
    test_x, test_y = _batch_arrays(src.read(layout.test), layout, f"{where}/{layout.test}")
    classes = _class_names(src.read(layout.meta), layout, f"{where}/{layout.meta}")
    return CifarData(np.concatenate(xs), np.concatenate(ys), test_x, test_y, classes)
