"""Reading images of every kind, the test views, and ``resnet predict`` on real photos and broken files."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from resnet.checkpoint import save_checkpoint
from resnet.cli import main
from resnet.config import load_config
from resnet.data.cifar import load_cifar
from resnet.data.classes import IMAGENET_MEAN, IMAGENET_STD, imagenet_classes
from resnet.data.preprocess import Normalizer
from resnet.data.transforms import center_crop, load_image, resize_shorter, ten_crop
from resnet.errors import UserError
from resnet.interop.predict import Predictor, find_images
from resnet.models import build_network
from resnet.train.loop import fit

from conftest import tiny_overrides

sklearn_datasets = pytest.importorskip("sklearn.datasets", reason="the real sample photos ship with scikit-learn")
PHOTOS = [Path(p) for p in sklearn_datasets.load_sample_images().filenames]  # china.jpg 427x640, flower.jpg


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A real photo, shrunk so that every mode conversion below is quick."""
    with Image.open(PHOTOS[0]) as im:
        return im.convert("RGB").resize((48, 32))


def imagenet_checkpoint(path: Path, size: int = 64) -> Path:
    """A ResNet-18 checkpoint with 1000 ImageNet classes and torchvision's preprocessing at ``size`` x ``size``."""
    torch.manual_seed(0)
    model = build_network("resnet18")
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    save_checkpoint(
        path,
        {
            "model": model.state_dict(),
            "model_name": "resnet18",
            "model_kwargs": {"num_classes": 1000},
            "iteration": None,
            "preprocessing": {
                "kind": "channel_mean_std",
                "mean": torch.tensor(IMAGENET_MEAN).view(3, 1, 1),
                "std": torch.tensor(IMAGENET_STD).view(3, 1, 1),
            },
            "classes": imagenet_classes(),
            "input_size": [3, size, size],
            "dataset": "imagenet",
        },
    )
    return path


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "digits"
    fit(load_config(None, tiny_overrides()), out, echo=False)
    return out


# --- reading images ---------------------------------------------------------------------------------------


def saved(im: Image.Image, path: Path, **kwargs) -> Path:
    im.save(path, **kwargs)
    return path


