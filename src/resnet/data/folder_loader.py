"""Training batches from an image folder: Pillow decoding in DataLoader workers, the paper's augmentation.

Workers decode, resize (shorter side in [256, 480]), crop 224 and flip on 8-bit pixels
(:mod:`resnet.data.fast_augment`), and hand back uint8 tensors;
the main process moves them to the device (pinned memory, non-blocking) where mean subtraction and the
PCA lighting noise run batched. The sampler is torch's ``DistributedSampler`` (``set_epoch`` every epoch,
one shard per rank; the union of the ranks' k-th batches is exactly the k-th global batch), extended to
start mid-epoch so that a resumed run continues with the very next batch.

A corrupt or truncated image never kills a run hours in: the worker reports it, the batch goes on one
image short, and the file is named in a warning and counted (``data.strict_decode=true`` makes it fatal).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from resnet.data.augment import Lighting, derive_seed, scale_crop_flip
from resnet.data.fast_augment import decode_scale_crop_flip
from resnet.data.imagefolder import FolderIndex
from resnet.data.loader import check_batch_fits
from resnet.data.preprocess import Normalizer
from resnet.data.transforms import load_view
from resnet.errors import UserError

logger = logging.getLogger(__name__)


class TrainImages(Dataset):
    """Item ``(index, seed)`` -> (uint8 C x size x size augmented image, label), or (None, error message)."""

    def __init__(self, index: FolderIndex, scale: tuple[int, int], size: int, channels: int = 3) -> None:
        self.index, self.scale, self.size, self.channels = index, scale, size, channels

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor | None, Any]:
        i, seed = item
        g = torch.Generator().manual_seed(seed)
        try:
            img = decode_scale_crop_flip(self.index.path(i), g, self.scale, self.size, self.channels)
        except UserError as e:
            return None, str(e)
        return img, self.index.labels[i]

    def reference_item(self, item: tuple[int, int]) -> tuple[torch.Tensor | None, Any]:
        """:meth:`__getitem__` through the reference path (full decode, float resize of the whole image): the
        baseline of benchmarks/imagenet_pipeline.py; within one grey level of the fast path."""
        i, seed = item
        g = torch.Generator().manual_seed(seed)
        try:
            img = load_view(self.index.path(i), self.channels, lambda im: scale_crop_flip(im, g, self.scale, self.size))
        except UserError as e:
            return None, str(e)
        return img, self.index.labels[i]


class SeededSampler(DistributedSampler):
    """``DistributedSampler`` yielding (index, per-image seed) and able to start ``start`` samples into its shard."""

    def __init__(self, dataset: Dataset, rank: int, world_size: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.start = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        for k, i in enumerate(super().__iter__()):
            if k >= self.start:
                yield i, derive_seed(self.seed, self.epoch, i)

    def __len__(self) -> int:
        return self.num_samples - self.start


def collate_skipping(batch: list[tuple[torch.Tensor | None, Any]]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Stack the good images; return the error messages of the bad ones."""
    good = [(x, y) for x, y in batch if x is not None]
    bad = [msg for x, msg in batch if x is None]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), bad
    return torch.stack([x for x, _ in good]), torch.tensor([y for _, y in good]), bad


class FolderLoader:
    """Endless training batches (this rank's share, normalised, on the device); position = (epoch, step)."""

    def __init__(
        self,
        index: FolderIndex,
        batch_size: int,
        normalizer: Normalizer,
        lighting: Lighting | None,
        device: torch.device,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        workers: int = 4,
        scale: tuple[int, int] = (256, 480),
        size: int = 224,
        channels: int = 3,
        strict: bool = False,
    ) -> None:
        check_batch_fits(len(index), batch_size, world_size)
        self.per_rank = batch_size // world_size
        self.device, self.seed, self.strict = device, seed, strict
        self.normalizer, self.lighting = normalizer.to(device), lighting
        self.steps_per_epoch = len(index) // batch_size
        self.epoch, self.step, self.skipped = 0, 0, 0
        self._bad_files: set[str] = set()
        self.sampler = SeededSampler(TrainImages(index, scale, size, channels), rank, world_size, seed)
        self.loader = DataLoader(
            self.sampler.dataset,
            batch_size=self.per_rank,
            sampler=self.sampler,
            num_workers=min(workers, os.cpu_count() or 1),  # more processes than cores only thrash
            collate_fn=collate_skipping,
            pin_memory=device.type == "cuda",
            drop_last=True,
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
        )
        self._it: Iterator | None = None

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch and advance the position."""
        while True:
            if self._it is None:
                self.sampler.set_epoch(self.epoch)
                self.sampler.start = self.step * self.per_rank
                self._it = iter(self.loader)
            try:
                x, y, bad = next(self._it)
            except StopIteration:
                self.epoch, self.step, self._it = self.epoch + 1, 0, None
                continue
            self._report(bad)
            g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, -1 - self.step))
            self.step += 1
            if self.step == self.steps_per_epoch:
                self.epoch, self.step, self._it = self.epoch + 1, 0, None
            if len(y) == 0:
                continue  # every image of the batch was unreadable
            x = self.normalizer(x.to(self.device, non_blocking=True))
            if self.lighting is not None:
                self.lighting(x, g, scale=self.normalizer.std.flatten())
            return x, y.to(self.device, non_blocking=True)

    def _report(self, bad: list[str]) -> None:
        for message in bad:
            if self.strict:
                raise UserError(f"{message} (data.strict_decode is on; turn it off to skip such files)")
            self.skipped += 1
            if message not in self._bad_files:  # name each file once, count every encounter
                self._bad_files.add(message)
                n = len(self._bad_files)
                logger.warning("skipped %s (%d unreadable files so far)", message, n)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "step": self.step, "seed": self.seed, "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.skipped = int(state.get("skipped", 0))
        self._it = None
