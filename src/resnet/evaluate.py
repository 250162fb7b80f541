"""Evaluation: top-1 (and top-5) error and per-class error on a split, and ``resnet eval``.

CIFAR test protocol (section 4.2): "we only evaluate the single view of the original 32x32 image". BN
uses its running statistics (eval mode). Errors are in percent, as in the paper's tables.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet.data.loader import eval_batches
from resnet.data.preprocess import Normalizer
from resnet.errors import UserError
from resnet.metrics import per_class_error, topk_wrong


@dataclass
class EvalResult:
    n: int
    loss: float
    error: float  # top-1, %
    top5_error: float
    per_class: list[float] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # unreadable images left out (image folders)

    def as_record(self) -> dict[str, Any]:
        return {"loss": self.loss, "error": self.error, "top5_error": self.top5_error, "n": self.n}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    normalizer: Normalizer,
    *,
    batch_size: int = 1000,
    num_classes: int | None = None,
    autocast: contextlib.AbstractContextManager | None = None,
    channels_last: bool = False,
) -> EvalResult:
    """Evaluate on uint8 images already on the model's device; restores the model's train/eval mode."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=images.device)
    wrong1, wrong5 = [], []
    try:
        for x, y in eval_batches(images, labels, batch_size, normalizer):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast or contextlib.nullcontext():
                logits = model(x)
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
            wrong1.append(topk_wrong(logits, y, 1))
            wrong5.append(topk_wrong(logits, y, 5))
    finally:
        model.train(was_training)
    n = len(labels)
    if n == 0:
        raise UserError("cannot evaluate on an empty split")
    w1, w5 = torch.cat(wrong1), torch.cat(wrong5)
    k = num_classes or int(labels.max().item()) + 1
    return EvalResult(
        n=n,
        loss=loss_sum.item() / n,
        error=100.0 * w1.float().mean().item(),
        top5_error=100.0 * w5.float().mean().item(),
        per_class=per_class_error(w1.cpu(), labels.cpu(), k),
    )


def load_model(ckpt: dict[str, Any], path: str | Path) -> nn.Module:
    """The model a checkpoint describes, with its weights."""
    from resnet.models import create_model

    try:
        model = create_model(ckpt["model_name"], **ckpt.get("model_kwargs", {}))
    except KeyError:
        raise UserError(f"{path}: checkpoint names no model (use `resnet convert` for bare state_dicts)") from None
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise UserError(f"{path}: weights do not fit {ckpt['model_name']} ({str(e).splitlines()[0]})") from None
    return model


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
) -> dict[str, Any]:
    """``resnet eval``: rebuild the model, preprocessing and data of a run from its checkpoint and evaluate.

    Array datasets (CIFAR, digits) use the single original view. Image-folder runs and converted ImageNet
    weights use ``protocol`` (center, 10crop or multiscale; section 3.4) on ``DATA_DIR/val``.
    """
    from resnet.checkpoint import is_training_checkpoint, load_checkpoint
    from resnet.config import from_dict
    from resnet.distributed import local_device

    ckpt = load_checkpoint(path)
    if not is_training_checkpoint(ckpt):
        raise UserError(f"{path}: not a checkpoint of this project (convert it first with `resnet convert`)")
    model = load_model(ckpt, path)
    normalizer = Normalizer.from_state_dict(ckpt["preprocessing"])
    dev = local_device(device)
    model.to(dev)
    dataset = ckpt.get("dataset")
    if dataset in ("imagefolder", "imagenet"):
        from resnet.data.imagefolder import scan
        from resnet.protocols import evaluate_folder

        cfg = from_dict(ckpt["config"]) if ckpt.get("config") else None
        root = data_dir or (cfg.data.data_dir if cfg else None)
        if not root:
            raise UserError("pass --data-dir ROOT (an image folder with ROOT/val/<class>/*)")
        if split != "val":
            split = "val"  # image folders hold a val split only
        # A run's labels are its training folder's classes (the val folder may lack some); converted ImageNet
        # weights carry class *names*, so there the folder's own sorted order (= torchvision's) is used.
        classes = ckpt.get("classes") if dataset == "imagefolder" else None
        index = scan(Path(root).expanduser() / "val", classes=classes)
        if len(index.classes) != model.fc.out_features:  # e.g. 1000 ImageNet classes vs another folder  # type: ignore[union-attr]
            raise UserError(
                f"{root}/val has {len(index.classes)} classes but the model predicts {model.fc.out_features}"  # type: ignore[union-attr]
            )
        size = ckpt.get("input_size", [3, 224, 224])[-1]
        if workers is None:
            workers = cfg.data.workers if cfg else 4
        res = evaluate_folder(
            model,
            index,
            normalizer,
            protocol=protocol or "center",
            limit=limit,
            scores=scores,
            device=dev,
            workers=workers,
            resize=cfg.data.eval_resize if cfg else 256,
            size=size,
            progress=True,
        )
        classes = index.classes
    else:
        from resnet.data.datasets import load_dataset

        if protocol not in (None, "center"):
            raise UserError(f"--protocol {protocol} is for image folders; CIFAR is tested on the single 32x32 view")
        if not ckpt.get("config"):
            raise UserError(f"{path}: no recipe stored; `resnet eval` needs a checkpoint written by `resnet train`")
        cfg = from_dict(ckpt["config"])
        if data_dir:
            cfg.data.data_dir = data_dir
        data = load_dataset(cfg.data)
        x, y = data.split(split)
        if limit is not None:
            x, y = x[:limit], y[:limit]
        res = evaluate(
            model, torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev), normalizer, num_classes=data.num_classes
        )
        classes = data.classes
    return {
        "checkpoint": str(path),
        "model": ckpt["model_name"],
        "iteration": ckpt.get("iteration"),
        "split": split if protocol is None else f"{split}, {protocol}",
        "result": res,
        "classes": classes,
    }


def format_eval(report: dict[str, Any]) -> str:
    res: EvalResult = report["result"]
    lines = [
        f"{report['model']} at iteration {report['iteration']}, {report['split']} split ({res.n} images)",
        f"top-1 error: {res.error:.2f}%   top-5 error: {res.top5_error:.2f}%   loss: {res.loss:.4f}",
        "",
        f"{'class':<14} {'error %':>8}",
    ]
    for name, err in zip(report["classes"], res.per_class, strict=False):
        lines.append(f"{name:<14} {err:>8.2f}")
    if res.skipped:
        lines.append(f"\n{len(res.skipped)} unreadable image(s) skipped, e.g. {res.skipped[0]}")
    return "\n".join(lines)
