"""Image-folder datasets: ``ROOT/train/<class>/*``, ``ROOT/val/<class>/*``, labels in sorted class order.

Labels match torchvision's ``ImageFolder`` (classes sorted by directory name, files sorted within a class),
so ImageNet's class indices line up with torchvision's weights. Listing 1.28M files takes minutes on a
network disk, so each split's file index is cached (``~/.cache/resnet/index``, or ``$RESNET_CACHE``) with
the modification time of every folder it lists, nested ones included. A folder's mtime changes whenever
a file is added, removed or renamed in it, so checking them (one ``stat`` per folder, no listing) tells
whether the cache still describes the folder; if not, it is re-scanned.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from resnet.data.transforms import IMAGE_EXTENSIONS, is_image_file
from resnet.errors import UserError
from resnet.io import shown, write_cache
from resnet.safe_json import read_json


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
    try:
        with os.scandir(split_dir) as it:
            dirs = sorted((e for e in it if e.is_dir() and not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as e:
        raise UserError(f"{shown(split_dir)}: cannot list this folder ({e.strerror}); check its permissions") from None
    for e in dirs:
        try:
            e.name.encode("utf-8")
        except UnicodeEncodeError:  # the name becomes a class name in checkpoints, reports and predictions
            raise UserError(
                f"{shown(e.path)}: class folder name is not valid UTF-8; rename it (it becomes the class's name)"
            ) from None
    return dirs


def _is_regular(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()  # follows a symbolic link; a pipe, socket or device is not a file
    except OSError:  # a link loop (ELOOP) or a vanished target: nothing to read
        return False


def _walk(class_dir: str, mtimes: dict[str, int], split_dir: Path) -> list[str]:
    """Image files under ``class_dir`` (recursively, sorted); records every folder's mtime in ``mtimes``.

    Only regular files count (a named pipe called ``x.jpg`` would block a reader forever); symbolic links to
    folders are not followed, so a link loop cannot recurse. A folder that cannot be listed is an error, not
    an empty class.
    """
    found, stack = [], [class_dir]
    while stack:
        folder = stack.pop()
        try:
            mtime = os.stat(folder).st_mtime_ns  # before listing: a change while listing shows next time
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as e:
            raise UserError(
                f"{shown(folder)}: cannot list this folder ({e.strerror}); fix its permissions or move it away"
            ) from None
        mtimes[os.path.relpath(folder, split_dir)] = mtime
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)
            elif is_image_file(e.name) and _is_regular(e):
                found.append(e.path)
    return sorted(found)


def _cached(cache: Path, split_dir: Path, classes: list[str]) -> FolderIndex | None:
    """The cached index if every folder it was built from is unchanged (one stat per folder, no listing)."""
    try:
        data = read_json(cache)
        if data.get("classes") != classes:
            return None
        for rel, mtime in data["folders"].items():
            if os.stat(split_dir / rel).st_mtime_ns != mtime:
                return None
        files, labels = data["files"], data["labels"]
        ok = isinstance(files, list) and isinstance(labels, list) and len(files) == len(labels)
        ok = ok and all(isinstance(f, str) for f in files) and all(type(y) is int for y in labels)
        if not ok or not all(0 <= y < len(classes) for y in labels):
            return None  # hand-edited or of another shape: rebuilt
        return FolderIndex(split_dir, classes, files, labels)
    except (ValueError, KeyError, TypeError, AttributeError, OSError):  # UserError is a ValueError
        return None  # a damaged (torn, hand-edited) or outdated cache is rebuilt


def scan(split_dir: Path, classes: list[str] | None = None, use_cache: bool = True) -> FolderIndex:
    """Index ``split_dir/<class>/<files>`` (one level of class folders, files found recursively inside).

    ``classes`` fixes the label order (the training split's) so a validation folder that lacks a class
    still gets the training labels; a class folder unknown to it is an error, and so is one without images
    (as with torchvision's ``ImageFolder``).
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
    key = hashlib.sha1(os.fsencode(split_dir.resolve()) + b"\0" + json.dumps(classes).encode()).hexdigest()
    cache = cache_dir() / "index" / f"{key}.json"
    if use_cache and cache.is_file() and (index := _cached(cache, split_dir, classes)) is not None:
        return index
    label_of = {c: i for i, c in enumerate(classes)}
    mtimes = {".": split_dir.stat().st_mtime_ns}
    files, labels = [], []
    for e in dirs:
        found = _walk(e.path, mtimes, split_dir)
        if not found:
            raise UserError(
                f"{shown(e.path)}: class folder holds no images ({', '.join(IMAGE_EXTENSIONS)}); add some or "
                "remove the folder"
            )
        files += [os.path.relpath(f, split_dir) for f in found]
        labels += [label_of[e.name]] * len(found)
    if use_cache:
        index_data = {"classes": classes, "folders": mtimes, "files": files, "labels": labels}
        write_cache(cache, json.dumps(index_data))  # a read-only or full cache disk only costs a re-scan
    return FolderIndex(split_dir, classes, files, labels)


def open_splits(root: str | Path) -> tuple[FolderIndex, FolderIndex | None]:
    """The train index and, if ``ROOT/val`` exists, the val index with the training label order."""
    root = Path(root).expanduser()
    if not root.exists():
        raise UserError(f"data directory {root} does not exist")
    train = scan(root / "train")
    val = scan(root / "val", classes=train.classes) if (root / "val").is_dir() else None
    return train, val
