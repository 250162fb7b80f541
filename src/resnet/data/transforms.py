"""Pure-torch image helpers: read any image file into a uint8 tensor, resize, crop, flip, ten-crop.

Images are uint8 (or float) tensors ``C x H x W``, or batches ``N x C x H x W`` where noted; nothing here
depends on torchvision. Geometry follows the paper's ImageNet protocol (section 3.4): "the image is
resized with its shorter side" to a given length, then square crops are taken; the standard test is the
10-crop (4 corners and the centre, and their horizontal flips).

Decoding is Pillow's. Every mode ends up as 8-bit RGB (or 8-bit grayscale for 1-channel models):

- palette (``P``), CMYK, YCbCr, LAB, HSV and bilevel (``1``) images: Pillow's conversion;
- alpha (``RGBA``, ``LA``, ``PA``, a palette with a transparent colour): composited over white, as a
  viewer shows them (dropping alpha instead would expose whatever colour transparent pixels hold);
- 16-bit integers (``I;16*``, and ``I``, Pillow's mode for 16-bit PNGs): scaled 0..65535 -> 0..255;
- 32-bit floats (``F``): Pillow's conversion (clipped to 0..255);
- the EXIF orientation tag is applied, so phone photos come out upright.

Hostile files are refused with their name before they cost anything: only regular files are opened (a
named pipe called ``x.jpg`` would block a reader forever; :func:`resnet.io.open_input`, the one opener of
outside files, up to :data:`MAX_IMAGE_BYTES`), only the formats of :data:`IMAGE_EXTENSIONS`
are tried whatever the file is called (Pillow would otherwise try 40-odd parsers, EPS through Ghostscript),
the size in the header is checked against :data:`MAX_IMAGE_PIXELS` before any pixel is decoded, and no
resize may produce more than :data:`MAX_RESIZE_PIXELS` (a 1 x 20000 PNG of 100 bytes would otherwise
become a 256 x 5,120,000 float image, 16 GB).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from resnet.errors import UserError
from resnet.io import open_input, shown

_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
#: File name endings read as images (case-insensitive), by training, evaluation and ``predict`` alike.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")


#: Pillow formats tried when opening an image: those of the extensions above (PPM covers pgm/pbm; Pillow's
#: JPEG opener also reads camera MPO files). Everything else (EPS, PSD, FITS, ...) is refused unparsed.
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
#: Largest image decoded, in pixels (width x height, read from the header before decoding): 8192 x 8192,
#: twice an 8K video frame (33 Mpx). Decoded as RGB that is 192 MiB, and 768 MiB as the float the
#: antialiased resize works on, per DataLoader worker: bounded, where the header alone could ask for 4 Gpx.
MAX_IMAGE_PIXELS = 64 * 2**20
#: Largest output of one resize: 16 Mpx (192 MiB as float RGB). The widest test view is the shorter side at
#: 640 (multiscale, section 3.4), so images up to 1:40 still work; stranger panoramas are refused.
MAX_RESIZE_PIXELS = 16 * 2**20
#: Largest image file opened: 1 GiB, above the largest image within :data:`MAX_IMAGE_PIXELS` stored
#: uncompressed (a 16-bit RGBA TIFF of 64 Mpx is 512 MiB); a bigger file is not a picture this reads.
MAX_IMAGE_BYTES = 2**30


T = TypeVar("T")


class ImageTooLarge(UserError):
    """An image whose decode or resize would exceed the pixel budget (:func:`load_view` names the file)."""


def is_image_file(name: str | Path) -> bool:
    return str(name).lower().endswith(IMAGE_EXTENSIONS)


def _to_8bit(im: Image.Image, channels: int) -> np.ndarray:
    """An 8-bit ``H x W`` (channels 1) or ``H x W x 3`` array of any Pillow image."""
    return np.array(to_8bit_image(im, channels))  # a writable copy, owned by the tensor


def to_8bit_image(im: Image.Image, channels: int) -> Image.Image:
    """Any Pillow image as an 8-bit ``L`` (channels 1) or ``RGB`` image, by the rules in the module docstring."""
    if im.mode.startswith("I;16") or im.mode == "I":
        wide = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8))
    elif im.mode == "F":
        im = im.convert("L")
    if im.mode in _ALPHA_MODES or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    mode = "L" if channels == 1 else "RGB"
    return im if im.mode == mode else im.convert(mode)


def load_image(path: str | Path, channels: int = 3) -> torch.Tensor:
    """Read an image file into a uint8 ``channels x H x W`` tensor (``channels`` is 3 for RGB or 1 for gray).

    Raises:
        UserError: the file is missing, not an image, truncated or too large to decode safely (one line
            naming the file).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    try:
        with open_image(path) as im:
            im.load()  # decode now, so a truncated file fails here and not later
            array = _to_8bit(ImageOps.exif_transpose(im), channels)
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError(f"{shown(path)}: no such file") from None
    except UnidentifiedImageError:
        raise UserError(f"{shown(path)}: not an image in a format read here ({', '.join(IMAGE_FORMATS)})") from None
    except Exception as e:  # noqa: BLE001 - any Pillow refusal is one line naming the file
        # Pillow reports truncated and corrupt data as OSError, some format plugins as SyntaxError, struct.error,
        # IndexError or ZeroDivisionError: whichever, the file is unreadable.
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{shown(path)}: unreadable image ({reason[:160]})") from None
    tensor = torch.from_numpy(array)
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


