"""The metadata rule: one validated description travels with the weights (checkpoint, config.json, safetensors
header, ONNX, TorchScript); damaged fields are refused in one line naming them, older files are migrated on
read, and ``pretrained_cfg`` is timm's flat form, so timm's data pipeline reproduces ours."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import resnet
from resnet.checkpoint.typed import load_checkpoint
from resnet.cli import main
from resnet.errors import UserError
from resnet.metadata import ModelMetadata, Preprocessing, Resize
from test_rule_numbers import tiny_checkpoint

BAD_PREPROCESSING = {
    "std 0": ([0.5] * 3, [0.0, 1.0, 1.0], "'preprocessing.std' must be at least"),
    "std NaN": ([0.5] * 3, [float("nan"), 1.0, 1.0], "'preprocessing.std' must be finite"),
    "std 1e-30": ([0.5] * 3, [1e-30, 1.0, 1.0], "'preprocessing.std' must be at least"),
    "2 means": ([0.5] * 2, [1.0] * 2, "has 2 channel(s) but the model reads 3"),
    "5 means": ([0.5] * 5, [1.0] * 5, "has 5 channel(s) but the model reads 3"),
}


@pytest.mark.parametrize("case", list(BAD_PREPROCESSING))
def test_bad_preprocessing_is_refused_in_a_checkpoint(case, tmp_path: Path):
    mean, std, words = BAD_PREPROCESSING[case]
    obj = torch.load(tiny_checkpoint(tmp_path / "c.pt"), weights_only=True)
    obj["preprocessing"] = {"kind": "channel_mean_std", "mean": torch.tensor(mean).view(-1, 1, 1)}
    obj["preprocessing"]["std"] = torch.tensor(std).view(-1, 1, 1)
    torch.save(obj, tmp_path / "c.pt")
    with pytest.raises(UserError, match="damaged model description") as e:
        load_checkpoint(tmp_path / "c.pt")
    assert words in str(e.value)


@pytest.mark.parametrize("case", list(BAD_PREPROCESSING))
def test_bad_preprocessing_is_refused_in_config_json(case, tmp_path: Path):
    mean, std, words = BAD_PREPROCESSING[case]
    resnet.save_pretrained(resnet.load(tiny_checkpoint(tmp_path / "c.pt")), tmp_path / "f")
    cfg = json.loads((tmp_path / "f/config.json").read_text())
    cfg["preprocessing"].update(mean=mean, std=std, mean_shape=[len(mean), 1, 1], std_shape=[len(std), 1, 1])
    (tmp_path / "f/config.json").write_text(json.dumps(cfg).replace("NaN", '"NaN"'))
    with pytest.raises(UserError) as e:
        resnet.from_pretrained(tmp_path / "f")
    assert words in str(e.value) or "'preprocessing.std' must be numbers" in str(e.value)


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    root = tmp_path_factory.mktemp("meta")
    assert main(["export", "--checkpoint", str(tiny_checkpoint(root / "r8.pt")), "--out", str(root / "m.onnx")]) == 0
    return root / "m.onnx"


def legacy_props(meta: ModelMetadata) -> dict[str, str]:
    """ONNX metadata as ``resnet export`` wrote it before the schema: separate keys, a ``scale``, float32
    values widened to float64, nested lists, a long resize description."""
    pre = meta.preprocessing.state()
    widened = {k: pre[k].double().tolist() for k in ("mean", "std")}
    return {
        "resnet.resize": json.dumps({"shorter_side": 32, "filter": "bilinear", "antialias": True, "crop": [32, 32]}),
        "resnet.model_name": meta.model_name,
        "resnet.input_size": json.dumps(list(meta.input_size)),
        "resnet.preprocessing": json.dumps({"kind": "channel_mean_std", "scale": 1 / 255, **widened}),
        "resnet.classes": json.dumps(list(meta.classes)),
        "resnet.dataset": meta.dataset,
    }


def with_props(src: Path, dst: Path, props: dict[str, str]) -> Path:
    import onnx

    proto = onnx.load(str(src))
    del proto.metadata_props[:]
    for k, v in props.items():
        proto.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.save(proto, str(dst))
    return dst


def test_legacy_onnx_metadata_is_migrated_on_read(onnx_file: Path, tmp_path: Path):
    from resnet.interop.backends import checkpoint_from_onnx

    new = checkpoint_from_onnx(onnx_file).metadata()
    old = checkpoint_from_onnx(with_props(onnx_file, tmp_path / "old.onnx", legacy_props(new))).metadata()
    assert old == new  # the same description, whichever form the file holds
    assert old.preprocessing.to_json()["mean"] == [0.5, 0.5, 0.5]


def pre(mean: list, std: list, **more: object) -> str:
    return json.dumps({"kind": "channel_mean_std", "mean": mean, "std": std, **more})


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"resnet.classes": json.dumps({"0": "a"})}, "'classes' must be a non-empty list"),
        ({"resnet.classes": json.dumps(["a", "b"])}, "the model has 10 outputs but"),
        ({"resnet.classes": "[" * 100_000 + "]" * 100_000}, "nested 100,000 levels deep"),
        (
            {"resnet.preprocessing": json.dumps({"kind": "channel_mean_std", "scale": 1, "mean": [0], "std": [1]})},
            "scale",
        ),
        (
            {"resnet.preprocessing": json.dumps({"kind": "channel_mean_std", "mean": [0.5, 0.5], "std": [1, 1]})},
            "2 channel",
        ),
        (
            {"resnet.preprocessing": json.dumps({"kind": "channel_mean_std", "mean": [0, 0, 0], "std": [0, 1, 1]})},
            "std",
        ),
    ],
)
def test_damaged_onnx_metadata_is_one_line(change, words, onnx_file: Path, tmp_path: Path, capsys):
    from resnet.interop.backends import checkpoint_from_onnx

    props = {**legacy_props(checkpoint_from_onnx(onnx_file).metadata()), **change}
    bad = with_props(onnx_file, tmp_path / "bad.onnx", props)
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "a.png"), "--checkpoint", str(bad)]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_legacy_config_json_and_safetensors_headers_still_load(tmp_path: Path):
    st = pytest.importorskip("safetensors.torch")
    src = tiny_checkpoint(tmp_path / "c.pt")
    model = resnet.load(src)
    legacy = {  # config.json as save_pretrained wrote it before the schema (no resize, no timm keys)
        "format": "resnet-pretrained/1",
        "model_name": "resnet8",
        "model_kwargs": {},
        "preprocessing": {"kind": "channel_mean_std", "mean": [0.5] * 3, "std": [1.0] * 3}
        | {"mean_shape": [3, 1, 1], "std_shape": [3, 1, 1]},
        "classes": [f"c{i}" for i in range(10)],
        "input_size": [3, 32, 32],
        "dataset": "unknown",
    }
    (tmp_path / "f").mkdir()
    (tmp_path / "f/config.json").write_text(json.dumps(legacy))
    st.save_file(model.state_dict(), str(tmp_path / "f/model.safetensors"), metadata={"format": "resnet-pretrained/1"})
    assert resnet.from_pretrained(tmp_path / "f").pretrained_cfg == model.pretrained_cfg
    header = {"format": "resnet-safetensors/1", "iteration": "null"}
    header |= {k: json.dumps(v) for k, v in legacy.items() if k != "format"}
    st.save_file(model.state_dict(), str(tmp_path / "old.safetensors"), metadata=header)
    assert resnet.load(tmp_path / "old.safetensors").pretrained_cfg == model.pretrained_cfg


def test_pretrained_cfg_is_timms_flat_form():
    cifar = resnet.create_model("resnet20").pretrained_cfg
    assert cifar["input_size"] == (3, 32, 32) and cifar["crop_pct"] == 1.0 and cifar["crop_mode"] == "center"
    assert cifar["interpolation"] == "bilinear" and cifar["num_classes"] == 10 and cifar["architecture"] == "resnet20"
    assert cifar["first_conv"] == "conv1" and cifar["classifier"] == "fc"
    assert cifar["mean"] == (0.4914, 0.4822, 0.4465) and cifar["std"] == (0.247, 0.2435, 0.2616)
    imagenet = resnet.create_model("resnet18").pretrained_cfg
    assert imagenet["crop_pct"] == 0.875 and imagenet["input_size"] == (3, 224, 224)
    assert math.floor(224 / imagenet["crop_pct"]) == 256  # timm's eval resize: floor(size / crop_pct)
    assert imagenet["mean"] == (0.485, 0.456, 0.406) and len(imagenet["label_names"]) == 1000
    for side in range(8, 700):  # every crop_pct we write lands timm on our shorter side exactly
        shorter = round(side * 256 / 224)
        assert math.floor(side / Resize(shorter, (side, side)).crop_pct()) == shorter


def timm_data_config(cfg: dict) -> dict:
    """timm's ``resolve_data_config`` as its documentation states it: each key from ``pretrained_cfg``, else
    timm's defaults (224, bicubic, crop_pct 0.875, ImageNet mean/std, center)."""
    return {
        "input_size": cfg.get("input_size") or (3, 224, 224),
        "interpolation": cfg.get("interpolation") or "bicubic",
        "mean": cfg.get("mean") or (0.485, 0.456, 0.406),
        "std": cfg.get("std") or (0.229, 0.224, 0.225),
        "crop_pct": cfg.get("crop_pct") or 0.875,
        "crop_mode": cfg.get("crop_mode") or "center",
    }


