"""Input normalisation whose constants travel with every checkpoint.

- ``pixel_mean`` (the paper, sections 3.4 and 4.2): subtract the *mean image* of the training split, one
  value per channel and pixel.
- ``channel_mean_std``: subtract a per-channel mean and divide by a per-channel std (the later convention
  of torchvision and most reproductions).

Pixels are first scaled to [0, 1]. BN right after the first conv makes the network's function invariant to
that constant factor; only conv1's effective step size depends on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from resnet.errors import UserError

KINDS = ("pixel_mean", "channel_mean_std")


class ImageMoments:
    """Streaming float64 sums over uint8 ``N x C x H x W`` batches: the mean image and per-channel mean/std.

    The one estimator of the normalisation constants, for in-memory arrays and sampled image folders alike.
    """

    def __init__(self) -> None:
        self.total: np.ndarray | None = None  # C x H x W sum of pixel values in [0, 1]
        self.total_sq: np.ndarray | None = None  # C sum of squares
        self.count = 0

    def add(self, images: np.ndarray | torch.Tensor) -> None:
        block = np.asarray(images, dtype=np.float64) / 255.0
        if len(block) == 0:
            return
        if self.total is None:
            self.total = np.zeros(block.shape[1:], dtype=np.float64)
            self.total_sq = np.zeros(block.shape[1], dtype=np.float64)
        self.total += block.sum(axis=0)
        self.total_sq += np.square(block).sum(axis=(0, 2, 3))
        self.count += len(block)

    def normalizer(self, kind: str) -> Normalizer:
        if kind not in KINDS:
            raise UserError(f"unknown normalisation {kind!r}; choose one of {', '.join(KINDS)}")
        if self.total is None or self.total_sq is None or self.count == 0:
            raise UserError("cannot estimate the mean image of an empty training split")
        mean_image = self.total / self.count
        c = mean_image.shape[0]
        if kind == "pixel_mean":
            return Normalizer(kind, torch.from_numpy(mean_image).float(), torch.ones(c, 1, 1))
        pixels = self.count * mean_image.shape[1] * mean_image.shape[2]
        channel_mean = mean_image.mean(axis=(1, 2))
        channel_std = np.sqrt(np.maximum(self.total_sq / pixels - channel_mean**2, 1e-12))
        return Normalizer(
            kind,
            torch.from_numpy(channel_mean).float().view(c, 1, 1),
            torch.from_numpy(channel_std).float().view(c, 1, 1),
        )


@dataclass
class Normalizer:
    kind: str
    mean: torch.Tensor  # C x H x W (pixel_mean) or C x 1 x 1
    std: torch.Tensor  # C x 1 x 1 (ones for pixel_mean)

    @classmethod
    def fit(cls, kind: str, images: np.ndarray, chunk: int = 8192) -> Normalizer:
        """Estimate the constants from uint8 N x C x H x W training images (float64 accumulation)."""
        moments = ImageMoments()
        for i in range(0, len(images), chunk):
            moments.add(images[i : i + chunk])
        return moments.normalizer(kind)

    def to(self, device: torch.device | str) -> Normalizer:
        return Normalizer(self.kind, self.mean.to(device), self.std.to(device))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or float 0..255) N x C x H x W -> normalised float32."""
        x = images.to(torch.float32, copy=True).div_(255.0)  # never modify the caller's tensor
        if x.shape[-2:] != self.mean.shape[-2:] and self.mean.shape[-1] != 1:
            raise UserError(
                f"input of size {tuple(x.shape[-2:])} does not match the {tuple(self.mean.shape[-2:])} mean image; "
                "per-pixel mean subtraction needs the training resolution"
            )
        return x.sub_(self.mean).div_(self.std)

    def at_size(self, height: int, width: int) -> Normalizer:
        """This normaliser for inputs of another size: the mean image resized bilinearly.

        The paper's fully-convolutional test runs whole images of any size (section 3.4); a per-pixel mean is
        only defined at the training crop size, so it is stretched to the input like the image itself was.
        """
        if self.mean.shape[-1] == 1 or tuple(self.mean.shape[-2:]) == (height, width):
            return self
        mean = torch.nn.functional.interpolate(
            self.mean[None], size=(height, width), mode="bilinear", align_corners=False, antialias=True
        )[0]
        return Normalizer(self.kind, mean, self.std)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "mean": self.mean.cpu(), "std": self.std.cpu()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Normalizer:
        try:
            return cls(state["kind"], state["mean"].float(), state["std"].float())
        except (KeyError, AttributeError, TypeError) as e:
            raise UserError(f"checkpoint has no usable preprocessing constants ({e})") from None
