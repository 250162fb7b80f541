"""Export: ONNX checked with onnxruntime against PyTorch at two batch sizes, TorchScript, metadata, missing extras."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from resnet.checkpoint import save_checkpoint
from resnet.cli import main
from resnet.errors import UserError
from resnet.interop.convert import load_any
from resnet.interop.export import default_output, export_checkpoint
from resnet.interop.pt2 import read_pt2
from resnet.models import build_network

ort = pytest.importorskip("onnxruntime", reason="the [export] extra is not installed")
onnx = pytest.importorskip("onnx", reason="the [export] extra is not installed")


def checkpoint(path: Path, name: str, size: int, **kwargs) -> Path:
    """Our checkpoint of ``name`` with random weights and BN statistics, native input ``size``."""
    torch.manual_seed(0)
    model = build_network(name, **kwargs)
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    classes = [f"class{i}" for i in range(model.fc.out_features)]
    save_checkpoint(
        path,
        {
            "model": model.state_dict(),
            "model_name": name,
            "model_kwargs": kwargs,
            "preprocessing": {
                "kind": "channel_mean_std",
                "mean": torch.full((3, 1, 1), 0.5),
                "std": torch.ones(3, 1, 1),
            },
            "classes": classes,
            "input_size": [3, size, size],
            "dataset": "unknown",
        },
    )
    return path


def relative_error(session: ort.InferenceSession, model: nn.Module, batch: int, size: int) -> float:
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        ref = model(x).numpy()
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape == ref.shape
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def test_resnet20_onnx_with_dynamic_batch_matches_pytorch(tmp_path: Path):
    ckpt = load_any(checkpoint(tmp_path / "r20.pt", "resnet20", 32, num_classes=10)).checkpoint
    res = export_checkpoint(ckpt, "onnx", tmp_path / "r20.onnx", dynamic_batch=True)
    assert res["max_rel_error"] < 1e-4  # export_checkpoint's own check (batches 1 and 4)
    session = ort.InferenceSession(str(tmp_path / "r20.onnx"), providers=["CPUExecutionProvider"])
    model = ckpt.build_model()  # the original eval-mode net, BN not folded
    for batch in (1, 7):
        assert relative_error(session, model, batch, 32) < 1e-4
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "r20.onnx")).metadata_props}
    meta = json.loads(props["resnet.metadata"])  # the one description (resnet.metadata.ModelMetadata)
    assert meta["model_name"] == "resnet20"
    assert meta["classes"] == [f"class{i}" for i in range(10)]
    assert meta["preprocessing"]["mean"] == [0.5, 0.5, 0.5] and meta["preprocessing"]["mean_shape"] == [3, 1, 1]
    assert meta["input_size"] == [3, 32, 32]
    assert meta["resize"] == {"shorter_side": 32, "crop": [32, 32], "interpolation": "bilinear", "crop_mode": "center"}


def test_resnet18_onnx_export_from_the_cli_at_64px(tmp_path: Path, capsys):
    src = checkpoint(tmp_path / "r18.pt", "resnet18", 64, num_classes=100)
    out = tmp_path / "deploy" / "r18.onnx"
    assert main(["export", "--checkpoint", str(src), "--format", "onnx", "--out", str(out)]) == 0  # any batch: default
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{out}: onnx, resnet18, input Nx3x64x64 (any batch); onnxruntime matches PyTorch")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    model = load_any(src).checkpoint.build_model()
    for batch in (1, 4):
        assert relative_error(session, model, batch, 64) < 1e-4


def test_onnx_takes_any_batch_by_default_and_static_batch_pins_it(tmp_path: Path, capsys):
    src = checkpoint(tmp_path / "r8.pt", "resnet8", 32, num_classes=10)
    ckpt = load_any(src).checkpoint
    export_checkpoint(ckpt, "onnx", tmp_path / "any.onnx")
    session = ort.InferenceSession(str(tmp_path / "any.onnx"), providers=["CPUExecutionProvider"])
    assert isinstance(session.get_inputs()[0].shape[0], str)  # symbolic
    assert relative_error(session, ckpt.build_model(), 4, 32) < 1e-4  # batch 4 runs
    out = tmp_path / "one.onnx"
    assert main(["export", "--checkpoint", str(src), "--static-batch", "--out", str(out)]) == 0
    assert "(batch 1)" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 32, 32]
    assert relative_error(session, ckpt.build_model(), 1, 32) < 1e-4
    assert main(["export", "--checkpoint", str(src), "--format", "pt2", "--static-batch"]) == 2
    assert "--static-batch pins an ONNX graph's batch" in capsys.readouterr().err


def test_pt2_export_round_trips_through_torch_export_load(tmp_path: Path, capsys):
    src = checkpoint(tmp_path / "r20.pt", "resnet20", 32, num_classes=10)
    assert main(["export", "--checkpoint", str(src), "--format", "pt2"]) == 0
    out = tmp_path / "r20.pt2"  # the default name
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{out}: pt2, resnet20, input Nx3x32x32 (any batch); torch.export.load matches")
    extra = {"resnet.json": ""}
    program = torch.export.load(str(out), extra_files=extra)
    meta = json.loads(extra["resnet.json"])
    described = json.loads(meta["resnet.metadata"])  # the one description (resnet.metadata), as in ONNX files
    assert described["model_name"] == "resnet20" and described["input_size"] == [3, 32, 32]
    model = load_any(src).checkpoint.build_model()
    for batch in (1, 4, 9):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(program.module()(x), model(x), rtol=1e-4, atol=1e-4)
    # read back by our reader too; a file that is not ours says so in one line
    assert json.loads(read_pt2(out)[1]["resnet.metadata"])["model_name"] == "resnet20"
    (tmp_path / "junk.pt2").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a readable torch.export"):
        read_pt2(tmp_path / "junk.pt2")


def test_torchscript_deprecation_is_said_once_not_as_torch_warnings(tmp_path: Path, capsys, monkeypatch):
    src = checkpoint(tmp_path / "r8.pt", "resnet8", 32, num_classes=10)
    trace = torch.jit.trace

    def noisy_trace(*args, **kwargs):  # what torch 2.14 does: several deprecation warnings per export
        for _ in range(4):
            warnings.warn("torch.jit.trace is deprecated, use torch.export", FutureWarning, stacklevel=2)
        return trace(*args, **kwargs)

    monkeypatch.setattr(torch.jit, "trace", noisy_trace)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning escaping the export would fail here
        assert main(["export", "--checkpoint", str(src), "--format", "torchscript"]) == 0
    err = capsys.readouterr().err
    assert err.count("deprecated") == 1 and "--format pt2" in err


def test_torchscript_export_runs_any_batch_and_carries_metadata(tmp_path: Path, capsys):
    src = checkpoint(tmp_path / "r20.pt", "resnet20", 32, num_classes=10, shortcut="C")
    assert main(["export", "--checkpoint", str(src), "--format", "torchscript"]) == 0
    out = tmp_path / "r20.torchscript.pt"  # the default: next to the checkpoint
    assert capsys.readouterr().out.startswith(f"{out}: torchscript, resnet20")
    extra = {"resnet.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(json.loads(extra["resnet.json"])["resnet.metadata"])["model_name"] == "resnet20"
    model = load_any(src).checkpoint.build_model()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-4, atol=1e-4)


def test_default_output_names():
    assert default_output("runs/x/checkpoint.pt", "onnx") == Path("runs/x/checkpoint.onnx")
    assert default_output("weights/r50.safetensors", "torchscript") == Path("weights/r50.torchscript.pt")


def test_default_output_of_a_run_directory(tmp_path: Path):
    assert default_output(tmp_path, "onnx") == tmp_path / "model.onnx"


def test_missing_export_extras_give_an_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    src = checkpoint(tmp_path / "r8.pt", "resnet8", 32, num_classes=10)
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # makes `import onnxscript` raise ImportError
    monkeypatch.setitem(sys.modules, "safetensors", None)
    assert main(["export", "--checkpoint", str(src)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "resnet: error: ONNX export needs onnxscript; pip install 'resnet-paper[export]'"
    assert not (tmp_path / "r8.onnx").exists()
    with pytest.raises(UserError, match=r"safetensors is not installed; pip install 'resnet-paper\[export\]'"):
        load_any(tmp_path / "w.safetensors")


def test_unknown_format_is_refused(tmp_path: Path):
    ckpt = load_any(checkpoint(tmp_path / "r8.pt", "resnet8", 32, num_classes=10)).checkpoint
    with pytest.raises(UserError, match="unknown export format 'tflite'"):
        export_checkpoint(ckpt, "tflite", tmp_path / "x")


def test_an_export_that_disagrees_with_pytorch_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    import resnet.interop.export as export_mod

    src = checkpoint(tmp_path / "r8.pt", "resnet8", 32, num_classes=10)
    monkeypatch.setattr(export_mod, "onnxruntime_max_relative_error", lambda *a, **k: 0.2)
    assert main(["export", "--checkpoint", str(src), "--out", str(tmp_path / "bad.onnx")]) == 2
    err = capsys.readouterr().err
    assert "onnxruntime disagrees with PyTorch (max relative error 2.0e-01 > 0.001)" in err
    assert not (tmp_path / "bad.onnx").exists()


def test_a_library_export_gets_the_tolerance_check_and_removes_its_failed_file(tmp_path: Path, monkeypatch):
    # Issue 20: the check and the clean-up lived in the CLI, so export_checkpoint's callers skipped them.
    import resnet.interop.export as export_mod
    from resnet.interop.convert import load_any

    src = checkpoint(tmp_path / "r8.pt", "resnet8", 32, num_classes=10)
    ckpt = load_any(src).checkpoint
    monkeypatch.setattr(export_mod, "onnxruntime_max_relative_error", lambda *a, **k: 0.2)
    with pytest.raises(UserError, match=r"onnxruntime disagrees with PyTorch \(max relative error 2.0e-01 > 0.001\)"):
        export_checkpoint(ckpt, "onnx", tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()
    with pytest.raises(UserError, match="> 0.1"):  # the caller's own tolerance
        export_checkpoint(ckpt, "onnx", tmp_path / "bad.onnx", tolerance=0.1)
    assert export_checkpoint(ckpt, "onnx", tmp_path / "ok.onnx", tolerance=0.5)["max_rel_error"] == 0.2
    assert (tmp_path / "ok.onnx").is_file()
    monkeypatch.setattr(export_mod, "onnxruntime_max_relative_error", lambda *a, **k: float("nan"))
    with pytest.raises(UserError, match="disagrees"):  # a NaN difference is no pass
        export_checkpoint(ckpt, "onnx", tmp_path / "nan.onnx")
    assert not (tmp_path / "nan.onnx").exists()
    monkeypatch.setattr(export_mod, "pt2_max_relative_error", lambda *a, **k: 0.2)
    with pytest.raises(UserError, match=r"torch.export.load disagrees with PyTorch .* > 0.001"):
        export_checkpoint(ckpt, "pt2", tmp_path / "bad.pt2")
    assert not (tmp_path / "bad.pt2").exists()


def test_discard_output_removes_only_what_resnet_wrote(tmp_path: Path):
    from resnet.io import discard_output, write_output

    write_output(tmp_path / "ours.bin", b"x")
    (tmp_path / "theirs.bin").write_bytes(b"y")
    (tmp_path / "link.bin").symlink_to(tmp_path / "theirs.bin")
    assert discard_output(tmp_path / "ours.bin") and not (tmp_path / "ours.bin").exists()
    assert not discard_output(tmp_path / "theirs.bin") and (tmp_path / "theirs.bin").read_bytes() == b"y"
    assert not discard_output(tmp_path / "link.bin") and (tmp_path / "link.bin").is_symlink()
    assert not discard_output(tmp_path / "missing.bin")


# Issue 12, defects 3 and 9: export names and the ONNX check.


def test_defect3_default_export_names_keep_everything_but_the_last_suffix(tmp_path: Path):
    assert default_output("a.seed0.pt", "onnx") == Path("a.seed0.onnx")
    assert default_output("a.seed1.pt", "onnx") == Path("a.seed1.onnx")
    assert default_output("w/r50.v2.safetensors", "torchscript") == Path("w/r50.v2.torchscript.pt")
    # The old rule cut at the first dot: w.torchscript.pt exported as TorchScript was its own output.
    assert default_output("w.torchscript.pt", "torchscript") == Path("w.torchscript.torchscript.pt")


def test_defect3_an_export_never_overwrites_its_input(tmp_path: Path, capsys):
    src = checkpoint(tmp_path / "w.torchscript.pt", "resnet8", 32, num_classes=10)
    before = src.read_bytes()
    assert main(["export", "--checkpoint", str(src), "--format", "torchscript"]) == 0
    assert src.read_bytes() == before and (tmp_path / "w.torchscript.torchscript.pt").is_file()
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(src), "--format", "torchscript", "--out", str(src)]) == 2
    assert "writing it would destroy the input" in capsys.readouterr().err
    assert main(["convert", str(src), "--to", str(src)]) == 2
    assert "--to" in capsys.readouterr().err and src.read_bytes() == before


def test_defect9_nan_outputs_fail_the_onnx_check(tmp_path: Path, capsys):
    src = checkpoint(tmp_path / "r8.pt", "resnet8", 32, num_classes=10)
    obj = torch.load(src, weights_only=True)
    obj["model"]["fc.bias"][3] = float("nan")
    torch.save(obj, src)
    assert main(["export", "--checkpoint", str(src), "--out", str(tmp_path / "nan.onnx")]) == 2
    err = capsys.readouterr().err
    # Refused as the weights are read, naming the tensor (before any export or output check).
    assert "damaged weights: 'fc.bias' holds NaN or Inf" in err and "relative error 0" not in err
    assert not (tmp_path / "nan.onnx").exists()


def test_defect9_nan_from_onnxruntime_alone_fails_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    src = checkpoint(tmp_path / "r8.pt", "resnet8", 32, num_classes=10)
    real = ort.InferenceSession

    class NaNSession:
        def __init__(self, *a, **k):
            self.s = real(*a, **k)

        def get_inputs(self):
            return self.s.get_inputs()

        def run(self, *a, **k):
            return [o * float("nan") for o in self.s.run(*a, **k)]

    monkeypatch.setattr(ort, "InferenceSession", NaNSession)
    assert main(["export", "--checkpoint", str(src), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "onnxruntime's outputs are NaN/Inf" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def onnx_user_probabilities(model_path: Path, image_path: Path) -> np.ndarray:
    """What a deployment does with nothing but the .onnx file and Pillow: resize and crop as ``resnet.resize``
    records, normalise as ``resnet.metadata``'s preprocessing records, run, softmax."""
    from PIL import Image

    meta = {p.key: p.value for p in onnx.load(str(model_path)).metadata_props}
    geometry, pre = json.loads(meta["resnet.resize"]), json.loads(meta["resnet.metadata"])["preprocessing"]
    assert geometry["filter"] == "bilinear" and geometry["antialias"] and not geometry["align_corners"]
    with Image.open(image_path) as im:
        im = im.convert("RGB")
    w, h, s = im.width, im.height, geometry["shorter_side"]
    size = (max(s, int(s * w / h)), s) if h <= w else (s, max(s, int(s * h / w)))
    im = im.resize(size, Image.BILINEAR)
    ch, cw = geometry["crop"]
    top, left = round((im.height - ch) / 2), round((im.width - cw) / 2)
    pixels = np.asarray(im.crop((left, top, left + cw, top + ch)), dtype=np.float32).transpose(2, 0, 1)
    mean = np.array(pre["mean"], np.float32).reshape(pre["mean_shape"])
    x = (pixels / np.float32(255) - mean) / np.array(pre["std"], np.float32).reshape(pre["std_shape"])
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: x[None].astype(np.float32)})[0][0]
    e = np.exp(logits - logits.max())
    return e / e.sum()


