"""``predict`` feeds weights as their description says: the recorded resize (shorter side, then the centre crop)
of a checkpoint, safetensors file, model folder or ONNX/pt2 export, an image-folder run's ``data.eval_resize``,
and the family's default for files that record neither (written before the resize was recorded, or by an
array run). ``resnet eval`` of an image folder follows the same rule."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import resnet
from resnet.checkpoint import Checkpoint, load_checkpoint
from resnet.cli import main
from resnet.config import load_config
from resnet.data.cifar import load_cifar
from resnet.data.imagefolder import scan
from resnet.data.transforms import center_crop, load_image, resize_shorter
from resnet.errors import UserError
from resnet.eval.evaluate import EvalProtocol, evaluate_model
from resnet.interop.convert import convert_file
from resnet.interop.predict import Predictor
from resnet.metadata import Resize
from resnet.models import build_network


def checkpoint(resize: Resize | None) -> Checkpoint:
    """ResNet-20 with CIFAR-10's classes and statistics; BN statistics varied so that every pixel counts."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    vary = {"running_var": lambda t: torch.rand(t.shape, generator=g) + 0.5,
            "running_mean": lambda t: torch.randn(t.shape, generator=g) * 0.1}  # fmt: skip
    weights = build_network("resnet20").state_dict()
    state = {k: vary.get(k.rsplit(".", 1)[-1], lambda t: t)(v) for k, v in weights.items()}
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    return Checkpoint(
        model_name="resnet20",
        model_kwargs={},
        state_dict=state,
        preprocessing={
            "kind": "channel_mean_std",
            "mean": torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1),
            "std": torch.tensor([0.2470, 0.2435, 0.2616]).view(3, 1, 1),
        },
        classes=classes,
        input_size=[3, 32, 32],
        dataset="cifar10",
        resize=resize,
    )


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, cifar_subset: Path) -> list[Path]:
    """Four genuine CIFAR-10 test images as PNG files."""
    folder = tmp_path_factory.mktemp("images")
    test_x = load_cifar(cifar_subset).test_x[:4]
    paths = [folder / f"{i}.png" for i in range(len(test_x))]
    for path, x in zip(paths, test_x, strict=True):
        Image.fromarray(x.transpose(1, 2, 0)).save(path)
    return paths


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same weights, with a recorded resize of 40 (``r40``) and with none (``default``)."""
    folder = tmp_path_factory.mktemp("weights")
    checkpoint(Resize(40, (32, 32))).save(folder / "r40.pt")
    checkpoint(None).save(folder / "default.pt")
    return {"r40": folder / "r40.pt", "default": folder / "default.pt"}


def probabilities(source: Path | Predictor, images: list[Path]) -> torch.Tensor:
    """Each image's ten class probabilities, in class order."""
    predictor = source if isinstance(source, Predictor) else Predictor.from_file(source)
    report = predictor.predict(images, topk=10, progress=False)
    assert not report.skipped
    return torch.tensor([[p for _, _, p in sorted(pred.top)] for pred in report.predictions])


def test_the_recorded_resize_makes_the_views_and_the_family_default_stands_in_for_none(files, images):
    recorded, default = Predictor.from_file(files["r40"]), Predictor.from_file(files["default"])
    assert (recorded.resize, default.resize) == (40, 32)  # CIFAR's default: the native view (section 4.2)
    img = load_image(images[0])
    expected = center_crop(resize_shorter(img, 40), 32)
    assert torch.equal(recorded.views(img, "center")[0], expected)
    assert torch.equal(default.views(img, "center")[0], img)  # 32x32 resized to 32: the image itself
    assert not torch.equal(expected, img)
    # the same weights, fed differently: different scores
    assert not torch.allclose(probabilities(files["r40"], images), probabilities(files["default"], images))


