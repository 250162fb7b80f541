"""``train.recompute_bn``: after the last iteration, evaluate once more with BN statistics averaged over
training batches (:mod:`resnet.eval.bn`), beside the moving-average result the run already logged.

The copy with averaged statistics is evaluated and discarded: the checkpoint keeps the weights and moving
averages training produced, so a run stays resumable and ``resnet eval --recompute-bn N`` gives the same
number later. The result is one metrics event (``event: "recomputed_bn"``) that the summary reports.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from resnet.config import Config
from resnet.data.preprocess import Normalizer
from resnet.data.sources import ArraySource, FolderSource
from resnet.errors import UserError
from resnet.eval.bn import recompute_bn, training_batches
from resnet.eval.sources import evaluate_split
from resnet.train.runtime import Runtime


def check_supported(cfg: Config, source: ArraySource | FolderSource) -> None:
    """Fail before training, not after it, where the recompute cannot run."""
    if cfg.train.recompute_bn and not isinstance(source, ArraySource):
        raise UserError("train.recompute_bn works on CIFAR/digits runs for now; set it to 0 for image folders")


def recomputed_bn_event(
    cfg: Config, source: ArraySource, model: nn.Module, normalizer: Normalizer, rt: Runtime, iteration: int
) -> dict[str, Any]:
    """The eval splits' errors with BN statistics averaged over ``cfg.train.recompute_bn`` training batches."""
    images, _ = source.device_split("train", rt.device)
    batches = training_batches(images, normalizer, cfg.train.batch_size, seed=cfg.train.seed)
    twin, used = recompute_bn(model, batches, cfg.train.recompute_bn)
    event: dict[str, Any] = {"iteration": iteration, "event": "recomputed_bn", "batches": used,
                             "requested": cfg.train.recompute_bn}  # fmt: skip
    for split in source.eval_splits():
        res = evaluate_split(source, split, twin, normalizer, cfg, rt.device, channels_last=rt.channels_last)
        event[f"{split}_error"] = res.error
        event[f"{split}_loss"] = res.loss
    return event
