"""Input statistics of an image folder: the mean image and the RGB covariance's principal axes.

The paper subtracts "the per-pixel mean" (a mean *image*, section 3.4) and uses AlexNet's PCA lighting, whose
axes come from the covariance of the training pixels. Both are estimated from a fixed random sample of
training images, each taken as the test-time view (shorter side 256, centre 224 crop), so the mean image
is the mean of what the network sees. The result is cached next to the file index, keyed on the sampled
files' sizes and modification times, and, like all preprocessing, saved with every checkpoint. Caches
written before the lighting fix hold the square roots of the eigenvalues; :meth:`Lighting.from_state_dict`
recognises them (no ``eigval_kind``) and squares them back, so they stay valid. Recipes use these estimated
axes only with ``data.lighting_axes: estimated``.
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
from resnet.data.transforms import center_crop, load_view, resize_shorter
from resnet.errors import UserError
from resnet.io import open_input, write_cache

PIXELS_PER_IMAGE = 1_000  # pixels per image sampled for the covariance


class _CenterViews(Dataset):
    def __init__(self, index: FolderIndex, picks: list[int], resize: int, size: int, channels: int) -> None:
        self.index, self.picks, self.resize, self.size, self.channels = index, picks, resize, size, channels

    def __len__(self) -> int:
        return len(self.picks)

    def __getitem__(self, k: int) -> torch.Tensor | None:
        try:  # the test view ("center" protocol)
            path = self.index.path(self.picks[k])
            return load_view(path, self.channels, lambda im: center_crop(resize_shorter(im, self.resize), self.size))
        except UserError:
            return None


def _drop_unreadable(batch: list[torch.Tensor | None]) -> list[torch.Tensor]:
    return [x for x in batch if x is not None]


def _key(index: FolderIndex, picks: list[int], samples: int, resize: int, size: int, channels: int) -> str:
    """Keyed on what the statistics describe: the settings and every sampled file's name, size and mtime
    (a file replaced by another of the same name changes its mtime), one ``stat`` per sampled image."""
    h = hashlib.sha1(f"{len(index)}|{samples}|{resize}|{size}|{channels}".encode())
    h.update(os.fsencode(index.root.resolve()))
    for i in picks:
        path = index.path(i)
        try:
            st = os.stat(path)
            h.update(os.fsencode(path) + f"|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(os.fsencode(path) + b"|missing\n")
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
    g = torch.Generator().manual_seed(0)
    n = min(samples, len(index))
    picks = sorted(torch.randperm(len(index), generator=g)[:n].tolist())
    key = _key(index, picks, samples, resize, size, channels)
    cache = cache_dir() / "stats" / f"{key}-{kind}.pt"
    if use_cache and cache.is_file():
        try:
            with warnings.catch_warnings():  # a damaged cache may draw torch's pickle-protocol warning
                warnings.simplefilter("ignore")
                with open_input(cache, max_bytes=1 << 20) as f:  # a few hundred bytes when it is ours
                    state = torch.load(f, weights_only=True)
            lighting = Lighting.from_state_dict(state["lighting"])
            lighting.std = lighting_std if channels == 3 else 0.0  # the axes are cached; the strength is the recipe's
            return Normalizer.from_state_dict(state["normalizer"]), lighting
        except Exception:  # noqa: BLE001  a cache is never worth a crash: any damage means "rebuild it"
            pass  # rebuilt below
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
        state = {"normalizer": normalizer.state_dict(), "lighting": lighting.state_dict(), "images": moments.count}
        write_cache(cache, lambda f: torch.save(state, f))  # optional: any failure only costs the next start
    return normalizer, lighting
