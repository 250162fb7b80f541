"""Array datasets held in memory as uint8 N x C x H x W: CIFAR-10/100, the embedded ``digits``, ``synthetic``.

Each is described once (:class:`Dataset`: reader, input size, class names) and registered by name
(:func:`register_dataset`; a user's dataset is one file doing the same). All of them come out of
:func:`load_dataset` with the same fields, already split into train / val / test.
The validation split (section 4.2's "45k/5k train/val split") is a fixed, documented choice: the *last*
``val_fraction`` of the official training order, so it never depends on a seed and never overlaps the
test set.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from resnet.config import DATASET_KINDS, DataConfig
from resnet.data.cifar import LAYOUTS, load_cifar
from resnet.errors import UserError

#: The 1,797 UCI optical digits as scikit-learn's load_digits returns them (BSD-3; see digits/README.md).
DIGITS_FILE = Path(__file__).with_name("digits") / "digits.npz"

#: CIFAR-10 class names, built in so predictions can be named without the data files.
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@dataclass
class ArrayDataset:
    name: str
    train_x: np.ndarray  # uint8, N x C x H x W
    train_y: np.ndarray  # int64
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list[str]

    @property
    def input_size(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in ("train", "val", "test"):
            raise UserError(f"unknown split {name!r}; choose train, val or test")
        x, y = getattr(self, f"{name}_x"), getattr(self, f"{name}_y")
        if name == "val" and len(x) == 0:
            raise UserError("this run has no validation split (data.val_fraction is 0); use --split test")
        return x, y


def holdout(x: np.ndarray, y: np.ndarray, fraction: float) -> tuple[np.ndarray, ...]:
    """Split off the last ``fraction`` of the training order as validation (50k -> 45k/5k)."""
    n_val = int(round(len(x) * fraction))
    cut = len(x) - n_val
    return x[:cut], y[:cut], x[cut:], y[cut:]


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The UCI handwritten digits that scikit-learn bundles (1,797 real 8x8 grayscale images, 10 classes).

    Shipped inside the package (``resnet/data/digits/digits.npz``; source and credit in the README next to
    it), so the demo needs no extra. Pixel values 0..16 are scaled to 0..255. The last 360 images (a fifth,
    every class present) are the test set; the order is sklearn's, which interleaves the writers.
    """
    with np.load(DIGITS_FILE, allow_pickle=False) as f:
        images, target = f["images"], f["target"]
    x = np.round(images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    y = target.astype(np.int64)
    return x[:-360], y[:-360], x[-360:], y[-360:], [str(i) for i in range(10)]


def synthetic_arrays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Random 32x32 RGB images with random labels (for throughput benchmarks; nothing to learn)."""
    rng = np.random.default_rng(seed)
    n_test = max(1, n // 50)
    x = rng.integers(0, 256, size=(n + n_test, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, size=n + n_test).astype(np.int64)
    return x[:n], y[:n], x[n:], y[n:], [str(i) for i in range(10)]


def default_data_dir(dataset: str) -> Path | None:
    """``./data`` when it holds the dataset (where ``resnet data download`` puts it by default)."""

    folder = Path("data") / LAYOUTS[dataset].folder
    return folder if folder.is_dir() else None


#: Datasets loaded while a :func:`dataset_cache` block runs (None: no cache).
_datasets: dict[str, dict[tuple[Any, ...], ArrayDataset] | None] = {"cache": None}


@contextlib.contextmanager
def dataset_cache() -> Iterator[None]:
    """Within the block a dataset asked for again with the same settings is the one already loaded.

    ``reproduce`` trains many runs on one dataset in one process; its arrays are only read (every run copies
    them to its device), so sharing them is safe and saves a full decode per run.
    """
    if _datasets["cache"] is not None:
        yield
        return
    _datasets["cache"] = {}
    try:
        yield
    finally:
        _datasets["cache"] = None


def load_dataset(cfg: DataConfig) -> ArrayDataset:
    """The dataset named by ``cfg.dataset``, split into train / val / test (once per :func:`dataset_cache`)."""
    cache = _datasets["cache"]
    if cache is None:
        return _load_dataset(cfg)
    root = Path(cfg.data_dir).expanduser().resolve() if cfg.data_dir else None
    key = (cfg.dataset, root, cfg.val_fraction, cfg.synthetic_size)
    if key not in cache:
        cache[key] = _load_dataset(cfg)
    return cache[key]


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]


class Archive(Protocol):
    """Where ``resnet data download`` fetches a dataset: the archive's name, URL, md5 and the folder inside."""

    # Read-only members, so that a frozen dataclass (CifarLayout) is one.
    @property
    def archive(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def md5(self) -> str: ...
    @property
    def folder(self) -> str: ...


@dataclass(frozen=True)
class Dataset:
    """An in-memory dataset as data: its reader and what a model trained on it expects.

    ``read(cfg)`` returns training and test images (uint8 ``N x C x H x W``), their int64 labels and the class
    names; ``classes`` are names built in for weights that carry none (empty: only the data names them);
    ``download`` is its official archive, md5-checked (:mod:`resnet.data.download`); ``preprocessing`` the
    name of the :data:`PREPROCESSING` preset weights trained on it usually carry (None: none). Its test
    protocol is the single native view (section 4.2), like CIFAR's.
    """

    name: str
    read: Callable[[DataConfig], Arrays]
    input_size: tuple[int, int, int]
    classes: tuple[str, ...] = ()
    download: Archive | None = None
    preprocessing: str | None = None
    protocol: str = "center"
    keys: tuple[str, ...] = ("data_dir",)  # the ``data.*`` settings its reader uses (reports show only those)
    hub: str | None = None  # its Hugging Face Hub dataset id, named in model cards


@dataclass(frozen=True)
class FolderDataset:
    """A dataset read from image folders (``ROOT/train/<class>/*``, ``ROOT/val/<class>/*``) as data.

    ``run_classes``: a model's labels are the checkpoint's class list in order (a run trained on the folder);
    otherwise the val folder's sorted order (= torchvision's), as for converted ImageNet weights, whose
    classes are names. ``protocol``: the default test views (:mod:`resnet.eval.views`); ``preprocessing``
    the :data:`PREPROCESSING` preset of weights trained on it (None: estimated from the training images).
    """

    name: str
    run_classes: bool = True
    protocol: str = "center"
    preprocessing: str | None = None
    hub: str | None = None  # its Hugging Face Hub dataset id, named in model cards


#: The registered in-memory datasets by name (``data.dataset``); image folders are read by ``data.imagefolder``.
DATASETS: dict[str, Dataset] = {}
#: Datasets read from image folders by name (a run's ``imagefolder``, converted weights' ``imagenet``).
FOLDER_DATASETS: dict[str, FolderDataset] = {}
#: Per-channel mean and std (of pixels in [0, 1]) that torchvision's ImageNet weights were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Per-channel (mean, std) of pixels in [0, 1] that weights record (``resnet convert --preprocessing NAME``).
PREPROCESSING: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),  # the CIFAR-10 training images'
}


