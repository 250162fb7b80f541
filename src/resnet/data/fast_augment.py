"""Decode + the paper's scale augmentation in one pass on 8-bit pixels: what DataLoader workers run.

:func:`resnet.data.augment.scale_crop_flip` resizes the *whole* decoded image in float and then keeps a
224x224 window of it; on a 500x375 JPEG that float resize is about three quarters of a worker's time
(docs/benchmarks.md: 0.56 ms decoding of ~2.7 ms per image). This path runs 2.4-3.2x faster there.
:func:`decode_scale_crop_flip` takes the same crops (the same random draws, :func:`plan_scale_crop_flip`) but

- resizes only the window that is kept, on the 8-bit image: Pillow's ``Image.resize(..., box=...)`` computes
  the same antialiased bilinear filter as torch's (same support, same sample positions; a window of a
  resize equals the resize of that window of the source because Pillow clips the filter at the *image*
  border, not the box) in 8-bit fixed point. Outputs are within one grey level of the float path
  (tests/test_fast_augment.py checks it on real photos);
- asks the JPEG decoder for a reduced image (Pillow's ``draft``: DCT scaling by 1/2, 1/4 or 1/8) when the
  photo is at least twice the size the crop needs, so a 12-megapixel photo is never decoded in full. The
  result differs from the full decode by more than a grey level (a different, equally valid downscale),
  which is why it only applies when the saving is large; typical ImageNet JPEGs (500x375, shorter side
  drawn in [256, 480]) never take it.

- decodes baseline RGB / grayscale JPEGs with ``simplejpeg`` when it is installed (the ``[jpeg]`` extra):
  the same libjpeg-turbo output as Pillow's (identical pixels on the benchmark photos), ~15% faster because
  it skips Pillow's per-image machinery (measured on this project's 2-core machine, busy).

The decode rules (modes, alpha over white, 16-bit, EXIF orientation) and the one-line errors are those of
:func:`resnet.data.transforms.load_image`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from resnet.data.augment import CropPlan, plan_scale_crop_flip
from resnet.data.transforms import MAX_IMAGE_BYTES, load_image, open_image, to_8bit_image
from resnet.errors import UserError
from resnet.io import open_input

try:  # optional: the [jpeg] extra
    import simplejpeg
except ImportError:  # pragma: no cover - depends on the environment
    simplejpeg = None

#: EXIF orientations that swap width and height (transpose, rotate 90/270, transverse).
_SWAPS_AXES = (5, 6, 7, 8)
#: Decode a JPEG reduced only when it saves at least this factor per side (draft picks 1/2, 1/4 or 1/8).
DRAFT_MIN_FACTOR = 2


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation tag of a JPEG (1 = upright), read from the header without decoding."""
    return int(im.getexif().get(0x0112, 1) or 1)


def _oriented_size(im: Image.Image, orientation: int) -> tuple[int, int]:
    """(H, W) of ``im`` after its EXIF orientation is applied."""
    w, h = im.size
    return (w, h) if orientation in _SWAPS_AXES else (h, w)


def _decode_jpeg(
    im: Image.Image, path: str | Path, generator: torch.Generator, scale: tuple[int, int], size: int, channels: int
) -> tuple[Image.Image, int, int, CropPlan]:
    """A JPEG planned from its header (oriented size), then decoded reduced when that saves a factor of 2 per
    side, or by simplejpeg when installed; (8-bit oriented image, full oriented H, W, plan)."""
    orientation = _orientation(im)
    height, width = _oriented_size(im, orientation)
    plan = plan_scale_crop_flip(height, width, generator, scale, size)
    shorter = min(plan.resized)
    if min(height, width) >= DRAFT_MIN_FACTOR * shorter:
        im.draft(im.mode if im.mode in ("L", "RGB") else None, (shorter, shorter))
    elif simplejpeg is not None and im.mode == ("L" if channels == 1 else "RGB") and orientation == 1:
        im = _simplejpeg_decode(path, "GRAY" if channels == 1 else "RGB")  # the same pixels as Pillow's
    im.load()
    # exif_transpose copies the image even when there is nothing to turn: skip it for upright files.
    return to_8bit_image(ImageOps.exif_transpose(im) if orientation != 1 else im, channels), height, width, plan


def _simplejpeg_decode(path: str | Path, colorspace: str) -> Image.Image:
    with open_input(path, max_bytes=MAX_IMAGE_BYTES) as f:  # opened again by name: the checks of open_image again
        data = f.read(MAX_IMAGE_BYTES + 1)
    array = simplejpeg.decode_jpeg(data, colorspace=colorspace)
    return Image.fromarray(array[:, :, 0] if colorspace == "GRAY" else array)


def _box(plan: CropPlan, height: int, width: int) -> tuple[float, float, float, float]:
    """The source rectangle (left, upper, right, lower) of an ``height x width`` image that the plan's window
    of the resized image covers."""
    sy, sx = height / plan.resized[0], width / plan.resized[1]
    return (plan.left * sx, plan.top * sy, (plan.left + plan.size) * sx, (plan.top + plan.size) * sy)


def decode_scale_crop_flip(
    path: str | Path,
    generator: torch.Generator,
    scale: tuple[int, int] = (256, 480),
    size: int = 224,
    channels: int = 3,
) -> torch.Tensor:
    """Read ``path`` and return the uint8 ``channels x size x size`` training crop that
    ``scale_crop_flip(load_image(path), generator, scale, size)`` returns, within one grey level.

    Raises:
        UserError: the file cannot be read (the same one line as :func:`load_image`).
    """
    try:
        with open_image(path) as im:  # regular files, allowed formats, the pixel budget
            if im.format == "JPEG":
                oriented, height, width, plan = _decode_jpeg(im, path, generator, scale, size, channels)
            else:  # other formats: decode first (Pillow's TIFF reader turns the image itself on load)
                im.load()
                oriented = to_8bit_image(ImageOps.exif_transpose(im), channels)
                height, width = oriented.height, oriented.width
                plan = plan_scale_crop_flip(height, width, generator, scale, size)
            # Coordinates scale with what the decoder returned (a draft is a fraction of the full size).
            fx, fy = oriented.width / width, oriented.height / height
            left, top, right, lower = _box(plan, height, width)
            out = oriented.resize((size, size), Image.BILINEAR, box=(left * fx, top * fy, right * fx, lower * fy))
    except UserError:
        raise
    except Exception:  # noqa: BLE001 - any decoding failure: let the reference reader word the error
        load_image(path, channels)  # raises the UserError of a broken file (or succeeds: then re-raise)
        raise
    array = np.asarray(out)
    if plan.flip:  # mirrored within the one copy below (a Pillow transpose would be a second one)
        array = array[:, ::-1]
    if array.ndim == 2:
        return torch.from_numpy(array.copy()).unsqueeze(0)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))  # one copy, straight to C x H x W