@pytest.mark.parametrize(("name", "size"), [("resnet18", 64), ("resnet20", 32)])
def test_onnx_user_reproduces_predict_probabilities_from_the_metadata(tmp_path: Path, name: str, size: int):
    """Real photos (427x640 and 640x427 would be better; scikit-learn's two are 640x427): the recorded resize
    filter and crop reproduce predict's probabilities, not only its top-1."""
    from resnet.interop.predict import Predictor

    datasets = pytest.importorskip("sklearn.datasets", reason="the real sample photos ship with scikit-learn")
    photos = [Path(p) for p in datasets.load_sample_images().filenames]
    src = checkpoint(tmp_path / f"{name}.pt", name, size, num_classes=10)
    export_checkpoint(load_any(src).checkpoint, "onnx", tmp_path / "m.onnx")
    report = Predictor.from_file(src).predict(photos, topk=10, progress=False)
    for pred, photo in zip(report.predictions, photos, strict=True):
        ours = np.zeros(10)
        for index, _, p in pred.top:
            ours[index] = p
        theirs = onnx_user_probabilities(tmp_path / "m.onnx", photo)
        assert np.abs(ours - theirs).max() < 2e-3, (photo.name, ours, theirs)
        assert ours.argmax() == theirs.argmax()


class _Planted:
    """A pickle that makes a folder when unpickled: proof that loading ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _tampered(src: Path, out: Path, change) -> Path:
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(out, "w") as w:
        for info in z.infolist():
            data = change(info.filename, z.read(info))
            if data is not None:
                w.writestr(info, data)
    return out


def test_a_pt2_that_would_unpickle_code_is_refused_before_torch_loads_it(tmp_path: Path):
    src = checkpoint(tmp_path / "r8.pt", "resnet8", 32, num_classes=10)
    assert main(["export", "--checkpoint", str(src), "--format", "pt2"]) == 0
    good = tmp_path / "r8.pt2"
    marker = tmp_path / "code-ran"
    evil = pickle.dumps(_Planted(marker))

    def pickled_weight(name: str, data: bytes) -> bytes:
        if name.endswith("model_weights_config.json"):
            return data.replace(b'"use_pickle": false', b'"use_pickle": true', 1)
        return evil if name.endswith("/weight_0") else data

    bad = _tampered(good, tmp_path / "bad.pt2", pickled_weight)
    with pytest.raises(UserError, match="marks pickled payloads, which could run code; refused"):
        read_pt2(bad)
    assert not marker.exists()
    with contextlib.suppress(Exception):  # torch itself would have run it: the check is what stops it
        torch.export.load(str(bad))
    assert marker.exists()
    marker.rmdir()
    extra = _tampered(good, tmp_path / "extra.pt2", lambda n, d: d)
    with zipfile.ZipFile(extra, "a") as z:
        z.writestr("archive/data/constants/custom_obj_0", evil)
    with pytest.raises(UserError, match="which `resnet export` never writes; refused"):
        read_pt2(extra)
    inputs = _tampered(good, tmp_path / "inputs.pt2", lambda n, d: evil if n.endswith("sample_inputs/model.pt") else d)
    with pytest.raises(UserError, match="holds more than tensors"):
        read_pt2(inputs)
    assert not marker.exists()
    assert main(["eval", str(bad), "--data-dir", str(tmp_path)]) == 2  # the commands refuse it in one line


def test_a_torch_without_torchscript_names_pt2(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch):
    src = checkpoint(tmp_path / "r8.pt", "resnet8", 32, num_classes=10)
    monkeypatch.delattr(torch.jit, "trace")  # a future torch that dropped TorchScript
    assert main(["export", "--checkpoint", str(src), "--format", "torchscript"]) == 2
    assert "ships no TorchScript; export with --format pt2" in capsys.readouterr().err
    assert not (tmp_path / "r8.torchscript.pt").exists()
