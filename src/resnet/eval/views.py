"""The paper's test views of one image (section 3.4): the one implementation every evaluation and ``predict`` uses.

- ``center``: shorter side 256, the centre 224x224 crop (the common single-crop number).
- ``10crop``: "the standard 10-crop testing": the four corners and the centre 224 crops of the image resized
  to shorter side 256, and their horizontal flips.
- ``multiscale``: "the fully-convolutional form ... average the scores at multiple scales (images are resized
  such that the shorter side is in {224, 256, 384, 480, 640})". The whole resized image goes through the
  net; global average pooling followed by the (linear) fc layer equals averaging the fc's scores over every
  position of the final map, so no conv-ised fc is needed. Each scale is also run flipped.

CIFAR-style nets are tested on the single native view (section 4.2): ``center`` with ``resize`` = ``size``.
"""

from __future__ import annotations

import torch

from resnet.data.transforms import center_crop, hflip, resize_shorter, ten_crop
from resnet.errors import UserError

PROTOCOLS = ("center", "10crop", "multiscale")
MULTISCALE_SIZES = (224, 256, 384, 480, 640)


def views(
    img: torch.Tensor,
    protocol: str,
    resize: int = 256,
    size: int | tuple[int, int] = 224,
    scales: tuple[int, ...] = MULTISCALE_SIZES,
) -> list[torch.Tensor]:
    """The test views of one uint8 image: 1 (center), 10 (10crop) or 2 per scale of varying size (multiscale)."""
    if protocol == "center":
        return [center_crop(resize_shorter(img, resize), size)]
    if protocol == "10crop":
        return list(ten_crop(resize_shorter(img, resize), size))
    if protocol == "multiscale":
        out = []
        for s in scales:
            scaled = resize_shorter(img, s)
            out += [scaled, hflip(scaled)]
        return out
    raise UserError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
