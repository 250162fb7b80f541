"""Image-folder datasets: ``ROOT/train/<class>/*``, ``ROOT/val/<class>/*``, labels in sorted class order.

Labels match torchvision's ``ImageFolder`` (classes sorted by directory name, files sorted within a class),
so ImageNet's class indices line up with torchvision's weights. Listing 1.28M files takes minutes on a
network disk, so each split's file index is cached (``~/.cache/resnet/index``, or ``$RESNET_CACHE``); the
cache is keyed on the split directory and the modification time of every class directory, which changes
whenever a file is added, removed or renamed in it, so a changed folder is re-scanned automatically.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from resnet.data.transforms import IMAGE_EXTENSIONS, is_image_file
from resnet.errors import UserError
from resnet.io import atomic_write_text


def cache_dir() -> Path:
    return Path(os.environ.get("RESNET_CACHE", Path.home() / ".cache" / "resnet"))


@dataclass
class FolderIndex:
    """The files of one split: paths relative to the split directory, labels, and the class names."""

    root: Path
    classes: list[str]
    files: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.files)

    def path(self, i: int) -> Path:
        return self.root / self.files[i]


def _class_dirs(split_dir: Path) -> list[os.DirEntry]:
    with os.scandir(split_dir) as it:
        return sorted((e for e in it if e.is_dir() and not e.name.startswith(".")), key=lambda e: e.name)


def _fingerprint(split_dir: Path, dirs: list[os.DirEntry]) -> str:
    h = hashlib.sha1(str(split_dir.resolve()).encode())
    h.update(str(split_dir.stat().st_mtime_ns).encode())
    for e in dirs:
        h.update(f"{e.name}:{e.stat().st_mtime_ns}".encode())
    return h.hexdigest()


def scan(split_dir: Path, classes: list[str] | None = None, use_cache: bool = True) -> FolderIndex:
    """Index ``split_dir/<class>/<files>`` (one level of class folders, files found recursively inside).

    ``classes`` fixes the label order (the training split's) so a validation folder that lacks a class
    still gets the training labels; a class folder unknown to it is an error.
    """
    if not split_dir.is_dir():
        raise UserError(f"no image folder at {split_dir}; expected ROOT/train/<class>/*.jpg and ROOT/val/<class>/*.jpg")
    dirs = _class_dirs(split_dir)
    if not dirs:
        raise UserError(f"{split_dir} has no class folders; expected {split_dir}/<class>/<images>")
    names = [e.name for e in dirs]
    classes = classes or names
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise UserError(f"{split_dir} has class folders the training split lacks: {', '.join(unknown[:5])}")
    key = _fingerprint(split_dir, dirs)
    cache = cache_dir() / "index" / f"{key}.json"
    if use_cache and cache.is_file():
        try:
            data = json.loads(cache.read_text())
            files, labels = data["files"], data["labels"]
            ok = isinstance(files, list) and isinstance(labels, list) and len(files) == len(labels)
            ok = ok and all(isinstance(f, str) for f in files) and all(type(y) is int for y in labels)
            if ok and data.get("classes") == classes and all(0 <= y < len(classes) for y in labels):
                return FolderIndex(split_dir, classes, files, labels)
        except (ValueError, KeyError, OSError, TypeError, AttributeError):
            pass  # a damaged cache (torn, hand-edited, of another shape) is rebuilt below
    label_of = {c: i for i, c in enumerate(classes)}
    files, labels = [], []
    for e in dirs:
        found = []
        for parent, subdirs, fnames in os.walk(e.path):
            subdirs.sort()
            found += [os.path.join(parent, f) for f in fnames if is_image_file(f)]
        for f in sorted(found):
            files.append(os.path.relpath(f, split_dir))
            labels.append(label_of[e.name])
    if not files:
        raise UserError(f"{split_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    if use_cache:
        try:
            atomic_write_text(cache, json.dumps({"classes": classes, "files": files, "labels": labels}))
        except OSError:
            pass  # a read-only home directory only costs the next start a re-scan
    return FolderIndex(split_dir, classes, files, labels)


def open_splits(root: str | Path) -> tuple[FolderIndex, FolderIndex | None]:
    """The train index and, if ``ROOT/val`` exists, the val index with the training label order."""
    root = Path(root).expanduser()
    if not root.exists():
        raise UserError(f"data directory {root} does not exist")
    train = scan(root / "train")
    val = scan(root / "val", classes=train.classes) if (root / "val").is_dir() else None
    return train, val
