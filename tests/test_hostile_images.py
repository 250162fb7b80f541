"""Image folders and image files under hostile input (issue 12: items 6, 7, 8, 14, 17, 23).

Every test is named after the defect it guards against; each failed before the fix.
"""

from __future__ import annotations

import os
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import EpsImagePlugin, Image

from resnet.config import Config
from resnet.data import imagefolder
from resnet.data.folder_loader import TrainImages
from resnet.data.folder_stats import estimate_stats
from resnet.data.imagefolder import scan
from resnet.data.preprocess import Normalizer
from resnet.data.sources import FolderSource
from resnet.data.transforms import MAX_IMAGE_PIXELS, ImageTooLarge, load_image, load_view
from resnet.errors import UserError
from resnet.eval.folders import folder_scores
from resnet.eval.sources import evaluate_split
from resnet.eval.views import views
from resnet.models import build_network

from folders import add_broken, build_folder


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("RESNET_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    return build_folder(tmp_path / "photos", per_class=4, val_per_class=2)


def png_header(width: int, height: int) -> bytes:
    """A PNG declaring ``width x height`` 8-bit gray (valid chunks) with one row of pixel data: a few bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(bytes(width + 1))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# --- item 14: pixel budget ----------------------------------------------------------------------------------


def test_a_100_byte_1x20000_png_is_refused_by_name_instead_of_a_16gb_resize(folder: Path):
    thin = folder / "train" / "china" / "thin.png"
    Image.new("L", (1, 20000)).save(thin, optimize=True)
    assert thin.stat().st_size < 200
    assert load_image(thin).shape == (3, 20000, 1)  # the decode itself is small
    with pytest.raises(ImageTooLarge, match="thin.png: a 1x20000 image resized to 256x5120000"):
        load_view(thin, 3, lambda im: views(im, "center"))
    # Training's workers resize only the kept 224x224 window (data/fast_augment.py), so the file costs a
    # 224x224 output there; the reference path (a resize of the whole image) names it and goes on.
    index = scan(folder / "train")
    data = TrainImages(index, (256, 480), 224)
    assert all(x is not None and x.shape == (3, 224, 224) for x, _ in (data[(i, 0)] for i in range(len(index))))
    results = [data.reference_item((i, 0)) for i in range(len(index))]
    bad = [msg for x, msg in results if x is None]
    assert len(bad) == 1 and "thin.png" in bad[0] and "Mpx" in bad[0]
    assert all(x.shape == (3, 224, 224) for x, _ in results if x is not None)


def test_a_header_claiming_81_megapixels_is_refused_before_any_decoding(tmp_path: Path):
    big = tmp_path / "big.png"
    big.write_bytes(png_header(9000, 9000))  # under Pillow's own 89 Mpx warning, over our 64 Mpx budget
    assert 9000 * 9000 > MAX_IMAGE_PIXELS
    with pytest.raises(UserError, match=r"big.png: image of 9000x9000 pixels is larger than the 64 Mpx"):
        load_image(big)


# --- item 17: non-regular files and the format allow-list --------------------------------------------------


def test_a_named_pipe_called_jpg_neither_hangs_a_reader_nor_enters_the_index(folder: Path):
    pipe = folder / "train" / "china" / "pipe.jpg"
    os.mkfifo(pipe)
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            load_image(pipe)
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001  (handed to the test thread)
            outcome.append(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=120)  # a blocked open never returns; a working one returns at once, however slow the machine
    assert outcome, "load_image blocked on a named pipe"
    assert isinstance(outcome[0], UserError) and "pipe.jpg: not a regular file (a named pipe)" in str(outcome[0])
    assert "china/pipe.jpg" not in scan(folder / "train").files


def test_an_eps_file_called_jpg_is_never_handed_to_the_eps_parser(tmp_path: Path, monkeypatch):
    calls = []
    real_open = EpsImagePlugin.EpsImageFile._open
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: calls.append(1) or real_open(self))
    eps = tmp_path / "photo.jpg"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nshowpage\n%%EOF\n")
    with pytest.raises(UserError, match="photo.jpg: not an image in a format read here"):
        load_image(eps)
    assert calls == []  # Ghostscript was never in reach


# --- item 6: caches keyed on what they describe ------------------------------------------------------------


def test_files_added_in_a_nested_subfolder_reach_the_cached_index(folder: Path):
    nested = folder / "train" / "flower" / "batch2"
    nested.mkdir()
    first = scan(folder / "train")
    time.sleep(0.01)
    src = folder / "train" / "flower" / "flower_001.png"
    (nested / "late.png").write_bytes(src.read_bytes())  # changes batch2's mtime, not flower's
    assert "flower/batch2/late.png" in scan(folder / "train").files
    assert len(scan(folder / "train")) == len(first) + 1


def test_statistics_cache_is_keyed_on_file_contents_not_names(folder: Path):
    index = scan(folder / "train")
    before, _ = estimate_stats(index, samples=100, resize=40, size=32, workers=0)
    time.sleep(0.01)
    for path in map(index.path, range(len(index))):  # same names, other pictures: all white
        Image.new("RGB", Image.open(path).size, (255, 255, 255)).save(path, format=Image.open(path).format)
    after, _ = estimate_stats(index, samples=100, resize=40, size=32, workers=0)
    assert float(after.mean.mean()) == pytest.approx(1.0, abs=1e-3)  # pixels in [0, 1]
    assert float(before.mean.mean()) < 0.8


# --- item 7: empty or unlistable class folders ---------------------------------------------------------------


def test_an_empty_class_folder_is_refused_not_made_a_class_without_images(folder: Path):
    (folder / "train" / "dog").mkdir()
    with pytest.raises(UserError, match=r"train/dog: class folder holds no images"):
        scan(folder / "train")
    (folder / "val" / "dog").mkdir()
    (folder / "train" / "dog" / "empty_sub").mkdir()  # a subfolder without images is still no images
    with pytest.raises(UserError, match="no images"):
        scan(folder / "train")


def test_an_unlistable_class_folder_is_refused_with_its_name(folder: Path, monkeypatch):
    real_scandir = os.scandir
    blocked = str(folder / "train" / "flower")

    def scandir(path):
        if str(path) == blocked:
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(imagefolder.os, "scandir", scandir)  # tests run as root, where chmod 000 blocks nothing
    with pytest.raises(UserError, match=r"train/flower: cannot list this folder \(Permission denied\)"):
        scan(folder / "train", use_cache=False)


# --- item 8: unreadable validation images ---------------------------------------------------------------------


def test_unreadable_validation_images_are_named_and_fatal_under_strict_decode(folder: Path, caplog):
    broken = add_broken(folder / "val" / "china")
    model = build_network("resnet8", num_classes=2).eval()
    norm = Normalizer("pixel_mean", torch.zeros(3, 32, 32), torch.ones(3, 1, 1))
    index = scan(folder / "val")
    with pytest.raises(UserError, match=r"zz_fake.jpg: not an image .*data.strict_decode is on"):
        folder_scores(model, index, norm, resize=40, size=32, workers=0, strict=True)
    cfg = Config()
    cfg.data.dataset, cfg.data.data_dir, cfg.data.workers = "imagefolder", str(folder), 0
    cfg.data.eval_resize, cfg.data.crop = 40, 32
    res = evaluate_split(FolderSource(cfg), "val", model, norm, cfg, torch.device("cpu"))
    err = caplog.text  # a logged warning (the `resnet` command shows it on stderr)
    assert res.n == len(index) - 2 and res.as_record()["skipped"] == 2
    assert "left out 2 unreadable image(s)" in err and all(p.name in err for p in broken)
    cfg.data.strict_decode = True
    with pytest.raises(UserError, match="strict_decode"):
        evaluate_split(FolderSource(cfg), "val", model, norm, cfg, torch.device("cpu"))


# --- item 23: file names that are not UTF-8 ------------------------------------------------------------------


def test_a_non_utf8_file_name_is_trained_on_and_named_when_broken(folder: Path):
    china = os.fsencode(folder / "train" / "china")
    os.rename(os.fsencode(folder / "train" / "china" / "china_000.JPG"), china + b"/caf\xe9.jpg")
    (Path(os.fsdecode(china + b"/bad\xff.jpg"))).write_text("not a picture")
    index = scan(folder / "train")
    assert len(index) == 9
    normalizer, _ = estimate_stats(index, samples=100, resize=40, size=32, workers=0)  # hashed its name
    assert torch.isfinite(normalizer.mean).all()
    results = [TrainImages(index, (40, 48), 32)[(i, 0)] for i in range(len(index))]
    bad = [msg for x, msg in results if x is None]
    assert len(bad) == 1 and "bad\\xff.jpg: not an image" in bad[0]
    bad[0].encode("utf-8")  # printable and loggable: no lone surrogates


def test_a_non_utf8_class_folder_is_refused_with_its_name(folder: Path):
    os.rename(os.fsencode(folder / "train" / "flower"), os.fsencode(folder / "train") + b"/fl\xf6wer")
    with pytest.raises(UserError, match=r"fl\\xf6wer: class folder name is not valid UTF-8"):
        scan(folder / "train")


def test_pixels_of_a_readable_image_are_unchanged_by_the_safe_open(tmp_path: Path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "x.png")
    assert torch.equal(load_image(tmp_path / "x.png"), torch.from_numpy(arr).permute(2, 0, 1))


def test_symbolic_link_loops_and_devices_neither_hang_nor_enter_the_index(folder: Path):
    china = folder / "train" / "china"
    (china / "loop").symlink_to(".")  # a folder link to itself: not followed
    (china / "up").symlink_to("../..")
    (china / "self.jpg").symlink_to("self.jpg")  # ELOOP when opened
    (china / "zero.jpg").symlink_to("/dev/zero")  # endless bytes
    (china / "gone.jpg").symlink_to("missing.jpg")
    index = scan(folder / "train")
    assert not any(Path(f).name in ("self.jpg", "zero.jpg", "gone.jpg") for f in index.files)
    assert all(not f.startswith(("china/loop/", "china/up/")) for f in index.files)
    with pytest.raises(UserError, match="zero.jpg: not a regular file"):
        load_image(china / "zero.jpg")
