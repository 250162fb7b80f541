"""Evaluation as a library function: a model (or any logits callable) on a dataset's split, under a test protocol.

:func:`evaluate_model` is the core every evaluation goes through (``resnet eval``, :func:`resnet.evaluate`,
the ImageNet experiments): it takes what is evaluated (a model, or an inference engine that maps a normalised
batch to logits), the data (an in-memory :class:`~resnet.data.datasets.ArrayDataset` or an image folder's
:class:`~resnet.data.imagefolder.FolderIndex`), the preprocessing and the protocol, and returns a frozen
:class:`EvalReport`. Reading checkpoints and building engines happens above (``resnet.interop.evaluate``).

Array datasets (CIFAR, digits) are tested on the single native view (section 4.2); image folders on the
paper's test views (center, 10crop or multiscale; section 3.4).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from resnet.data.datasets import ArrayDataset
from resnet.data.imagefolder import FolderIndex
from resnet.data.preprocess import Normalizer
from resnet.errors import UserError
from resnet.eval.arrays import evaluate
from resnet.eval.bn import recompute_bn, training_batches
from resnet.eval.folders import evaluate_folder
from resnet.eval.metrics import EvalResult
from resnet.eval.views import PROTOCOLS

logger = logging.getLogger(__name__)

#: What :func:`evaluate_model` evaluates: a model, or a callable from a normalised float batch to logits.
Logits = nn.Module | Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class EvalProtocol:
    """How a split is tested: the views of each image and how many images, in what batches.

    ``views``: ``center`` (arrays: the single native view), ``10crop`` or ``multiscale`` (image folders only).
    ``resize``/``size``: an image folder's shorter side before cropping and the crop (the paper's 256/224).
    ``scores``: image folders average the views' ``softmax`` (the paper) or ``logits``. ``limit``: the first
    images of an array split, a fixed random subset (seed 0) of a folder. ``strict``: an unreadable image is an
    error instead of being left out.
    """

    views: str = "center"
    batch_size: int = 1000
    limit: int | None = None
    scores: str = "softmax"
    resize: int = 256
    size: int = 224
    workers: int = 4
    strict: bool = False
    progress: bool = False


@dataclass(frozen=True)
class BNAverage:
    """Also evaluate a copy whose BN statistics are averaged over ``batches`` training batches of
    ``batch_size`` images drawn with ``seed`` (:mod:`resnet.eval.bn`; array datasets)."""

    batches: int
    batch_size: int = 128
    seed: int = 0


@dataclass(frozen=True)
class RecomputedBN:
    """The errors with averaged BN statistics, and the training batches they were averaged over."""

    result: EvalResult
    batches: int


@dataclass(frozen=True)
class EvalReport:
    """One evaluation: the errors (``result``: top-1/top-5 error in %, loss, images, per class) and what was
    evaluated. ``protocol`` is the test views asked for (None: the dataset's default single view)."""

    result: EvalResult
    model: str
    split: str
    classes: tuple[str, ...]
    protocol: str | None = None
    checkpoint: str | None = None
    iteration: int | None = None
    recomputed_bn: RecomputedBN | None = None
    engine: str | None = None  # an inference engine's description (``--backend``/``--precision``)
    agreement: float | None = None  # reduced precision: the share of images whose top-1 matches fp32's
    fp32_error: float | None = None  # and fp32's top-1 error on the same images

    @property
    def top1_error(self) -> float:
        return self.result.error

    @property
    def top5_error(self) -> float:
        return self.result.top5_error

    @property
    def loss(self) -> float:
        return self.result.loss

    @property
    def images(self) -> int:
        return self.result.n

    @property
    def split_label(self) -> str:
        """``test``, or ``val, 10crop`` when a protocol was named: how reports name what was evaluated."""
        return self.split if self.protocol is None else f"{self.split}, {self.protocol}"

    def per_class_error(self) -> dict[str, float]:
        """Each class's top-1 error in % (NaN for a class without images)."""
        return dict(zip(self.classes, self.result.per_class, strict=False))


class _Callable(nn.Module):
    """A logits callable as a module, so the array evaluation can switch it to eval mode like a model."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def evaluate_model(
    model: Logits,
    data: ArrayDataset | FolderIndex,
    normalizer: Normalizer,
    *,
    split: str = "test",
    protocol: EvalProtocol | None = None,
    asked: str | None = None,
    device: torch.device | None = None,
    bn: BNAverage | None = None,
    name: str = "model",
    checkpoint: str | None = None,
    iteration: int | None = None,
) -> EvalReport:
    """The errors of ``model`` on ``data``'s ``split`` under ``protocol`` (default :class:`EvalProtocol`).

    ``asked`` is the protocol name the caller was given (recorded in the report; None: the default view).
    ``device``: where arrays are evaluated (default: the model's, the CPU for a callable). ``bn`` also
    evaluates a copy with BN statistics averaged over training batches (a model on array data only).
    ``name``, ``checkpoint`` and ``iteration`` describe what was evaluated in the report.
    """
    protocol = protocol or EvalProtocol()
    if protocol.views not in PROTOCOLS:
        raise UserError(f"unknown protocol {protocol.views!r}; choose one of {', '.join(PROTOCOLS)}")
    if protocol.limit is not None and (type(protocol.limit) is not int or protocol.limit < 1):
        raise UserError(f"--limit must be at least 1, got {protocol.limit!r}")
    if isinstance(data, FolderIndex):
        if bn is not None:
            raise UserError("--recompute-bn works on CIFAR/digits runs for now (image folders are not supported)")
        if not isinstance(model, nn.Module):
            raise UserError("an image folder is evaluated with a PyTorch model; pass the model, not a callable")
        res = evaluate_folder(
            model,
            data,
            normalizer,
            protocol=protocol.views,
            limit=protocol.limit,
            scores=protocol.scores,
            device=device or next(model.parameters()).device,
            workers=protocol.workers,
            resize=protocol.resize,
            size=protocol.size,
            progress=protocol.progress,
            strict=protocol.strict,
        )
        classes, recomputed = tuple(data.classes), None
    else:
        where = checkpoint or name
        res, recomputed = _evaluate_arrays(model, data, normalizer, split, protocol, device, bn, where)
        classes = tuple(data.classes)
    return EvalReport(res, name, split, classes, asked, checkpoint, iteration, recomputed)


def _evaluate_arrays(
    model: Logits,
    data: ArrayDataset,
    normalizer: Normalizer,
    split: str,
    protocol: EvalProtocol,
    device: torch.device | None,
    bn: BNAverage | None,
    where: str,
) -> tuple[EvalResult, RecomputedBN | None]:
    if protocol.views != "center":
        raise UserError(
            f"--protocol {protocol.views} is for image folders; {data.name} is tested on the single native view"
        )
    module = model if isinstance(model, nn.Module) else _Callable(model)
    if isinstance(model, nn.Module):
        _check_outputs(model, data, where)
    x, y = data.split(split)
    if protocol.limit is not None:
        x, y = x[: protocol.limit], y[: protocol.limit]
    params = next(module.parameters(), None)
    dev = device or (params.device if params is not None else torch.device("cpu"))
    images, labels = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
    k, batch = data.num_classes, protocol.batch_size
    res = evaluate(module, images, labels, normalizer, num_classes=k, batch_size=batch)
    if bn is None or bn.batches == 0:
        return res, None
    if not isinstance(model, nn.Module) or params is None:
        raise UserError("--recompute-bn needs the PyTorch model, not an inference engine or a callable")
    batches = training_batches(torch.from_numpy(data.train_x).to(dev), normalizer, bn.batch_size, seed=bn.seed)
    averaged, used = recompute_bn(model, batches, bn.batches)
    if used < bn.batches:
        logger.warning("the training set holds %d batches of %d; averaged over those", used, bn.batch_size)
    bn_res = evaluate(averaged, images, labels, normalizer, num_classes=k, batch_size=batch)
    return res, RecomputedBN(bn_res, used)


def _check_outputs(model: nn.Module, data: ArrayDataset, where: str) -> None:
    """A classifier for another number of classes would report a meaningless error: refuse it."""
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linear and linear[-1].out_features != data.num_classes:
        raise UserError(
            f"{where}: the model predicts {linear[-1].out_features} classes but {data.name} has {data.num_classes}"
        )
