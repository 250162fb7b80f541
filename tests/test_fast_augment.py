"""The workers' decode + augment path against the reference (full decode, float resize): same crops, pixels
within one grey level on real photos; JPEG draft for large photos; EXIF orientation; broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet.data import fast_augment
from resnet.data.augment import scale_crop_flip
from resnet.data.fast_augment import decode_scale_crop_flip
from resnet.data.transforms import load_image
from resnet.errors import UserError

datasets = pytest.importorskip("sklearn.datasets", reason="the real sample photos ship with scikit-learn")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The benchmark's kind of images: real photos as 500x375 and 375x500 JPEGs (quality 90), and a PNG."""
    root = tmp_path_factory.mktemp("photos")
    out = []
    for k, img in enumerate(datasets.load_sample_images().images):
        im = Image.fromarray(img[:360, :530]).resize((500, 375))
        out.append(root / f"wide{k}.jpg")
        im.save(out[-1], quality=90)
        out.append(root / f"tall{k}.jpg")
        im.transpose(Image.Transpose.ROTATE_90).save(out[-1], quality=90)
        out.append(root / f"wide{k}.png")
        im.resize((320, 240)).save(out[-1])
    return out


def reference(path: Path, seed: int, scale: tuple[int, int], size: int, channels: int = 3) -> torch.Tensor:
    return scale_crop_flip(load_image(path, channels), torch.Generator().manual_seed(seed), scale, size)


def fast(path: Path, seed: int, scale: tuple[int, int], size: int, channels: int = 3) -> torch.Tensor:
    return decode_scale_crop_flip(path, torch.Generator().manual_seed(seed), scale, size, channels)


@pytest.mark.parametrize(("scale", "size"), [((256, 480), 224), ((160, 200), 128), ((40, 60), 32)])
def test_within_one_grey_level_of_the_reference_on_real_photos(photos: list[Path], scale, size, monkeypatch):
    """Up- and downscaling (the shorter side 375 goes to 256..480, or down to 40), both orientations, JPEG and
    PNG. The reduced JPEG decode is switched off here (it would take the small scales; tested below)."""
    monkeypatch.setattr(fast_augment, "DRAFT_MIN_FACTOR", float("inf"))
    differing = 0
    for path in photos:
        for seed in range(6):
            a, b = fast(path, seed, scale, size), reference(path, seed, scale, size)
            assert a.dtype == torch.uint8 and a.shape == b.shape == (3, size, size) and a.is_contiguous()
            diff = (a.int() - b.int()).abs()
            assert int(diff.max()) <= 1, (path.name, seed)
            differing += int((diff > 0).sum())
    assert differing > 0  # the two really are different implementations (8-bit fixed point vs float)


def test_grayscale_models_and_the_crop_plan_are_shared(photos: list[Path]):
    for seed in range(4):
        a, b = fast(photos[0], seed, (256, 480), 224, 1), reference(photos[0], seed, (256, 480), 224, 1)
        assert a.shape == (1, 224, 224) and int((a.int() - b.int()).abs().max()) <= 1
    # Different seeds, different crops: the plan is really drawn from the generator.
    assert not torch.equal(fast(photos[0], 0, (256, 480), 224), fast(photos[0], 1, (256, 480), 224))


def test_exif_orientation_is_applied_before_planning(photos: list[Path], tmp_path: Path):
    with Image.open(photos[0]) as im:
        exif = im.getexif()
        exif[0x0112] = 6  # rotate 90 degrees clockwise on display: a 500x375 file shows as 375x500
        im.save(tmp_path / "rotated.jpg", quality=90, exif=exif)
        im.save(tmp_path / "rotated.tif", exif=exif)  # TIFF keeps the tag in its own IFD
    for name in ("rotated.jpg", "rotated.tif"):
        assert load_image(tmp_path / name).shape[1:] == (500, 375)
        for seed in range(4):
            a, b = fast(tmp_path / name, seed, (256, 480), 224), reference(tmp_path / name, seed, (256, 480), 224)
            assert int((a.int() - b.int()).abs().max()) <= 1, name


def test_large_jpegs_decode_reduced_and_still_show_the_same_crop(photos: list[Path], tmp_path: Path, monkeypatch):
    big = tmp_path / "big.jpg"
    with Image.open(photos[0]) as im:
        im.resize((2000, 1500), Image.BICUBIC).save(big, quality=90)
    drafts = []
    from PIL.JpegImagePlugin import JpegImageFile

    draft = JpegImageFile.draft
    monkeypatch.setattr(JpegImageFile, "draft", lambda self, mode, size: drafts.append(size) or draft(self, mode, size))
    for seed in range(4):
        a, b = fast(big, seed, (256, 480), 224), reference(big, seed, (256, 480), 224)
        # A different (DCT-domain) downscale of the same window: close on average, not pixel for pixel.
        assert (a.float() - b.float()).abs().mean() < 3.0
    assert len(drafts) == 4
    drafts.clear()
    fast(photos[0], 0, (256, 480), 224)  # a 500x375 photo is never decoded reduced
    assert drafts == []


def test_broken_files_fail_with_the_readers_one_line(tmp_path: Path, photos: list[Path]):
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(photos[0].read_bytes()[:2000])
    (tmp_path / "text.jpg").write_text("not an image")
    for path, words in (
        (truncated, "unreadable image"),
        (tmp_path / "text.jpg", "not an image"),
        (tmp_path / "no.jpg", "no such file"),
    ):
        with pytest.raises(UserError, match=words) as e:
            fast(path, 0, (256, 480), 224)
        assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_simplejpeg_when_installed_gives_pillows_pixels(photos: list[Path], monkeypatch):
    sj = pytest.importorskip("simplejpeg", reason="the optional [jpeg] extra is not installed")
    monkeypatch.setattr(fast_augment, "simplejpeg", sj)
    with_sj = fast(photos[0], 3, (256, 480), 224)
    monkeypatch.setattr(fast_augment, "simplejpeg", None)
    assert torch.equal(with_sj, fast(photos[0], 3, (256, 480), 224))
    assert np.array_equal(sj.decode_jpeg(photos[0].read_bytes(), colorspace="RGB"), np.asarray(Image.open(photos[0])))
