"""``resnet eval``: a run's or checkpoint's error on its data, rebuilt from what the checkpoint records.

Array datasets (CIFAR, digits) use the single original view (section 4.2). Image-folder runs and converted
ImageNet weights use a test protocol (center, 10crop or multiscale; section 3.4) on ``DATA_DIR/val``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet.checkpoint import Checkpoint, load_checkpoint
from resnet.config import Config
from resnet.data.datasets import load_dataset
from resnet.data.imagefolder import scan
from resnet.errors import UserError
from resnet.eval.arrays import evaluate
from resnet.eval.folders import evaluate_folder
from resnet.eval.metrics import EvalResult
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
    backend: str | None = None,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Rebuild the model, preprocessing and data of a checkpoint and evaluate it; a report dict.

    ``backend``/``precision`` (or an ``.onnx`` file) go through an inference engine (array datasets)."""
    if backend is not None or precision != "fp32" or str(path).lower().endswith(".onnx"):
        if protocol not in (None, "center"):
            raise UserError(f"--protocol {protocol} is for image folders; CIFAR is tested on the single 32x32 view")
        from resnet.interop.evaluate_engines import evaluate_with_engine

        return evaluate_with_engine(path, split, data_dir, limit, backend or "auto", precision)
    ckpt = load_checkpoint(path)
    model = ckpt.build_model(str(path)).to(local_device(device))
    cfg = ckpt.recipe(str(path))
    if ckpt.dataset in ("imagefolder", "imagenet"):
        split = "val"  # image folders hold a val split only
        res, classes = _evaluate_folder(ckpt, cfg, model, data_dir, protocol, limit, scores, workers)
    else:
        res, classes = _evaluate_arrays(ckpt, cfg, model, path, split, data_dir, protocol, limit)
    return {
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
) -> tuple[EvalResult, list[str]]:
    if protocol not in (None, "center"):
        raise UserError(f"--protocol {protocol} is for image folders; CIFAR is tested on the single 32x32 view")
    if cfg is None:
        raise UserError(f"{path}: no recipe stored; `resnet eval` needs a checkpoint written by `resnet train`")
    if data_dir:
        cfg.data.data_dir = data_dir
    data = load_dataset(cfg.data)
    x, y = data.split(split)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    dev = next(model.parameters()).device
    res = evaluate(
        model, torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev), ckpt.normalizer(), num_classes=data.num_classes
    )
    return res, data.classes


def format_eval(report: dict[str, Any]) -> str:
    res: EvalResult = report["result"]
    lines = [
        f"{report['model']} at iteration {report['iteration']}, {report['split']} split ({res.n} images)",
        f"top-1 error: {res.error:.2f}%   top-5 error: {res.top5_error:.2f}%   loss: {res.loss:.4f}",
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