def timm_eval_transform(img: Image.Image, dc: dict) -> torch.Tensor:
    """timm's eval transform as documented: shorter side to floor(size / crop_pct) (torchvision's Resize),
    centre crop, ToTensor, Normalize."""
    size = dc["input_size"][-1]
    scale = math.floor(size / dc["crop_pct"])
    w, h = img.size
    new = (scale, int(scale * h / w)) if w <= h else (int(scale * w / h), scale)
    if new != img.size:
        filt = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[dc["interpolation"]]
        img = img.resize(new, filt)
    top, left = round((img.height - size) / 2), round((img.width - size) / 2)
    x = torch.from_numpy(np.asarray(img.crop((left, top, left + size, top + size)), np.float32) / 255)
    mean, std = torch.tensor(dc["mean"]).view(3, 1, 1), torch.tensor(dc["std"]).view(3, 1, 1)
    return (x.permute(2, 0, 1) - mean) / std


def test_timms_data_config_gives_the_accuracy_of_resnet_eval(cifar_subset: Path, tmp_path: Path):
    """A converted akamaster-style ResNet-20 (seeded weights), evaluated through timm's data config, agrees
    with `resnet eval` image by image on the real CIFAR-10 test images."""
    from resnet.data.cifar import load_cifar
    from resnet.interop.evaluate import evaluate
    from test_akamaster import save_their_file, their_net

    src = save_their_file(their_net(20), tmp_path / "r20.th")
    assert main(["convert", str(src), "--to", str(tmp_path / "r20.pt"), "--from", "akamaster"]) == 0
    ours = evaluate(tmp_path / "r20.pt", cifar_subset).result
    model = resnet.load(tmp_path / "r20.pt")
    dc = timm_data_config(model.pretrained_cfg)
    test = load_cifar(cifar_subset, "cifar10")
    x = torch.stack([timm_eval_transform(Image.fromarray(a.transpose(1, 2, 0)), dc) for a in test.test_x])
    with torch.no_grad():
        predicted = model(x).argmax(1)
    assert torch.equal(predicted, ours.predictions)
    wrong = float((predicted != torch.from_numpy(test.test_y)).float().mean() * 100)
    assert wrong == pytest.approx(ours.error)


def test_the_schema_refuses_wrong_types_and_sizes():
    good = {**resnet.create_model("resnet20").pretrained_cfg, "model_kwargs": {"num_classes": 10}}
    from resnet.checkpoint.typed import resize_for

    assert ModelMetadata.from_json(good, "x", resize_for).to_json()["classes"][0] == "airplane"
    for key, value, words in [
        ("classes", {"a": 1}, "'classes' must be a non-empty list"),
        ("classes", ["a"] * 9, "names 9 classes but the head has 10"),
        ("input_size", [3, 32], "'input_size' must be"),
        ("model_kwargs", {"num_classes": "10"}, "'model_kwargs.num_classes' must be a whole number"),
        ("model_name", "../../etc", "'model_name' must be a model name"),
        ("preprocessing", {"kind": "other", "mean": [0, 0, 0], "std": [1, 1, 1]}, "'preprocessing.kind'"),
    ]:
        with pytest.raises(UserError, match=words.replace("(", r"\(").replace(")", r"\)")):
            ModelMetadata.from_json({**good, key: value}, "x", resize_for)
    pre = Preprocessing("channel_mean_std", (0.5,) * 3, (3, 1, 1), (1.0,) * 3, (3, 1, 1))
    assert pre.check(3, "x") is pre
