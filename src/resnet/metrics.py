"""Errors as the paper reports them (top-k error in %), and the run's machine-readable metrics log.

``RUN_DIR/metrics.jsonl`` holds one JSON object per line: training records (``split: "train"``: loss,
error %, lr, img/s), evaluation records (``split: "val"`` / ``"test"``: loss, error %) and events (the end
of the ResNet-110 warm-up, ...). The same list travels in every checkpoint, so on resume the file is
rewritten to match the checkpoint exactly: records written after it by a killed process are dropped.
The analysis and plotting code reads only these files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from resnet.checkpoint import atomic_write_text


def topk_wrong(logits: torch.Tensor, target: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Per-sample bool: the target is not among the top ``k`` scores."""
    k = min(k, logits.shape[-1])
    top = logits.topk(k, dim=-1).indices
    return ~(top == target[:, None]).any(dim=-1)


def topk_error(logits: torch.Tensor, target: torch.Tensor, k: int = 1) -> float:
    """Top-k error in percent."""
    return 100.0 * topk_wrong(logits, target, k).float().mean().item()


def per_class_error(wrong: torch.Tensor, target: torch.Tensor, num_classes: int) -> list[float]:
    """Error (%) of each class; NaN for a class with no samples."""
    counts = torch.bincount(target, minlength=num_classes).double()
    errors = torch.bincount(target, weights=wrong.double(), minlength=num_classes)
    return [float("nan") if c == 0 else float(100.0 * e / c) for e, c in zip(errors, counts, strict=True)]


class MetricsLog:
    """Append-only JSONL metrics with an in-memory copy (for checkpoints and resume)."""

    def __init__(self, path: Path | None, records: list[dict[str, Any]] | None = None) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = list(records or [])
        if path is not None:
            # Rewrite from the known records: drops lines a killed run wrote after its last checkpoint.
            atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in self.records))
        self.tb = None

    def enable_tensorboard(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            from resnet.errors import UserError

            raise UserError("train.tensorboard needs the tensorboard package: pip install 'resnet-paper[tb]'") from None
        self.tb = SummaryWriter(str(log_dir))

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        if self.tb is not None and "iteration" in record and "split" in record:
            for key, value in record.items():
                if key not in ("iteration", "split") and isinstance(value, int | float):
                    self.tb.add_scalar(f"{record['split']}/{key}", value, record["iteration"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl (a torn last line from a killed process is ignored)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
