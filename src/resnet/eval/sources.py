"""Evaluate a model on a training data source's val/test split (what ``fit`` does at every eval point)."""

from __future__ import annotations

import contextlib
import logging

import torch
from torch import nn

from resnet.config import Config
from resnet.data.preprocess import Normalizer
from resnet.data.sources import ArraySource, FolderSource
from resnet.errors import UserError
from resnet.eval.arrays import evaluate
from resnet.eval.folders import evaluate_folder
from resnet.eval.metrics import EvalResult
from resnet.eval.shards import rank_and_world

logger = logging.getLogger(__name__)


def evaluate_split(
    source: ArraySource | FolderSource,
    split: str,
    model: nn.Module,
    normalizer: Normalizer,
    cfg: Config,
    device: torch.device,
    *,
    autocast: contextlib.AbstractContextManager | None = None,
    channels_last: bool = False,
    shard: bool = False,
) -> EvalResult:
    """Arrays: the single original view of every image (section 4.2). Image folders: the centre crop of the
    val split (the paper's curves in Fig. 4 are center-crop errors; 10-crop is for the final test).
    ``shard``: split over the ranks of the process group, each image counted once (:mod:`resnet.eval.shards`)."""
    if isinstance(source, FolderSource):
        if split != "val" or source.val is None:
            raise UserError(f"image folders have a val split only (ROOT/val), not {split!r}")
        res = evaluate_folder(
            model,
            source.val,
            normalizer,
            protocol="center",
            limit=cfg.train.eval_limit,
            device=device,
            workers=cfg.data.workers,
            resize=cfg.data.eval_resize,
            size=cfg.data.crop,
            autocast=autocast or contextlib.nullcontext(),
            strict=cfg.data.strict_decode,
            shard=shard,
        )
        if res.skipped and (
            not shard or rank_and_world()[0] == 0
        ):  # never silently: the error is over fewer images than the split holds
            more = f" and {len(res.skipped) - 3} more" if len(res.skipped) > 3 else ""
            named = "; ".join(res.skipped[:3])
            logger.warning("%s: left out %d unreadable image(s): %s%s", split, len(res.skipped), named, more)
        return res
    x, y = source.device_split(split, device)
    return evaluate(
        model,
        x,
        y,
        normalizer,
        batch_size=cfg.train.eval_batch_size,
        num_classes=len(source.classes),
        autocast=autocast,
        channels_last=channels_last,
        shard=shard,
    )
