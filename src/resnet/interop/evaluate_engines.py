"""``resnet eval --backend/--precision`` and ``resnet eval model.onnx``: an array dataset's test error through
an inference engine (resnet.interop.backends), with its top-1 agreement and error against fp32.

The test data is rebuilt from the recipe the checkpoint (or the ``.onnx`` file's ``resnet.recipe``) records;
converted weights record only their dataset, whose test split is the same for every recipe (CIFAR).
int8 calibrates on the first 1024 *training* images (never the evaluated split), as a deployment would.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from resnet.checkpoint import Checkpoint, load_checkpoint
from resnet.config import DataConfig
from resnet.data.datasets import DATASETS, is_folder_dataset, load_dataset
from resnet.errors import UserError
from resnet.eval.evaluate import EvalProtocol, EvalReport, evaluate_model
from resnet.interop import backends
from resnet.interop.convert import load_any
from resnet.interop.pretrained import is_pretrained_dir
from resnet.interop.pt2 import check_pt2_flags, checkpoint_from_pt2, is_pt2, pt2_engine

#: Training images the int8 activation ranges are calibrated on.
CALIBRATION_IMAGES = 1024


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Our checkpoint or run directory, or (through ``convert``'s reader) ``.safetensors`` weights with our
    metadata and a ``save_pretrained`` folder: what ``resnet eval`` takes besides ``.onnx`` files."""
    if Path(path).suffix == ".safetensors" or is_pretrained_dir(path):
        return load_any(path).checkpoint
    return load_checkpoint(path)


def array_data_config(
    ckpt: Checkpoint, path: str | Path, data_dir: str | None, dataset: str | None = None
) -> DataConfig:
    """The data ``ckpt`` is tested on: its recipe's, or for converted CIFAR weights (no recipe) their dataset's
    standard test split; ``data_dir`` (``--data-dir``) where the files are; ``dataset`` another registered
    dataset to test on instead (the recipe's split settings kept)."""
    cfg = ckpt.recipe(str(path))
    if dataset is not None and dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if cfg is not None:
        data_cfg = cfg.data
        if dataset is not None:
            data_cfg.dataset = dataset
    elif (dataset or ckpt.dataset) in DATASETS:
        # Converted weights record no recipe, only their dataset: its test split is the same for every recipe.
        data_cfg = DataConfig(dataset=dataset or ckpt.dataset)
    else:
        raise UserError(
            f"{path}: no recipe stored and the dataset is {ckpt.dataset!r}; `resnet eval` needs a checkpoint "
            "written by `resnet train` or converted weights of a registered dataset"
        )
    if data_dir:
        data_cfg.data_dir = data_dir
    return data_cfg


class _Recording(nn.Module):
    """Passes batches to ``engine`` and keeps the logits, so two engines can be compared image by image."""

    def __init__(self, engine: backends.Engine) -> None:
        super().__init__()
        self.engine = engine
        self.logits: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.engine(x).float()
        self.logits.append(out)
        return out


def evaluate_with_engine(
    path: str | Path,
    split: str,
    data_dir: str | None,
    limit: int | None,
    backend: str,
    precision: str,
    compile: bool = False,
    device: torch.device | None = None,
    *,
    dataset: str | None = None,
) -> EvalReport:
    """The report of :func:`resnet.interop.evaluate.evaluate` with ``engine``, and for reduced precision
    ``agreement`` (top-1 vs fp32) and ``fp32_error``. ``device`` (default the CPU) is where a torch engine
    runs; onnxruntime runs on the CPU only."""
    device = device or torch.device("cpu")
    onnx_file = str(path).lower().endswith(".onnx")
    if is_pt2(path):
        check_pt2_flags(path, backend, compile)
        concrete, ckpt = "pt2", checkpoint_from_pt2(path)
    else:
        concrete = backends.resolve(backend, precision, device, have_model=not onnx_file, compile=compile)
        ckpt = backends.checkpoint_from_onnx(path) if onnx_file else read_checkpoint(path)
    if is_folder_dataset(dataset or ckpt.dataset):
        raise UserError(
            "--backend/--precision/--compile and .onnx/.pt2 files evaluate array datasets (CIFAR, digits) here; for an "
            "image folder use `resnet predict --backend ... FOLDER`, or `resnet eval` on the checkpoint"
        )
    data = load_dataset(array_data_config(ckpt, path, data_dir, dataset))
    normalizer = ckpt.normalizer()
    model = None if onnx_file or concrete == "pt2" else ckpt.build_model(str(path))
    c, h, w = ckpt.input_size

    def make(prec: str, compiled: bool = False) -> backends.Engine:
        if concrete == "pt2":
            return pt2_engine(path, prec)
        if concrete == "torch":
            assert model is not None  # built above for every engine but .onnx/.pt2 files
            return backends.torch_engine(model, prec, device, compile=compiled)
        calib = None
        if prec == "int8":
            calib = normalizer(torch.from_numpy(data.train_x[:CALIBRATION_IMAGES]))
        onnx_path = path if onnx_file else None
        return backends.onnx_engine(prec, onnx_path=onnx_path, model=model, input_size=(c, h, w), calibration=calib)

    views = EvalProtocol(batch_size=256, limit=limit)

    def run(recording: _Recording) -> EvalReport:
        # Engines take and return CPU tensors (a torch engine moves batches to its device and back).
        return evaluate_model(
            recording, data, normalizer, split=split, protocol=views, device=torch.device("cpu"),
            name=ckpt.model_name, checkpoint=str(path), iteration=ckpt.iteration,
        )  # fmt: skip

    engine = _Recording(make(precision, compile))
    report = dataclasses.replace(run(engine), engine=engine.engine.describe())
    if precision == "fp32":
        return report
    reference = _Recording(make("fp32"))
    ref = run(reference)
    agreement = backends.top1_agreement(torch.cat(engine.logits), torch.cat(reference.logits))
    return dataclasses.replace(report, agreement=agreement, fp32_error=ref.top1_error)
