"""Input statistics of an image folder: the mean image and the RGB covariance's principal axes.

The paper subtracts "the per-pixel mean" (a mean *image*, section 3.4) and uses AlexNet's PCA lighting, whose
axes come from the covariance of the training pixels. Both are estimated from a fixed random sample of
training images, each taken as the test-time view (shorter side 256, centre 224 crop), so the mean image
is the mean of what the network sees. The result is cached next to the file index and, like all
preprocessing, saved with every checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import warnings

import torch
from torch.utils.data import DataLoader, Dataset

from resnet.data.augment import Lighting
from resnet.data.imagefolder import FolderIndex, cache_dir
from resnet.data.preprocess import ImageMoments, Normalizer
from resnet.data.transforms import center_crop, load_image, resize_shorter
from resnet.errors import UserError
from resnet.io import atomic_write

PIXELS_PER_IMAGE = 1_000  # pixels per image sampled for the covariance


class _CenterViews(Dataset):
    def __init__(self, index: FolderIndex, picks: list[int], resize: int, size: int, channels: int) -> None:
        self.index, self.picks, self.resize, self.size, self.channels = index, picks, resize, size, channels

    def __len__(self) -> int:
        return len(self.picks)

    def __getitem__(self, k: int) -> torch.Tensor | None:
        try:
            img = load_image(self.index.path(self.picks[k]), self.channels)
        except UserError:
            return None
        return center_crop(resize_shorter(img, self.resize), self.size)  # the test view ("center" protocol)


def _drop_unreadable(batch: list[torch.Tensor | None]) -> list[torch.Tensor]:
    return [x for x in batch if x is not None]


def _key(index: FolderIndex, samples: int, resize: int, size: int, channels: int) -> str:
    h = hashlib.sha1(f"{index.root.resolve()}|{len(index)}|{samples}|{resize}|{size}|{channels}".encode())
    for f in index.files[:: max(1, len(index) // 1000)]:
        h.update(f.encode())
    return h.hexdigest()


def estimate_stats(
    index: FolderIndex,
    kind: str = "pixel_mean",
    samples: int = 5_000,
    *,
    resize: int = 256,
    size: int = 224,
    channels: int = 3,
    lighting_std: float = 0.1,
    workers: int = 4,
    use_cache: bool = True,
) -> tuple[Normalizer, Lighting]:
    """(normaliser, lighting) from ``samples`` training images (all of them if fewer), cached on disk."""
    key = _key(index, samples, resize, size, channels)
    cache = cache_dir() / "stats" / f"{key}-{kind}.pt"
    if use_cache and cache.is_file():
        try:
            with warnings.catch_warnings():  # a damaged cache may draw torch's pickle-protocol warning
                warnings.simplefilter("ignore")
                state = torch.load(cache, weights_only=True)
            lighting = Lighting.from_state_dict(state["lighting"])
            lighting.std = lighting_std if channels == 3 else 0.0  # the axes are cached; the strength is the recipe's
            return Normalizer.from_state_dict(state["normalizer"]), lighting
        except Exception:  # noqa: BLE001  a cache is never worth a crash: any damage means "rebuild it"
            pass  # rebuilt below
    g = torch.Generator().manual_seed(0)
    n = min(samples, len(index))
    picks = sorted(torch.randperm(len(index), generator=g)[:n].tolist())
    loader = DataLoader(
        _CenterViews(index, picks, resize, size, channels),
        batch_size=64,
        num_workers=min(workers, os.cpu_count() or 1),  # more processes than cores only thrash
        collate_fn=_drop_unreadable,
    )
    moments, pixel_sample = ImageMoments(), []
    for batch in loader:
        if not batch:
            continue
        images = torch.stack(batch)
        moments.add(images)
        x = images.double() / 255.0
        flat = x.permute(0, 2, 3, 1).reshape(len(x), -1, channels)
        idx = torch.randint(0, flat.shape[1], (len(x), PIXELS_PER_IMAGE), generator=g)
        pixel_sample.append(torch.gather(flat, 1, idx[..., None].expand(-1, -1, channels)).reshape(-1, channels))
    if moments.count == 0:
        raise UserError(f"none of the {n} sampled training images in {index.root} could be read")
    normalizer = moments.normalizer(kind)
    pixels = torch.cat(pixel_sample)
    lighting = Lighting.fit(pixels, lighting_std) if channels == 3 else Lighting(torch.zeros(1), torch.eye(1), 0.0)
    if use_cache:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            state = {"normalizer": normalizer.state_dict(), "lighting": lighting.state_dict(), "images": moments.count}
            atomic_write(cache, lambda f: torch.save(state, f))
        except OSError:
            pass
    return normalizer, lighting