@contextlib.contextmanager
def open_image(path: str | Path) -> Iterator[Image.Image]:
    """A Pillow image of ``path`` with only its header read: a regular file, one of ``IMAGE_FORMATS``, within
    the pixel budget (``ImageTooLarge`` otherwise). Every decoder of this project opens images through here."""
    with open_input(path, max_bytes=MAX_IMAGE_BYTES) as f, Image.open(f, formats=IMAGE_FORMATS) as im:
        width, height = im.size  # from the header: nothing decoded yet
        if width * height > MAX_IMAGE_PIXELS:
            raise ImageTooLarge(
                f"{shown(path)}: image of {width}x{height} pixels is larger than the {MAX_IMAGE_PIXELS >> 20} Mpx "
                "this reader decodes; shrink it first"
            )
        yield im


def load_view(path: str | Path, channels: int, make: Callable[[torch.Tensor], T]) -> T:
    """``make(load_image(path, channels))``, where a pixel-budget refusal of ``make`` (a resize) also names the file."""
    img = load_image(path, channels)
    try:
        return make(img)
    except ImageTooLarge as e:
        raise ImageTooLarge(f"{shown(path)}: {e}") from None


def shorter_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """Output (H, W) when the shorter side becomes ``size`` and the aspect ratio is kept (longer side floored)."""
    if height <= width:
        return size, max(size, int(size * width / height))
    return max(size, int(size * height / width)), size


def resize(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize to (H, W) with antialiasing (so downscaling averages instead of aliasing).

    uint8 in -> uint8 out (rounded); float in -> float out. ``C x H x W`` or ``N x C x H x W``.
    """
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    if size[0] * size[1] > MAX_RESIZE_PIXELS:
        h, w = img.shape[-2:]
        raise ImageTooLarge(
            f"a {w}x{h} image resized to {size[1]}x{size[0]} is larger than the {MAX_RESIZE_PIXELS >> 20} Mpx "
            "allowed (an extreme aspect ratio?); crop it first"
        )
    batch = img if img.ndim == 4 else img.unsqueeze(0)
    out = F.interpolate(batch.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
    if img.dtype == torch.uint8:
        out = out.round_().clamp_(0, 255).to(torch.uint8)
    else:
        out = out.to(img.dtype)
    return out if img.ndim == 4 else out[0]


def resize_shorter(img: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the shorter side is ``size`` (section 3.4's "resized with its shorter side"), keeping the aspect."""
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    height, width = img.shape[-2:]
    return resize(img, shorter_side_size(int(height), int(width), size))


def _crop_size(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def crop(img: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """The ``height x width`` window at (top, left); ``ValueError`` if it does not lie inside the image."""
    h, w = img.shape[-2:]
    if top < 0 or left < 0 or top + height > h or left + width > w:
        raise ValueError(f"crop {height}x{width} at ({top}, {left}) does not fit a {h}x{w} image")
    return img[..., top : top + height, left : left + width]


def center_crop(img: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """The centred ``size`` window (an int for a square).

    An odd margin is split with Python's ``round`` (half to even), the rounding torchvision uses, so that
    centre crops for torchvision's weights are pixel for pixel the ones they were evaluated with.
    """
    ch, cw = _crop_size(size)
    h, w = (int(s) for s in img.shape[-2:])
    return crop(img, round((h - ch) / 2), round((w - cw) / 2), ch, cw)


def hflip(img: torch.Tensor) -> torch.Tensor:
    """Mirror left-right (the paper's horizontal flip)."""
    return img.flip(-1)


def five_crop(img: torch.Tensor, size: int | tuple[int, int]) -> list[torch.Tensor]:
    """Top-left, top-right, bottom-left, bottom-right and centre ``size`` windows."""
    ch, cw = _crop_size(size)
    h, w = (int(s) for s in img.shape[-2:])
    corners = [crop(img, t, left, ch, cw) for t, left in ((0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw))]
    return [*corners, center_crop(img, (ch, cw))]


def ten_crop(img: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """The paper's 10-crop test views (section 3.4): :func:`five_crop` and the same five of the flipped image.

    Returns ``10 x C x h x w`` for a ``C x H x W`` image (views 5..9 are the mirror images of views 0..4).
    """
    crops = five_crop(img, size)
    return torch.stack([*crops, *(hflip(c) for c in crops)])
