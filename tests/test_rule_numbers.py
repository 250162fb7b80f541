"""The numbers rule: weights that cannot compute a number are refused where they are read, naming the first bad
tensor, and no probability or error rate is ever computed from non-finite logits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import resnet
from resnet.checkpoint import save_checkpoint
from resnet.checkpoint.transfer import transfer_weights
from resnet.checkpoint.typed import load_checkpoint
from resnet.cli import main
from resnet.data.preprocess import Normalizer
from resnet.errors import UserError
from resnet.eval.arrays import evaluate
from resnet.models import build_network

BAD = {
    "nan": ("fc.bias", lambda t: t.fill_(float("nan")), "holds NaN or Inf"),
    "inf": ("layer1.0.conv1.weight", lambda t: t.view(-1)[0:1].fill_(float("inf")), "holds NaN or Inf"),
    "huge": ("conv1.weight", lambda t: t.view(-1)[0:1].fill_(1e30), "holds values of 1e+30, beyond"),
    "int64": ("fc.weight", lambda t: t.to(torch.int64), "holds int64 values"),
}


def tiny_checkpoint(path: Path, damage: str | None = None) -> Path:
    torch.manual_seed(0)
    model = build_network("resnet8")
    state = model.state_dict()
    if damage is not None:
        key, fn, _ = BAD[damage]
        state[key] = fn(state[key].clone())
    save_checkpoint(
        path,
        {
            "model": state,
            "model_name": "resnet8",
            "model_kwargs": {},
            "preprocessing": {
                "kind": "channel_mean_std",
                "mean": torch.full((3, 1, 1), 0.5),
                "std": torch.ones(3, 1, 1),
            },
            "classes": [f"c{i}" for i in range(10)],
            "input_size": [3, 32, 32],
            "dataset": "unknown",
        },
    )
    return path


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("damage", list(BAD))
def test_damaged_weights_are_refused_by_every_command_naming_the_tensor(damage, tmp_path: Path, image, capsys):
    src = tiny_checkpoint(tmp_path / "bad.pt", damage)
    key, _, words = BAD[damage]
    commands = [
        ["predict", str(image), "--checkpoint", str(src)],
        ["convert", str(src), "--to", str(tmp_path / "out.safetensors")],
        ["export", "--checkpoint", str(src), "--format", "torchscript", "--out", str(tmp_path / "x.ts.pt")],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"damaged weights: {key!r} {words}" in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "out.safetensors").exists()  # convert never writes them
    with pytest.raises(UserError, match=f"{key!r}"):
        resnet.load(src)


def test_safetensors_and_pretrained_folders_with_nan_are_refused(tmp_path: Path):
    st = pytest.importorskip("safetensors.torch")
    good = tiny_checkpoint(tmp_path / "good.pt")
    assert main(["convert", str(good), "--to", str(tmp_path / "w.safetensors")]) == 0
    tensors = st.load_file(str(tmp_path / "w.safetensors"))
    from safetensors import safe_open

    with safe_open(str(tmp_path / "w.safetensors"), "pt") as f:
        header = f.metadata()
    tensors["fc.bias"][2] = float("nan")
    st.save_file(tensors, str(tmp_path / "w.safetensors"), metadata=header)
    with pytest.raises(UserError, match="'fc.bias' holds NaN"):
        resnet.load(tmp_path / "w.safetensors")
    resnet.save_pretrained(resnet.load(good), tmp_path / "folder")
    tensors = st.load_file(str(tmp_path / "folder/model.safetensors"))
    tensors["conv1.weight"][0, 0, 0, 0] = float("inf")
    st.save_file(tensors, str(tmp_path / "folder/model.safetensors"), metadata={"format": "resnet-pretrained/1"})
    with pytest.raises(UserError, match="'conv1.weight' holds NaN"):
        resnet.from_pretrained(tmp_path / "folder")


class NaNModel(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.fc = nn.Linear(1, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(x), self.fc.out_features)
        out[-1, 0] = float("nan")
        return out


def test_evaluate_computes_no_error_rate_from_non_finite_logits():
    images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    norm = Normalizer("channel_mean_std", torch.zeros(3, 1, 1), torch.ones(3, 1, 1))
    with pytest.raises(UserError, match="NaN/Inf outputs for 1 of 4"):
        evaluate(NaNModel(), images, torch.zeros(4, dtype=torch.long), norm)


def test_predict_on_an_onnx_graph_whose_output_is_nan_prints_no_probability(tmp_path: Path, image, capsys):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    src = tiny_checkpoint(tmp_path / "good.pt")
    assert main(["export", "--checkpoint", str(src), "--out", str(tmp_path / "m.onnx")]) == 0
    proto = onnx.load(str(tmp_path / "m.onnx"))
    bias = next(t for t in proto.graph.initializer if t.dims == [10])  # the classifier's bias
    bias.CopyFrom(onnx.numpy_helper.from_array(np.full(10, np.nan, np.float32), bias.name))
    onnx.save(proto, str(tmp_path / "m.onnx"))
    capsys.readouterr()
    assert main(["predict", str(image), "--checkpoint", str(tmp_path / "m.onnx"), "--json"]) == 2
    out, err = capsys.readouterr()
    assert "NaN/Inf outputs" in err and "nan" not in out.lower() and "Traceback" not in err


def test_init_from_with_a_damaged_classifier_is_refused(tmp_path: Path):
    src = tiny_checkpoint(tmp_path / "nan.pt", "nan")  # NaN head; a new 5-class head would have replaced it
    with pytest.raises(UserError, match="'fc.bias' holds NaN"):
        transfer_weights(load_checkpoint(src), build_network("resnet8", num_classes=5), str(src))
    obj = torch.load(tiny_checkpoint(tmp_path / "good.pt"), weights_only=True)
    obj["model"]["fc.weight"] = torch.zeros(10, 63)  # a head over 63 features: not this net's classifier
    ckpt = load_checkpoint(tiny_checkpoint(tmp_path / "x.pt"))
    ckpt.state_dict = obj["model"]
    with pytest.raises(UserError, match="damaged classifier"):
        transfer_weights(ckpt, build_network("resnet8", num_classes=5), "x.pt")


def test_a_class_list_shorter_or_longer_than_the_head_is_refused(tmp_path: Path, image, capsys):
    for classes in (9, 11):
        path = tmp_path / f"c{classes}.pt"  # edited by hand below: the output rule would refuse to write it again
        obj = torch.load(tiny_checkpoint(path), weights_only=True)
        obj["classes"] = [f"c{i}" for i in range(classes)]
        torch.save(obj, path)
        assert main(["predict", str(image), "--checkpoint", str(path)]) == 2
        assert f"names {classes} classes" in capsys.readouterr().err
    assert json.dumps(BAD["nan"][0])  # keep the table importable
