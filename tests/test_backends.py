"""Inference backends for predict and eval: torch / onnxruntime, fp32 / bf16 / int8, .onnx files as checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet.cli import main
from resnet.config import load_config
from resnet.data.datasets import load_digits_arrays
from resnet.errors import UserError
from resnet.interop import backends
from resnet.train.loop import fit

from conftest import tiny_overrides

pytest.importorskip("onnxruntime", reason="the [export] extra is not installed")
pytest.importorskip("onnxscript", reason="the [export] extra is not installed")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny) digits run and its ONNX export."""
    out = tmp_path_factory.mktemp("run") / "digits"
    fit(
        load_config(None, tiny_overrides(**{"schedule.iterations": 30, "schedule.milestones": [20, 25]})),
        out,
        echo=False,
    )
    assert main(["export", "--checkpoint", str(out), "--dynamic-batch", "--out", str(out / "model.onnx")]) == 0
    return out


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 360 test digits as PNG files (the real images predict reads)."""
    folder = tmp_path_factory.mktemp("digits")
    _, _, test_x, _, _ = load_digits_arrays()
    for i, pixels in enumerate(test_x[:120]):
        Image.fromarray(pixels[0]).save(folder / f"{i:03d}.png")
    return folder


def predict_json(capsys, *args: str) -> tuple[dict, str]:
    code = main(["predict", *args, "--json", "--topk", "10"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out), err


def probabilities(doc: dict) -> np.ndarray:
    rows = []
    for p in doc["predictions"]:
        row = np.zeros(10)
        for t in p["top"]:
            row[t["index"]] = t["probability"]
        rows.append(row)
    return np.array(rows)


def test_onnxruntime_and_onnx_files_give_the_torch_probabilities(run: Path, digit_files: Path, capsys):
    ref, _ = predict_json(capsys, str(digit_files), "--checkpoint", str(run))
    ort_ckpt, _ = predict_json(capsys, str(digit_files), "--checkpoint", str(run), "--backend", "onnxruntime")
    onnx_file, _ = predict_json(capsys, str(digit_files), "--checkpoint", str(run / "model.onnx"))
    auto, _ = predict_json(capsys, str(digit_files), "--checkpoint", str(run), "--backend", "auto")
    for doc in (ort_ckpt, onnx_file, auto):
        assert len(doc["predictions"]) == 120
        np.testing.assert_allclose(probabilities(doc), probabilities(ref), atol=1e-5)


def test_int8_reports_its_agreement_with_fp32(run: Path, digit_files: Path, capsys):
    doc, err = predict_json(capsys, str(digit_files), "--checkpoint", str(run), "--precision", "int8")
    line = next(x for x in err.splitlines() if "agrees with fp32" in x)
    assert "onnxruntime int8" in line and "of 120 images" in line
    agree = float(line.rsplit("(", 1)[1].rstrip("%)"))
    ref, _ = predict_json(capsys, str(digit_files), "--checkpoint", str(run))
    measured = 100 * np.mean(probabilities(doc).argmax(1) == probabilities(ref).argmax(1))
    assert agree == pytest.approx(measured, abs=0.05) and agree >= 90.0
    assert not np.allclose(probabilities(doc), probabilities(ref), atol=1e-4)  # really quantised


@pytest.mark.skipif(not backends.cpu_has_bf16(), reason="this CPU has no AVX512_BF16/AMX")
def test_bf16_on_the_torch_backend(run: Path, digit_files: Path, capsys):
    doc, err = predict_json(capsys, str(digit_files), "--checkpoint", str(run), "--precision", "bf16")
    assert "torch bf16: top-1 agrees with fp32" in err
    ref, _ = predict_json(capsys, str(digit_files), "--checkpoint", str(run))
    assert np.abs(probabilities(doc) - probabilities(ref)).max() < 0.05


def test_eval_through_engines_and_onnx_files(run: Path, capsys):
    assert main(["eval", str(run)]) == 0
    torch_out = capsys.readouterr().out
    assert main(["eval", str(run / "model.onnx")]) == 0
    onnx_out = capsys.readouterr().out
    assert "engine: onnxruntime fp32" in onnx_out
    error = torch_out.splitlines()[1]
    assert error in onnx_out.splitlines()  # same top-1 / top-5 error and loss to the printed digits
    assert main(["eval", str(run), "--precision", "int8"]) == 0
    out = capsys.readouterr().out
    assert (
        "engine: onnxruntime int8; top-1 agrees with fp32 on" in out and f"fp32 top-1 error {error.split()[2]}" in out
    )


@pytest.mark.parametrize(
    ("backend", "precision", "onnx_file", "words"),
    [
        ("torch", "int8", False, "int8 runs on onnxruntime"),
        ("onnxruntime", "bf16", False, "bf16 runs on the torch backend"),
        ("torch", "fp32", True, "an .onnx file runs on onnxruntime"),
        ("tpu", "fp32", False, "unknown backend"),
        ("auto", "fp8", False, "unknown precision"),
    ],
)
def test_impossible_combinations_are_refused_in_one_line(backend, precision, onnx_file, words):
    with pytest.raises(UserError, match=words):
        backends.resolve(backend, precision, torch.device("cpu"), have_model=not onnx_file)


def test_bad_onnx_files_fail_in_one_line(run: Path, tmp_path: Path, digit_files: Path, capsys):
    (tmp_path / "junk.onnx").write_bytes(b"\x00not a protobuf at all" * 10)
    import onnx

    bare = onnx.load(str(run / "model.onnx"))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    for path, words in (
        (tmp_path / "junk.onnx", "not a readable ONNX file"),
        (tmp_path / "bare.onnx", "not written by `resnet export`"),
        (tmp_path / "none.onnx", "no such file"),
    ):
        assert main(["predict", str(digit_files / "000.png"), "--checkpoint", str(path)]) == 2
        err = capsys.readouterr().err
        assert words in err and str(path) in err and err.count("\n") == 1, err


def test_eval_and_predict_with_compile(run: Path, digit_files: Path, capsys):
    assert main(["eval", str(run)]) == 0
    error = capsys.readouterr().out.splitlines()[1]
    assert main(["eval", str(run), "--compile"]) == 0
    out = capsys.readouterr().out
    assert "engine: torch fp32 (compiled)" in out and error in out.splitlines()
    assert (
        main(
            ["predict", str(digit_files / "000.png"), "--checkpoint", str(run), "--backend", "onnxruntime", "--compile"]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "--compile applies to the torch backend" in err and err.count("\n") == 1


def test_eval_engines_run_on_the_named_device_and_on_the_cpu_for_auto(run: Path, monkeypatch):
    """A machine with a GPU, simulated: --device cuda moves the torch engine there, and is refused for
    onnxruntime; --device auto keeps engines on the CPU, so int8 still runs."""
    from resnet.interop import evaluate as ev

    gpu = torch.device("cuda", 0)
    monkeypatch.setattr(ev, "local_device", lambda requested: torch.device("cpu") if requested == "cpu" else gpu)
    seen: list[torch.device] = []
    real_engine = backends.torch_engine

    def recording_engine(model, precision, device, *, compile=False):  # noqa: ANN001, ANN202
        seen.append(device)
        return real_engine(model, precision, torch.device("cpu"), compile=compile)

    monkeypatch.setattr(backends, "torch_engine", recording_engine)
    ev.evaluate(run, backend="torch", device="cuda")
    assert seen == [gpu]
    with pytest.raises(UserError, match="onnxruntime backend runs on the CPU here"):
        ev.evaluate(run, precision="int8", device="cuda")
    report = ev.evaluate(run, precision="int8", device="auto")
    assert report.engine == "onnxruntime int8" and report.agreement > 0.9
    ev.evaluate(run, backend="torch", device="auto")
    assert seen == [gpu, torch.device("cpu")]