def test_the_recorded_resize_survives_every_weights_format(files, images, tmp_path: Path):
    want = probabilities(files["r40"], images)
    convert_file(files["r40"], tmp_path / "w.safetensors")
    convert_file(tmp_path / "w.safetensors", tmp_path / "again.pt")
    for path in (tmp_path / "w.safetensors", tmp_path / "again.pt"):
        assert Predictor.from_file(path).resize == 40, path
        torch.testing.assert_close(probabilities(path, images), want)


def test_an_onnx_and_a_pt2_export_carry_the_recorded_resize(files, images, tmp_path: Path):
    pytest.importorskip("onnxruntime")
    want = probabilities(files["r40"], images)
    for fmt in ("onnx", "pt2"):
        out = tmp_path / f"model.{fmt}"
        assert main(["export", "--checkpoint", str(files["r40"]), "--format", fmt, "--out", str(out)]) == 0
        predictor = Predictor.from_file(out, backend="auto" if fmt == "onnx" else None)
        assert predictor.resize == 40, fmt
        if fmt == "onnx":  # the resize spelled out for other runtimes says the same
            import onnx

            props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
            assert json.loads(props["resnet.resize"])["shorter_side"] == 40
        torch.testing.assert_close(probabilities(predictor, images), want, atol=1e-4, rtol=1e-3)


def test_a_recorded_resize_smaller_than_the_crop_is_refused_on_load(files):
    obj = checkpoint(None).to_dict()
    Checkpoint.from_dict({**obj, "resize": {"shorter_side": 40, "crop": [32, 32]}})  # fine
    with pytest.raises(UserError, match=r"w\.pt: .*resize\.shorter_side.*at least the crop"):
        Checkpoint.from_dict({**obj, "resize": {"shorter_side": 20, "crop": [32, 32]}}, "w.pt")
    with pytest.raises(UserError, match=r"w\.pt: .*'resize' must be a dict"):
        Checkpoint.from_dict({**obj, "resize": 40}, "w.pt")


@pytest.fixture(scope="module")
def val_folder(tmp_path_factory: pytest.TempPathFactory, cifar_subset: Path) -> Path:
    """Forty genuine CIFAR-10 test images as an image folder, ``ROOT/val/<class>/<i>.png``."""
    root = tmp_path_factory.mktemp("folder")
    cifar = load_cifar(cifar_subset)
    for i, (x, y) in enumerate(zip(cifar.test_x[:40], cifar.test_y[:40], strict=True)):
        folder = root / "val" / cifar.classes[int(y)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x.transpose(1, 2, 0)).save(folder / f"{i}.png")
    return root


def test_eval_of_an_image_folder_uses_the_resize_predict_uses(files, val_folder: Path):
    index = scan(val_folder / "val", classes=checkpoint(None).classes)
    got = {}
    for key, side in (("r40", 40), ("default", 32)):  # resnet20's default: the native 32x32 view
        report = resnet.evaluate(files[key], val_folder, dataset="imagefolder", workers=0)
        ckpt = load_checkpoint(files[key])
        views = EvalProtocol(resize=side, size=32, workers=0)
        want = evaluate_model(ckpt.build_model(), index, ckpt.normalizer(), split="val", protocol=views)
        assert report.images == want.images == 40, key
        assert (report.top1_error, report.loss) == pytest.approx((want.top1_error, want.loss)), key
        got[key] = report.loss
    assert got["r40"] != pytest.approx(got["default"])  # the same weights, fed differently


def test_an_image_folder_runs_eval_resize_stands_in_where_the_weights_record_none():
    folder_run = load_config(None, ["data.dataset=imagefolder", "data.crop=32", "data.eval_resize=36"]).to_dict()
    array_run = load_config("cifar10/resnet20").to_dict()  # its eval_resize (256) is an unused default
    run = dataclasses.replace(checkpoint(None), config=folder_run)
    assert run.eval_resize().shorter_side == 36 and Predictor(run).resize == 36
    assert dataclasses.replace(checkpoint(None), config=array_run).eval_resize().shorter_side == 32
    recorded = dataclasses.replace(checkpoint(Resize(40, (32, 32))), config=folder_run)
    assert recorded.eval_resize().shorter_side == 40  # what the weights record comes first