def test_every_mode_becomes_8bit_rgb_or_gray(photo: Image.Image, tmp_path: Path):
    rgb = torch.from_numpy(np.array(photo)).permute(2, 0, 1)
    gray = torch.from_numpy(np.array(photo.convert("L")))
    assert torch.equal(load_image(saved(photo, tmp_path / "rgb.png")), rgb)
    assert torch.equal(load_image(saved(photo.convert("L"), tmp_path / "l.png")), gray.expand(3, -1, -1))
    assert torch.equal(load_image(saved(photo, tmp_path / "g.png"), channels=1), gray.unsqueeze(0))
    pal = photo.quantize(16)
    expected = torch.from_numpy(np.array(pal.convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(load_image(saved(pal, tmp_path / "p.png")), expected)
    # CMYK (TIFF keeps it lossless; Pillow's RGB<->CMYK conversion is exact for K = 0).
    assert torch.equal(load_image(saved(photo.convert("CMYK"), tmp_path / "cmyk.tif")), rgb)
    # 16-bit gray (a 16-bit PNG): 257 * v in 0..65535 is v in 0..255 again.
    wide = Image.fromarray(gray.numpy().astype(np.uint16) * 257)
    assert wide.mode == "I;16"
    assert torch.equal(load_image(saved(wide, tmp_path / "i16.png"), channels=1), gray.unsqueeze(0))
    as_i = Image.fromarray(gray.numpy().astype(np.int32) * 257)  # mode I (32-bit), as TIFF
    assert torch.equal(load_image(saved(as_i, tmp_path / "i32.tif"), channels=1), gray.unsqueeze(0))
    bilevel = load_image(saved(photo.convert("1"), tmp_path / "one.png"))
    assert set(bilevel.unique().tolist()) <= {0, 255}


def test_transparency_is_composited_over_white(photo: Image.Image, tmp_path: Path):
    rgba = photo.convert("RGBA")
    alpha = np.zeros((32, 48), dtype=np.uint8)
    alpha[:, 24:] = 255  # left half transparent, right half opaque
    rgba.putalpha(Image.fromarray(alpha))
    out = load_image(saved(rgba, tmp_path / "a.png"))
    assert (out[:, :, :24] == 255).all()
    assert torch.equal(out[:, :, 24:], torch.from_numpy(np.array(photo)).permute(2, 0, 1)[:, :, 24:])
    la = load_image(saved(rgba.convert("LA"), tmp_path / "la.png"), channels=1)
    assert (la[:, :, :24] == 255).all()


def test_exif_orientation_is_applied(photo: Image.Image, tmp_path: Path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display", as phones write it
    img = load_image(saved(photo, tmp_path / "rot.jpg", exif=exif))
    assert img.shape == (3, 48, 32)  # 48x32 on disk, shown (and read) upright as 32 wide, 48 tall


def test_broken_files_fail_with_one_line_naming_them(tmp_path: Path):
    data = PHOTOS[0].read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("this is not a picture\n")
    for name, reason in (("cut.jpg", "unreadable image"), ("text.jpg", "not an image"), ("gone.png", "no such file")):
        with pytest.raises(UserError) as e:
            load_image(tmp_path / name)
        assert str(e.value).startswith(str(tmp_path / name)) and reason in str(e.value)
        assert "\n" not in str(e.value)


# --- geometry ---------------------------------------------------------------------------------------------


def test_resize_shorter_keeps_aspect_dtype_and_antialiases():
    img = torch.zeros(3, 100, 300, dtype=torch.uint8)
    assert resize_shorter(img, 50).shape == (3, 50, 150)
    assert resize_shorter(img.transpose(1, 2), 256).shape == (3, 768, 256)
    assert resize_shorter(img, 50).dtype == torch.uint8
    assert resize_shorter(img.float(), 50).dtype == torch.float32
    # A one-pixel checkerboard shrunk 4x: antialiasing averages it to mid-gray, point sampling would not.
    checker = ((torch.arange(64).view(1, 64) + torch.arange(64).view(64, 1)) % 2 * 255).to(torch.uint8)
    small = resize_shorter(checker.expand(3, 64, 64), 16)
    assert (small.float() - 127.5).abs().max() <= 1.0


def test_center_crop_and_ten_crop_take_the_paper_views():
    img = torch.arange(3 * 7 * 9, dtype=torch.float32).view(3, 7, 9)
    # An odd margin (9 - 4 = 5) is split by Python's round, as torchvision splits it: offset 2.
    assert torch.equal(center_crop(img, 4), img[:, 2:6, 2:6])
    crops = ten_crop(img, 4)
    assert crops.shape == (10, 3, 4, 4)
    for i, (t, left) in enumerate([(0, 0), (0, 5), (3, 0), (3, 5)]):
        assert torch.equal(crops[i], img[:, t : t + 4, left : left + 4])
    assert torch.equal(crops[4], center_crop(img, 4))
    assert all(torch.equal(crops[5 + i], crops[i].flip(-1)) for i in range(5))
    with pytest.raises(ValueError, match="does not fit"):
        center_crop(img, 8)


# --- predicting -------------------------------------------------------------------------------------------


def test_ten_crop_averages_softmax_scores_not_logits(tmp_path: Path):
    predictor = Predictor.from_file(imagenet_checkpoint(tmp_path / "in.pt"))
    img = load_image(PHOTOS[1])
    views = predictor.views(img, "10crop")
    assert views.shape == (10, 3, 64, 64)
    # At 64x64 the views come from the image resized to 73 = round(64 * 256 / 224), as 224 from 256.
    assert torch.equal(views[4], center_crop(resize_shorter(img, 73), 64))
    assert torch.equal(predictor.views(img, "center")[0], views[4])
    with torch.no_grad():
        logits = predictor.model(predictor.normalizer(views))
    averaged = predictor.probabilities(views, 10)[0]
    torch.testing.assert_close(averaged, torch.softmax(logits, 1).mean(0))
    assert not torch.allclose(averaged, torch.softmax(logits.mean(0), 0), atol=1e-4)


def test_cifar_png_predictions_match_the_model_on_the_raw_arrays(cifar_subset: Path, tmp_path: Path):
    data = load_cifar(cifar_subset)
    images, folder = data.test_x[:12], tmp_path / "cifar"
    folder.mkdir()
    for i, x in enumerate(images):
        Image.fromarray(x.transpose(1, 2, 0)).save(folder / f"{i:02d}.png")
    torch.manual_seed(0)
    model = build_network("resnet20").eval()
    norm = Normalizer.fit("pixel_mean", data.train_x[:500])
    ckpt = {
        "model": model.state_dict(),
        "model_name": "resnet20",
        "model_kwargs": {"num_classes": 10},
        "preprocessing": norm.state_dict(),
        "classes": data.classes,
        "input_size": [3, 32, 32],
        "dataset": "cifar10",
    }
    save_checkpoint(tmp_path / "c.pt", ckpt)
    report = Predictor.from_file(tmp_path / "c.pt").predict(find_images([folder]), topk=3, batch_size=5)
    with torch.no_grad():
        expected = torch.softmax(model(norm(torch.from_numpy(images))), 1)
    assert [Path(p.path).name for p in report.predictions] == [f"{i:02d}.png" for i in range(12)]
    for pred, probs in zip(report.predictions, expected, strict=True):
        values, indices = probs.topk(3)
        assert [i for i, _, _ in pred.top] == indices.tolist()
        assert [c for _, c, _ in pred.top] == [data.classes[i] for i in indices.tolist()]
        np.testing.assert_allclose([p for _, _, p in pred.top], values.tolist(), rtol=1e-4, atol=1e-6)


def test_predict_cli_on_a_folder_reports_and_skips_broken_files(digits_run: Path, tmp_path: Path, capsys):
    folder = tmp_path / "imgs"
    (folder / "nested").mkdir(parents=True)
    digits = sklearn_datasets.load_digits()
    for i in range(5):
        pixels = np.round(digits.images[-(i + 1)] * (255 / 16)).astype(np.uint8)
        Image.fromarray(pixels).save(folder / ("nested" if i % 2 else ".") / f"digit{i}.png")
    shutil.copy(PHOTOS[0], folder / "photo.jpg")  # an RGB photo for a 1-channel 8x8 net: converted, resized
    data = PHOTOS[1].read_bytes()
    (folder / "cut.jpg").write_bytes(data[:2000])
    (folder / "fake.jpg").write_text("not an image")
    (folder / "notes.txt").write_text("ignored: not an image extension")

    assert main(["predict", str(folder), "--checkpoint", str(digits_run), "--topk", "3", "--json"]) == 1
    out, err = capsys.readouterr()
    doc = json.loads(out)
    names = sorted(Path(p["path"]).name for p in doc["predictions"])
    assert names == sorted([f"digit{i}.png" for i in range(5)] + ["photo.jpg"])
    assert sorted(Path(s["path"]).name for s in doc["skipped"]) == ["cut.jpg", "fake.jpg"]
    assert err.count("resnet: skipped") == 2 and "cut.jpg" in err and "fake.jpg" in err
    for p in doc["predictions"]:
        probs = [t["probability"] for t in p["top"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-6
        assert all(t["class"] == str(t["index"]) for t in p["top"])  # the run's own class names: "0".."9"
    # Batches of 2 give the same answers as one batch.
    assert main(["predict", str(folder), "--checkpoint", str(digits_run), "--json", "--batch-size", "2"]) == 1
    again = json.loads(capsys.readouterr().out)
    for a, b in zip(doc["predictions"], again["predictions"], strict=True):
        assert a["top"][0]["index"] == b["top"][0]["index"]
        assert abs(a["top"][0]["probability"] - b["top"][0]["probability"]) < 1e-5


def test_predict_cli_text_output_on_real_photos_with_imagenet_names(tmp_path: Path, capsys):
    ckpt = imagenet_checkpoint(tmp_path / "in.pt", size=224)
    assert main(["predict", *map(str, PHOTOS), "--checkpoint", str(ckpt), "--topk", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(PHOTOS[0]) and lines[3] == str(PHOTOS[1]) and len(lines) == 6
    names = set(imagenet_classes())
    for line in (lines[1], lines[2], lines[4], lines[5]):
        percent, rest = line.split("%", 1)
        assert 0.0 <= float(percent) <= 100.0 and rest.strip().rsplit(" (", 1)[0] in names


def test_predict_refuses_what_it_cannot_do(digits_run: Path, tmp_path: Path, capsys):
    assert main(["predict", str(PHOTOS[0]), "--checkpoint", str(digits_run), "--protocol", "10crop"]) == 2
    assert "CIFAR-style net" in capsys.readouterr().err
    (tmp_path / "a.jpg").write_text("nope")
    assert main(["predict", str(tmp_path / "a.jpg"), "--checkpoint", str(digits_run)]) == 2
    assert "none of the 1 files could be read" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "empty"), "--checkpoint", str(digits_run)]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tmp_path / "empty"), "--checkpoint", str(digits_run)]) == 2
    assert "no image files" in capsys.readouterr().err
    assert main(["predict", str(PHOTOS[0]), "--checkpoint", str(digits_run), "--topk", "0"]) == 2


def test_progress_bar_counts_images(digits_run: Path, capsys):
    predictor = Predictor.from_file(digits_run)
    report = predictor.predict(PHOTOS * 3, batch_size=2, progress=True)
    assert len(report.predictions) == 6
    assert "6/6" in capsys.readouterr().err


def test_predictor_uses_the_fast_path_with_the_same_answers(digits_run: Path):
    from resnet.checkpoint import load_checkpoint

    ckpt = load_checkpoint(digits_run)
    fast, plain = Predictor(ckpt), Predictor(ckpt, fast=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.model.modules())
    views = torch.cat([fast.views(load_image(p, 1), "center") for p in PHOTOS])
    torch.testing.assert_close(fast.probabilities(views, 1), plain.probabilities(views, 1), rtol=1e-4, atol=1e-5)


def test_images_given_by_name_are_read_whatever_their_extension(tmp_path: Path):
    buf = io.BytesIO()
    Image.open(PHOTOS[1]).save(buf, format="PNG")
    (tmp_path / "picture.data").write_bytes(buf.getvalue())
    assert find_images([tmp_path / "picture.data"]) == [tmp_path / "picture.data"]
    assert find_images([tmp_path]) == []  # in a folder only image extensions count
    assert load_image(tmp_path / "picture.data").shape == (3, 427, 640)
