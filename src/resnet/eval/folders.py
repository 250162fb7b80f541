"""Evaluation on an image folder's validation split with the paper's test protocols (see :mod:`resnet.eval.views`).

Scores are **softmax probabilities averaged** over the views, as the paper's authors state for their
results ("averaging softmax scores"); ``scores="logits"`` averages logits instead (fb.resnet.torch's
choice, for comparison). Top-1 and top-5 errors are reported; ``limit`` evaluates a fixed random subset of
that many images (seed 0), never "the first N" (which would be the first few classes).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from resnet.data.imagefolder import FolderIndex
from resnet.data.preprocess import Normalizer
from resnet.data.transforms import load_view
from resnet.errors import UserError
from resnet.eval.metrics import EvalResult, check_finite_logits, per_class_error
from resnet.eval.shards import gather_lists, merge, mine
from resnet.eval.views import MULTISCALE_SIZES, views


class ViewImages(Dataset):
    def __init__(
        self,
        index: FolderIndex,
        picks: list[int],
        protocol: str,
        channels: int = 3,
        resize: int = 256,
        size: int = 224,
        scales: tuple[int, ...] = MULTISCALE_SIZES,
    ) -> None:
        self.index, self.picks, self.protocol, self.channels = index, picks, protocol, channels
        self.resize, self.size, self.scales = resize, size, scales

    def __len__(self) -> int:
        return len(self.picks)

    def __getitem__(self, k: int) -> tuple[list[torch.Tensor] | None, int, str]:
        i = self.picks[k]
        try:
            vs = load_view(
                self.index.path(i),
                self.channels,
                lambda im: views(im, self.protocol, self.resize, self.size, self.scales),
            )
        except UserError as e:
            return None, self.index.labels[i], str(e)
        return vs, self.index.labels[i], ""


def _collate(batch: list) -> list:
    return batch


def view_scores(
    model: nn.Module, vs: list[torch.Tensor], normalizer: Normalizer, device: torch.device, scores: str = "softmax"
) -> torch.Tensor:
    """Averaged class scores of one image's views (views of equal size are batched together)."""
    groups: dict[tuple[int, ...], list[torch.Tensor]] = {}
    for v in vs:
        groups.setdefault(tuple(v.shape), []).append(v)
    total, n = None, 0
    for shape, group in groups.items():
        x = normalizer.at_size(shape[-2], shape[-1]).to(device)(torch.stack(group).to(device))
        out = check_finite_logits(model(x).float())
        out = out.softmax(dim=1) if scores == "softmax" else out
        total = out.sum(dim=0) if total is None else total + out.sum(dim=0)
        n += len(group)
    assert total is not None
    return total / n


@torch.no_grad()
def folder_scores(
    model: nn.Module,
    index: FolderIndex,
    normalizer: Normalizer,
    *,
    protocol: str = "center",
    limit: int | None = None,
    scores: str = "softmax",
    device: torch.device | None = None,
    workers: int = 4,
    batch_images: int = 32,
    autocast: contextlib.AbstractContextManager | None = None,
    progress: bool = False,
    resize: int = 256,
    size: int = 224,
    scales: tuple[int, ...] = MULTISCALE_SIZES,
    strict: bool = False,
    shard: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Averaged scores (images x classes), labels, and the unreadable files left out (``strict``: an
    unreadable file is an error instead, as ``data.strict_decode`` asks of training). ``shard``: under a
    process group each rank scores its share of the images and every rank gets them all, in order, equal to
    one process's (see :mod:`resnet.eval.shards`)."""
    if scores not in ("softmax", "logits"):
        raise UserError(f"unknown score averaging {scores!r}; choose softmax or logits")
    views(torch.zeros(3, 8, 8, dtype=torch.uint8), protocol, 8, 8, (8,))  # validates the protocol name
    device = device or next(model.parameters()).device
    picks = list(range(len(index)))
    if limit is not None and limit < len(index):
        g = torch.Generator().manual_seed(0)
        picks = sorted(torch.randperm(len(index), generator=g)[:limit].tolist())
    channels = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels
    per_batch = batch_images if protocol != "multiscale" else 1
    positions = [k for k in range(len(picks)) if not shard or mine(k // per_batch)]
    loader = DataLoader(
        ViewImages(index, [picks[k] for k in positions], protocol, channels, resize, size, scales),
        batch_size=per_batch,
        num_workers=min(workers, os.cpu_count() or 1),  # more processes than cores only thrash
        collate_fn=_collate,
    )
    classes = [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features
    parts = {
        "scores": torch.zeros(len(picks), classes),
        "labels": torch.zeros(len(picks), dtype=torch.int64),
        "readable": torch.zeros(len(picks), dtype=torch.int64),
    }
    seen, skipped = torch.zeros(len(picks), dtype=torch.int64), []
    was_training = model.training
    model.eval()
    try:
        from tqdm import tqdm

        at = iter(positions)
        # A bar only on a terminal: in a log file its redraws would be one line of \r-joined text.
        bar = progress and sys.stderr.isatty()
        for batch in tqdm(loader, desc=f"eval ({protocol})", unit="batch", disable=not bar):
            for vs, label, err in batch:
                k = next(at)
                seen[k] += 1
                if vs is None:
                    if strict:
                        raise UserError(f"{err} (data.strict_decode is on; turn it off to skip such files)")
                    skipped.append((k, err))
                    continue
                with autocast or contextlib.nullcontext():
                    parts["scores"][k] = view_scores(model, vs, normalizer, device, scores).cpu()
                parts["labels"][k], parts["readable"][k] = label, 1
    finally:
        model.train(was_training)
    if shard:
        merge(parts, seen)
        skipped = gather_lists(skipped)
    keep = parts["readable"].bool()
    if not keep.any():
        raise UserError(f"no readable images to evaluate in {index.root}")
    return parts["scores"][keep], parts["labels"][keep], [err for _, err in sorted(skipped)]


def evaluate_folder(model: nn.Module, index: FolderIndex, normalizer: Normalizer, **kw: Any) -> EvalResult:
    """Top-1 / top-5 / per-class error of ``model`` on the images of ``index`` (see :func:`folder_scores`)."""
    s, y, skipped = folder_scores(model, index, normalizer, **kw)
    top5 = s.topk(min(5, s.shape[1]), dim=1).indices
    wrong1 = top5[:, 0] != y
    wrong5 = ~(top5 == y[:, None]).any(dim=1)
    softmax = kw.get("scores", "softmax") == "softmax"
    # Per image in float64, summed in image order: a sharded evaluation gives the same number bit for bit.
    per_image = -s.clamp_min(1e-12).log().gather(1, y[:, None]).squeeze(1).double()
    loss = per_image.sum().item() / len(y) if softmax else float("nan")
    return EvalResult(
        n=len(y),
        loss=loss,
        error=100.0 * wrong1.float().mean().item(),
        top5_error=100.0 * wrong5.float().mean().item(),
        per_class=per_class_error(wrong1, y, s.shape[1]),
        skipped=skipped,
        predictions=top5[:, 0].clone(),
        labels=y,
    )
