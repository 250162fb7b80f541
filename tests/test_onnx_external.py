"""ONNX external data: resolved against the model's own folder (a legitimate model works from any directory),
anything outside it refused in one line before onnxruntime sees the file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnet.cli import main
from test_rule_numbers import tiny_checkpoint

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """resnet8 exported by `resnet export`, its tensors moved to ``weights.bin`` beside the graph."""
    root = tmp_path_factory.mktemp("onnx")
    src = tiny_checkpoint(root / "r8.pt")
    assert main(["export", "--checkpoint", str(src), "--out", str(root / "inline.onnx")]) == 0
    proto = onnx.load(str(root / "inline.onnx"))
    folder = root / "model"
    folder.mkdir()
    onnx.save(proto, str(folder / "m.onnx"), save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert (folder / "weights.bin").stat().st_size > 100_000
    return folder / "m.onnx"


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


def test_a_model_with_external_data_works_from_any_directory(
    exported: Path, image: Path, tmp_path, monkeypatch, capsys
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["predict", str(image), "--checkpoint", str(exported), "--json"]) == 0
    assert '"probability"' in capsys.readouterr().out


def relocated(exported: Path, tmp_path: Path, location: str, length: int | None = None) -> Path:
    """A copy of the graph (beside a copy of its data) whose first external tensor points at ``location``."""
    folder = tmp_path / "copy"
    folder.mkdir(exist_ok=True)
    (folder / "weights.bin").write_bytes((exported.parent / "weights.bin").read_bytes())
    proto = onnx.load(str(exported), load_external_data=False)
    tensor = next(t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL)
    for entry in tensor.external_data:
        if entry.key == "location":
            entry.value = location
        if entry.key == "length" and length is not None:
            entry.value = str(length)
    onnx.save(proto, str(folder / "m.onnx"))
    return folder / "m.onnx"


def hostile_cases(tmp_path: Path) -> dict[str, tuple[str, int | None, str]]:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(os.urandom(1 << 20))
    (tmp_path / "copy").mkdir(exist_ok=True)
    (tmp_path / "copy/link.bin").symlink_to(secret)
    (tmp_path / "copy/zero.bin").symlink_to("/dev/zero")
    return {
        "climbs out": ("../secret.bin", None, "outside the model's folder"),
        "absolute": (str(secret), None, "outside the model's folder"),
        "a link": ("link.bin", None, "is a link"),
        "a device": ("/dev/zero", None, "outside the model's folder"),
        "a link to a device": ("zero.bin", None, "is a link"),
        "huge length": ("weights.bin", 2**40, "does not hold its"),
    }


def test_external_data_outside_the_folder_is_refused_before_onnxruntime(
    exported: Path, image, tmp_path, monkeypatch, capsys
):
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("onnxruntime was given the file")

    monkeypatch.setattr(ort, "InferenceSession", never)
    for name, (location, length, words) in hostile_cases(tmp_path).items():
        model = relocated(exported, tmp_path, location, length)
        monkeypatch.chdir(tmp_path)  # where "../secret.bin" of an unchecked reader would resolve differently
        assert main(["predict", str(image), "--checkpoint", str(model)]) == 2, name
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1 and "Traceback" not in err, (name, err)


def test_an_onnxruntime_refusal_is_one_line(tmp_path: Path, image, exported: Path, capsys):
    proto = onnx.load(str(exported))
    proto.graph.node[0].op_type = "NoSuchOperator"  # passes the readers, refused by onnxruntime
    onnx.save(proto, str(tmp_path / "bad.onnx"))
    assert main(["predict", str(image), "--checkpoint", str(tmp_path / "bad.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "bad.onnx" in err
