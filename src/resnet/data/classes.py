"""Class names for predictions: ImageNet-1k (bundled as data), CIFAR-10 (built in), or a run's own list.

``imagenet_classes.txt`` holds the 1000 ILSVRC-2012 class names in the standard index order (the sorted
WordNet ids of the training folders, the order every ImageNet checkpoint's fc layer uses), one per line, in
the short readable form torchvision uses (where two synsets share a name, the second is disambiguated:
"crane" / "crane bird", "maillot" / "maillot tank suit").

Also here: torchvision's ImageNet normalisation constants, the preprocessing that comes with its weights.
"""

from __future__ import annotations

import functools
from pathlib import Path

# IMAGENET_MEAN/STD are defined with the other preprocessing presets and still read from here.
from resnet.data.datasets import DATASETS, IMAGENET_MEAN, IMAGENET_STD  # noqa: F401

IMAGENET_CLASSES_FILE = Path(__file__).with_name("imagenet_classes.txt")


@functools.cache
def _imagenet_classes() -> tuple[str, ...]:
    # The package's own data file (installed with it), not an outside input: read directly.
    names = tuple(line.strip() for line in IMAGENET_CLASSES_FILE.read_text(encoding="utf-8").splitlines())
    names = tuple(n for n in names if n)
    if len(names) != 1000:  # a damaged install; say so rather than mislabel every prediction
        raise RuntimeError(f"{IMAGENET_CLASSES_FILE} holds {len(names)} names instead of 1000; reinstall resnet-paper")
    return names


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names, index i being the model's output i."""
    return list(_imagenet_classes())


def default_classes(dataset: str | None, num_classes: int) -> list[str]:
    """Names for a checkpoint that stores none: ImageNet's, or a registered dataset's built-in names (CIFAR-10's
    when none is named), when the count fits; else the indices."""
    if num_classes == 1000 and dataset in (None, "imagenet"):
        return imagenet_classes()
    known = DATASETS.get(dataset or "cifar10")
    if known is not None and len(known.classes) == num_classes:
        return list(known.classes)
    return [str(i) for i in range(num_classes)]


def resolve_classes(stored: object, dataset: str | None, num_classes: int) -> list[str]:
    """A checkpoint's own class list when it is usable (the right length), else :func:`default_classes`."""
    if isinstance(stored, (list, tuple)) and len(stored) == num_classes:
        return [str(c) for c in stored]
    return default_classes(dataset, num_classes)
