"""Device-resident batches with the paper's CIFAR augmentation done batched on the device.

The uint8 dataset is copied to the training device once (CIFAR-10 is 150 MB). Each epoch's order, crop
offsets and flips are drawn up front from a CPU generator seeded by (seed, epoch), so they are the same on
every device and a resumed run only needs (epoch, step) to continue exactly where it stopped. A batch is
one gather (images[index]), the normalisation, one pad and one gather that does crop and flip together:
no per-sample Python, no worker processes (the approach of the fastest CIFAR-10 trainers, e.g. airbench).

Under DDP every rank holds the whole dataset, draws the same global order and takes its own contiguous
slice of each global batch, so the union of the ranks' batches is exactly the single-process batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from resnet.data.augment import derive_seed
from resnet.data.preprocess import Normalizer
from resnet.errors import UserError


def check_batch_fits(train_images: int, batch_size: int, world_size: int = 1) -> None:
    """Refuse a batch the training split cannot fill or the ranks cannot share (every loader, and ``--dry-run``,
    call this one check: a dry run approves exactly what the real run accepts)."""
    if batch_size % world_size:
        raise UserError(f"batch size {batch_size} is not divisible by the world size {world_size}")
    if train_images < batch_size:
        raise UserError(
            f"the training split has {train_images} images, fewer than one batch of {batch_size}; "
            "use a smaller --set train.batch_size or more data"
        )


def crop_flip(x: torch.Tensor, pad: int, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Zero-pad by ``pad``, crop back to the input size at ``offsets`` (B x 2: row, col), mirror where ``flips``.

    Padding happens after normalisation, so padded pixels equal the mean (fb.resnet.torch does the same).
    The result is a channels-last view (N x C x H x W shape, N x H x W x C memory).
    """
    b, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    rows = offsets[:, 0, None] + torch.arange(h, device=x.device)  # B x H
    cols = offsets[:, 1, None] + torch.arange(w, device=x.device)  # B x W
    cols = torch.where(flips[:, None], cols.flip(1), cols)  # a flip reads the columns right to left
    out = xp[torch.arange(b, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # B,H,W,C
    return out.permute(0, 3, 1, 2)


class DeviceLoader:
    """Endless stream of augmented training batches; its position is (epoch, step) and nothing else.

    Args:
        images: uint8 N x C x H x W tensor, already on the training device.
        labels: int64 N tensor on the same device.
        batch_size: the *global* batch size; each rank yields ``batch_size // world_size`` samples.
        normalizer: preprocessing applied before padding.
        augment: pad + random crop + horizontal flip (section 4.2); off: the images as they are.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        normalizer: Normalizer,
        *,
        augment: bool = True,
        pad: int = 4,
        flip: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        check_batch_fits(len(images), batch_size, world_size)
        self.images, self.labels = images, labels
        self.batch_size, self.normalizer = batch_size, normalizer.to(images.device)
        self.augment, self.pad, self.flip, self.seed = augment, pad, flip, seed
        self.rank, self.world_size = rank, world_size
        # Drop the last incomplete batch of every epoch (a different remainder each epoch: the order changes).
        self.steps_per_epoch = len(images) // batch_size
        self.epoch, self.step = 0, 0
        self._plan_epoch: int | None = None

    def _plan(self) -> None:
        g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        n = len(self.images)
        _, _, h, w = self.images.shape
        dev = self.images.device
        self._order = torch.randperm(n, generator=g).to(dev)
        self._offsets = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=g).to(dev)
        self._flips = torch.randint(0, 2, (n,), generator=g).bool().to(dev)
        if not self.flip:
            self._flips.zero_()
        self._plan_epoch = self.epoch

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch (this rank's share) and advance the position."""
        if self._plan_epoch != self.epoch:
            self._plan()
        per_rank = self.batch_size // self.world_size
        start = self.step * self.batch_size + self.rank * per_rank
        sl = slice(start, start + per_rank)
        idx = self._order[sl]
        x = self.normalizer(self.images[idx])
        if self.augment:
            x = crop_flip(x, self.pad, self._offsets[sl], self._flips[sl])
        y = self.labels[idx]
        self.step += 1
        if self.step == self.steps_per_epoch:
            self.epoch, self.step = self.epoch + 1, 0
        return x, y

    def next_into(self, x_buf: torch.Tensor, y_buf: torch.Tensor) -> None:
        """``next()`` written into fixed buffers (a captured CUDA graph reads its input from fixed addresses)."""
        x, y = self.next()
        x_buf.copy_(x)
        y_buf.copy_(y)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "step": self.step, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self._plan_epoch = None


def eval_batches(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, normalizer: Normalizer
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The images in order, normalised, in batches (the last one may be short): the single 32x32 test view."""
    norm = normalizer.to(images.device)
    for i in range(0, len(images), batch_size):
        yield norm(images[i : i + batch_size]), labels[i : i + batch_size]
