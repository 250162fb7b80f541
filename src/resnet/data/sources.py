"""What ``fit`` trains on: one interface over in-memory arrays (CIFAR, digits, synthetic) and image folders.

A source knows its classes and sizes, estimates its preprocessing constants, builds the training batch
stream for this rank, and hands out its val/test splits (evaluation itself is :mod:`resnet.eval.sources`).
Array sources keep the uint8 images on the training device (device-resident pipeline); folder sources
decode in DataLoader workers.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any, Protocol

import numpy as np
import torch

from resnet.config import Config
from resnet.data.augment import Lighting
from resnet.data.datasets import load_dataset
from resnet.data.folder_loader import FolderLoader
from resnet.data.folder_stats import estimate_stats
from resnet.data.imagefolder import open_splits
from resnet.data.loader import DeviceLoader
from resnet.data.preprocess import Normalizer
from resnet.errors import UserError


class TrainStream(Protocol):
    steps_per_epoch: int

    def next(self) -> tuple[torch.Tensor, torch.Tensor]: ...
    def state_dict(self) -> dict[str, int]: ...
    def load_state_dict(self, state: dict[str, int]) -> None: ...


class ArraySource:
    """CIFAR-10/100, digits, synthetic: uint8 arrays, copied to the device once."""

    def __init__(self, cfg: Config) -> None:

        self.data = load_dataset(cfg.data)
        self.name, self.classes = self.data.name, self.data.classes
        self.input_size = self.data.input_size
        self.sizes = {s: len(getattr(self.data, f"{s}_x")) for s in ("train", "val", "test")}
        self._device_splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._check_labels()

    def _check_labels(self) -> None:
        """Labels outside 0..classes-1 would fail the loss mid-run (and again at every resume): refuse now."""
        n = len(self.classes)
        for split in ("train", "val", "test"):
            y = getattr(self.data, f"{split}_y")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= n):
                bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
                raise UserError(
                    f"{self.name}: the {split} labels hold {bad}, outside 0..{n - 1} for its {n} classes; the data "
                    "files are damaged (check --data-dir)"
                )

    @functools.cached_property
    def _fingerprint(self) -> dict[str, Any]:
        h = hashlib.sha256()
        for split in ("train", "val", "test"):
            h.update(np.ascontiguousarray(getattr(self.data, f"{split}_y"), dtype=np.int64).tobytes() + b"|")
        return {"dataset": self.name, "classes": len(self.classes), "sizes": dict(self.sizes), "labels": h.hexdigest()}

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the data a run trains on: name, classes, split sizes, a hash of every label."""
        return dict(self._fingerprint)

    def preprocessing(self, cfg: Config) -> tuple[Normalizer, Lighting | None]:
        return Normalizer.fit(cfg.data.normalize, self.data.train_x), None

    def train_stream(
        self,
        cfg: Config,
        normalizer: Normalizer,
        lighting: Lighting | None,
        device: torch.device,
        rank: int,
        world: int,
    ) -> TrainStream:

        return DeviceLoader(
            torch.from_numpy(self.data.train_x).to(device),
            torch.from_numpy(self.data.train_y).to(device),
            cfg.train.batch_size,
            normalizer,
            augment=cfg.data.augment,
            pad=cfg.data.pad,
            flip=cfg.data.flip,
            seed=cfg.train.seed,
            rank=rank,
            world_size=world,
        )

    def eval_splits(self) -> list[str]:
        return [s for s in ("val", "test") if self.sizes[s]]

    def device_split(self, split: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """A val/test split's uint8 images and labels on ``device`` (copied there once)."""
        if split not in self._device_splits:
            x, y = self.data.split(split)
            self._device_splits[split] = (torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
        return self._device_splits[split]


class FolderSource:
    """``ROOT/train`` and ``ROOT/val`` image folders with the paper's ImageNet pipeline (section 3.4)."""

    def __init__(self, cfg: Config) -> None:

        if not cfg.data.data_dir:
            raise UserError("dataset imagefolder needs --data-dir ROOT (holding train/<class>/ and val/<class>/)")
        self.train, self.val = open_splits(cfg.data.data_dir)
        self.name, self.classes = "imagefolder", self.train.classes
        self.input_size = (3, cfg.data.crop, cfg.data.crop)
        self.sizes = {"train": len(self.train), "val": len(self.val) if self.val else 0, "test": 0}

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the data a run trains on: classes, split sizes, a hash of every file name and label
        (computed once: an ImageNet index has 1.28M entries, and every checkpoint stores it)."""
        return dict(self._fingerprint)

    @functools.cached_property
    def _fingerprint(self) -> dict[str, Any]:
        h = hashlib.sha256()
        for index in (self.train, self.val):
            for name, label in zip(index.files, index.labels, strict=True) if index else ():
                h.update(f"{name}\0{label}\n".encode(errors="surrogateescape"))
            h.update(b"|")
        return {"dataset": self.name, "classes": len(self.classes), "sizes": dict(self.sizes), "labels": h.hexdigest()}

    def preprocessing(self, cfg: Config) -> tuple[Normalizer, Lighting | None]:

        d = cfg.data
        normalizer, lighting = estimate_stats(
            self.train,
            d.normalize,
            d.mean_samples,
            resize=d.eval_resize,
            size=d.crop,
            lighting_std=d.lighting,
            workers=d.workers,
        )
        if d.lighting_axes == "standard" and self.input_size[0] == 3:
            lighting = Lighting.imagenet(d.lighting)  # AlexNet's axes, as every ImageNet reproduction uses them
        return normalizer, (lighting if d.augment and d.lighting > 0 else None)

    def train_stream(
        self,
        cfg: Config,
        normalizer: Normalizer,
        lighting: Lighting | None,
        device: torch.device,
        rank: int,
        world: int,
    ) -> TrainStream:

        d = cfg.data
        scale = (d.scale_min, d.scale_max) if d.augment else (d.eval_resize, d.eval_resize)
        return FolderLoader(
            self.train,
            cfg.train.batch_size,
            normalizer,
            lighting,
            device,
            seed=cfg.train.seed,
            rank=rank,
            world_size=world,
            workers=d.workers,
            scale=scale,
            size=d.crop,
            strict=d.strict_decode,
        )

    def eval_splits(self) -> list[str]:
        return ["val"] if self.val else []


def open_source(cfg: Config) -> ArraySource | FolderSource:
    """The data source ``cfg.data.dataset`` names."""
    return FolderSource(cfg) if cfg.data.dataset == "imagefolder" else ArraySource(cfg)
