"""``resnet eval``: a run's or checkpoint's error on its data, rebuilt from what the checkpoint records.

Array datasets (CIFAR, digits) use the single original view (section 4.2). Image-folder runs and converted
ImageNet weights use a test protocol (center, 10crop or multiscale; section 3.4) on ``DATA_DIR/val``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet.checkpoint import Checkpoint, load_checkpoint
from resnet.config import Config, DataConfig
from resnet.data.datasets import DATASETS, load_dataset
from resnet.data.imagefolder import scan
from resnet.errors import UserError
from resnet.eval.arrays import evaluate
from resnet.eval.bn import recompute_bn as recompute_bn_stats
from resnet.eval.bn import training_batches
from resnet.eval.folders import evaluate_folder
from resnet.eval.metrics import EvalResult
from resnet.interop.convert import load_any
from resnet.interop.pretrained import is_pretrained_dir
from resnet.train.distributed import local_device


def evaluate_checkpoint(
    path: str | Path,
    split: str = "test",
    data_dir: str | None = None,
    *,
    protocol: str | None = None,
    limit: int | None = None,
    scores: str = "softmax",
    device: str = "auto",
    workers: int | None = None,
    recompute_bn: int = 0,
    backend: str | None = None,
    precision: str = "fp32",
    compile: bool = False,
) -> dict[str, Any]:
    """Rebuild the model, preprocessing and data of a checkpoint and evaluate it; a report dict.

    ``recompute_bn`` > 0 also evaluates a copy whose BN statistics are averaged over that many training
    batches (:mod:`resnet.eval.bn`); the report then holds both results. ``backend``/``precision`` (or an
    ``.onnx`` file) go through an inference engine (array datasets); ``compile`` runs the torch engine through
    torch.compile.
    """
    target = local_device(device)  # a bad or absent device fails before anything is read
    if limit is not None and (type(limit) is not int or limit < 1):
        raise UserError(f"--limit must be at least 1, got {limit!r}")
    if workers is not None and (type(workers) is not int or workers < 0):
        raise UserError(f"--workers must be 0 or more, got {workers!r}")
    if recompute_bn < 0:
        raise UserError(f"--recompute-bn takes a number of training batches (1 or more), got {recompute_bn}")
    if backend is not None or precision != "fp32" or compile or str(path).lower().endswith(".onnx"):
        if protocol not in (None, "center"):
            raise UserError(f"--protocol {protocol} is for image folders; CIFAR is tested on the single 32x32 view")
        if recompute_bn:
            raise UserError(
                "--recompute-bn needs the PyTorch model; drop --backend/--precision/--compile or the .onnx file"
            )
        from resnet.interop.evaluate_engines import evaluate_with_engine

        # An engine runs on the CPU unless a device is named: `auto` must not turn `--precision int8`
        # (onnxruntime, CPU only) into an error on a machine that happens to have a GPU.
        engine_device = None if device == "auto" else target
        return evaluate_with_engine(path, split, data_dir, limit, backend or "auto", precision, compile, engine_device)
    # .safetensors weights carry our metadata in their header (``resnet convert --to x.safetensors``), a
    # save_pretrained folder in its config.json; everything else is a checkpoint of ours or a run directory.
    foreign = Path(path).suffix == ".safetensors" or is_pretrained_dir(path)
    ckpt = load_any(path).checkpoint if foreign else load_checkpoint(path)
    model = ckpt.build_model(str(path)).to(target)
    cfg = ckpt.recipe(str(path))
    recomputed = None
    if ckpt.dataset in ("imagefolder", "imagenet"):
        if recompute_bn:
            raise UserError("--recompute-bn works on CIFAR/digits runs for now (image folders are not supported)")
        split = "val"  # image folders hold a val split only
        res, classes = _evaluate_folder(ckpt, cfg, model, data_dir, protocol, limit, scores, workers)
    else:
        res, classes, _ = _evaluate_arrays(ckpt, cfg, model, path, split, data_dir, protocol, limit)
        if recompute_bn:
            bn_res, _, used = _evaluate_arrays(ckpt, cfg, model, path, split, data_dir, protocol, limit, recompute_bn)
            recomputed = {"result": bn_res, "batches": used}
    return {
        "recomputed_bn": recomputed,
        "checkpoint": str(path),
        "model": ckpt.model_name,
        "iteration": ckpt.iteration,
        "split": split if protocol is None else f"{split}, {protocol}",
        "result": res,
        "classes": classes,
    }


def _evaluate_folder(
    ckpt: Checkpoint,
    cfg: Config | None,
    model: nn.Module,
    data_dir: str | None,
    protocol: str | None,
    limit: int | None,
    scores: str,
    workers: int | None,
) -> tuple[EvalResult, list[str]]:
    root = data_dir or (cfg.data.data_dir if cfg else None)
    if not root:
        raise UserError("pass --data-dir ROOT (an image folder with ROOT/val/<class>/*)")
    # A run's labels are its training folder's classes (the val folder may lack some); converted ImageNet
    # weights carry class *names*, so there the folder's own sorted order (= torchvision's) is used.
    index = scan(Path(root).expanduser() / "val", classes=ckpt.classes if ckpt.dataset == "imagefolder" else None)
    if len(index.classes) != len(ckpt.classes):  # e.g. 1000 ImageNet classes vs another folder
        raise UserError(f"{root}/val has {len(index.classes)} classes but the model predicts {len(ckpt.classes)}")
    res = evaluate_folder(
        model,
        index,
        ckpt.normalizer(),
        protocol=protocol or "center",
        limit=limit,
        scores=scores,
        device=next(model.parameters()).device,
        workers=workers if workers is not None else (cfg.data.workers if cfg else 4),
        resize=cfg.data.eval_resize if cfg else 256,
        size=ckpt.input_size[-1],
        progress=True,
        strict=cfg.data.strict_decode if cfg else False,
    )
    return res, index.classes


def _evaluate_arrays(
    ckpt: Checkpoint,
    cfg: Config | None,
    model: nn.Module,
    path: str | Path,
    split: str,
    data_dir: str | None,
    protocol: str | None,
    limit: int | None,
    recompute_bn: int = 0,
) -> tuple[EvalResult, list[str], int]:
    """The error on ``split``, the class names, and the batches BN statistics were averaged over (0: none)."""
    if protocol not in (None, "center"):
        raise UserError(f"--protocol {protocol} is for image folders; CIFAR is tested on the single 32x32 view")
    if cfg is not None:
        data_cfg = cfg.data
    elif ckpt.dataset in DATASETS:
        # Converted weights record no recipe, only their dataset: its test split is the same for every recipe.
        data_cfg = DataConfig(dataset=ckpt.dataset)
    else:
        raise UserError(
            f"{path}: no recipe stored and the dataset is {ckpt.dataset!r}; `resnet eval` needs a checkpoint "
            "written by `resnet train` or converted CIFAR weights"
        )
    if data_dir:
        data_cfg.data_dir = data_dir
    data = load_dataset(data_cfg)
    outputs = next(m for m in reversed(list(model.modules())) if isinstance(m, nn.Linear)).out_features
    if outputs != data.num_classes:
        raise UserError(f"{path}: the model predicts {outputs} classes but {data.name} has {data.num_classes}")
    x, y = data.split(split)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    dev, used = next(model.parameters()).device, 0
    if recompute_bn:  # the equal-weight average over training batches of the run's batch size
        batch = cfg.train.batch_size if cfg is not None else 128  # converted weights: the paper's CIFAR batch
        seed = cfg.train.seed if cfg is not None else 0  # the run's own batches, as train.recompute_bn uses
        batches = training_batches(torch.from_numpy(data.train_x).to(dev), ckpt.normalizer(), batch, seed=seed)
        model, used = recompute_bn_stats(model, batches, recompute_bn)
        if used < recompute_bn:
            print(f"note: the training set holds {used} batches of {batch}; averaged over those", file=sys.stderr)
    res = evaluate(
        model, torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev), ckpt.normalizer(), num_classes=data.num_classes
    )
    return res, data.classes, used


def format_eval(report: dict[str, Any]) -> str:
    res: EvalResult = report["result"]
    lines = [
        f"{report['model']} at iteration {report['iteration']}, {report['split']} split ({res.n} images)",
        f"top-1 error: {res.error:.2f}%   top-5 error: {res.top5_error:.2f}%   loss: {res.loss:.4f}",
    ]
    if report.get("recomputed_bn"):
        bn: EvalResult = report["recomputed_bn"]["result"]
        lines[-1] += "   (BN statistics: moving averages, as trained)"
        lines.append(
            f"top-1 error: {bn.error:.2f}%   top-5 error: {bn.top5_error:.2f}%   loss: {bn.loss:.4f}   "
            f"(BN statistics: averages over {report['recomputed_bn']['batches']} training batches)"
        )
    lines += [
        "",
        f"{'class':<14} {'error %':>8}",
    ]
    if "engine" in report:
        engine = f"engine: {report['engine']}"
        if "agreement" in report:
            engine += (
                f"; top-1 agrees with fp32 on {100.0 * report['agreement']:.2f}% of images; fp32 top-1 error "
                f"{report['fp32_error']:.2f}% ({res.error - report['fp32_error']:+.2f} points)"
            )
        lines.insert(2, engine)
    for name, err in zip(report["classes"], res.per_class, strict=False):
        lines.append(f"{name:<14} {err:>8.2f}")
    if res.skipped:
        lines.append(f"\n{len(res.skipped)} unreadable image(s) skipped, e.g. {res.skipped[0]}")
    return "\n".join(lines)
