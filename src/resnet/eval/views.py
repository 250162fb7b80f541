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

from typing import Any

import torch

from resnet.data.transforms import center_crop, hflip, resize_shorter, ten_crop
from resnet.errors import UserError

PROTOCOLS = ("center", "10crop", "multiscale")
#: The paper's ImageNet test geometry: shorter side 256, then 224x224 views (section 3.4).
RESIZE_FOR_224 = 256
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


def view_resize(imagenet_style: bool, size: tuple[int, int]) -> int:
    """The shorter side ``predict`` resizes to before cropping ``size``: 256 for 224 (section 3.4), scaled for
    other ImageNet-style inputs; the native size itself for CIFAR-style nets (section 4.2)."""
    if imagenet_style:
        return round(size[0] * RESIZE_FOR_224 / 224)
    return min(size)


def view_geometry(imagenet_style: bool, size: tuple[int, int], shorter_side: int | None = None) -> dict[str, Any]:
    """How ``predict`` turns a decoded 8-bit image into the model's input, precisely enough to reproduce its
    probabilities elsewhere (exported as ``resnet.resize`` next to the graph). ``shorter_side``: the resize the
    weights record (predict uses it), else :func:`view_resize`'s.

    The resize is torch's antialiased bilinear on float pixels, rounded to uint8 once; Pillow's
    ``Image.resize(..., Image.BILINEAR)`` computes the same filter in 8-bit fixed point and lands within one
    grey level (tests/test_export.py reproduces predict's probabilities that way through onnxruntime).
    """
    return {
        "shorter_side": view_resize(imagenet_style, size) if shorter_side is None else shorter_side,
        "longer_side": "floor(shorter_side * longer / shorter), at least shorter_side",
        "filter": "bilinear",
        "antialias": True,
        "align_corners": False,
        "rounding": "round half to even to uint8, once, after both directions",
        "implementation": "torch.nn.functional.interpolate(mode='bilinear', antialias=True, align_corners=False)",
        "pillow_equivalent": "PIL.Image.resize(size, PIL.Image.BILINEAR) (within 1 grey level)",
        "crop": [int(size[0]), int(size[1])],
        "crop_position": "centre; top = round((H - h) / 2), left = round((W - w) / 2) (Python round)",
        "decode": "Pillow, EXIF orientation applied, alpha composited over white, 8-bit RGB (L for 1 channel)",
        "protocol": "center (the 10crop protocol averages the softmax of 10 such views)",
    }