def register_preprocessing(name: str, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    """Add a preset of per-channel (mean, std) of pixels in [0, 1]: ``resnet convert --preprocessing NAME``."""
    if name in PREPROCESSING:
        raise ValueError(f"preprocessing {name!r} is already registered")
    if len(mean) != len(std) or not mean or min(std) <= 0:
        raise ValueError(f"preprocessing {name!r}: one mean and one positive std per channel")
    PREPROCESSING[name] = (tuple(mean), tuple(std))


def _check_new(name: str, preprocessing: str | None) -> None:
    """A dataset's name is new among both kinds, and its preset (if any) is registered."""
    if name in DATASETS or name in FOLDER_DATASETS:
        raise ValueError(f"dataset {name!r} is already registered")
    if preprocessing is not None and preprocessing not in PREPROCESSING:
        raise ValueError(f"dataset {name!r}: unknown preprocessing {preprocessing!r}")


def register_dataset(dataset: Dataset) -> Dataset:
    """Add an in-memory dataset: ``data.dataset: NAME`` in a recipe then trains and evaluates on it."""
    _check_new(dataset.name, dataset.preprocessing)
    DATASETS[dataset.name] = dataset
    if dataset.name not in DATASET_KINDS:
        DATASET_KINDS.append(dataset.name)  # recipes naming it pass the config's check
    return dataset


def register_folder_dataset(dataset: FolderDataset) -> FolderDataset:
    """Add a dataset read from image folders (evaluated on ``ROOT/val`` with its test protocol)."""
    _check_new(dataset.name, dataset.preprocessing)
    FOLDER_DATASETS[dataset.name] = dataset
    return dataset


def is_folder_dataset(name: str) -> bool:
    """Whether weights of dataset ``name`` are tested on an image folder (else on in-memory arrays)."""
    return name in FOLDER_DATASETS


def hub_dataset(name: str) -> str | None:
    """The Hugging Face Hub id of dataset ``name`` as its description gives it (None: none)."""
    described = DATASETS.get(name) or FOLDER_DATASETS.get(name)
    return described.hub if described is not None else None


def dataset_preprocessing(name: str) -> str | None:
    """The :data:`PREPROCESSING` preset dataset ``name``'s description names (None: none, or not registered)."""
    described = DATASETS.get(name) or FOLDER_DATASETS.get(name)
    return described.preprocessing if described is not None else None


def reader_keys(name: str) -> tuple[str, ...] | None:
    """The ``data.*`` settings that locate or size dataset ``name``'s data (``data_dir``, ``synthetic_size``);
    None for a dataset not registered here (every setting may then matter)."""
    if name in FOLDER_DATASETS:
        return ("data_dir",)
    return DATASETS[name].keys if name in DATASETS else None


def _read_cifar(cfg: DataConfig) -> Arrays:
    root = Path(cfg.data_dir) if cfg.data_dir else default_data_dir(cfg.dataset)
    if root is None:
        raise UserError(
            f"dataset {cfg.dataset} needs --data-dir (the extracted folder or the .tar.gz of the official "
            f"python release); fetch it with `resnet data download {cfg.dataset} --to data`"
        )
    c = load_cifar(root, cfg.dataset)
    return c.train_x, c.train_y, c.test_x, c.test_y, c.classes


register_dataset(
    Dataset("cifar10", _read_cifar, (3, 32, 32), tuple(CIFAR10_CLASSES), LAYOUTS["cifar10"], "cifar10", hub="cifar10")
)
register_dataset(Dataset("cifar100", _read_cifar, (3, 32, 32), download=LAYOUTS["cifar100"], hub="cifar100"))
register_dataset(
    Dataset("digits", lambda cfg: load_digits_arrays(), (1, 8, 8), tuple(str(i) for i in range(10)), keys=())
)
register_dataset(
    Dataset("synthetic", lambda cfg: synthetic_arrays(cfg.synthetic_size), (3, 32, 32), keys=("synthetic_size",))
)
register_folder_dataset(FolderDataset("imagefolder"))  # a run's own folder: preprocessing estimated from it
register_folder_dataset(FolderDataset("imagenet", run_classes=False, preprocessing="imagenet", hub="imagenet-1k"))


def _load_dataset(cfg: DataConfig) -> ArrayDataset:
    if cfg.dataset not in DATASETS:
        hint = " (image folders train through `resnet train`)" if cfg.dataset in FOLDER_DATASETS else ""
        raise UserError(f"unknown dataset {cfg.dataset!r}{hint}; choose one of {', '.join(DATASET_KINDS)}")
    train_x, train_y, test_x, test_y, classes = DATASETS[cfg.dataset].read(cfg)
    tr_x, tr_y, val_x, val_y = holdout(train_x, train_y, cfg.val_fraction)
    return ArrayDataset(cfg.dataset, tr_x, tr_y, val_x, val_y, test_x, test_y, classes)
