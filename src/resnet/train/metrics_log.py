"""The run's machine-readable metrics log as training keeps it: in memory, on disk, and in TensorBoard.

The file's format (``RUN_DIR/metrics.jsonl``, one JSON object a line) and its reader live in
:mod:`resnet.rundir_format`. The same list travels in every checkpoint, so on resume the file is rewritten
to match the checkpoint exactly: records written after it by a killed process are dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnet.errors import UserError
from resnet.rundir_format import append_metrics, write_metrics


def require_tensorboard() -> Any:
    """TensorBoard's ``SummaryWriter`` class, or one line saying how to install it (the ``[tb]`` extra)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("train.tensorboard needs the tensorboard package: pip install 'resnet-paper[tb]'") from None
    return SummaryWriter


class MetricsLog:
    """Append-only JSONL metrics with an in-memory copy (for checkpoints and resume)."""

    def __init__(self, path: Path | None, records: list[dict[str, Any]] | None = None) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = list(records or [])
        if path is not None:
            # Rewrite from the known records: drops lines a killed run wrote after its last checkpoint.
            write_metrics(path, self.records)
        self.tb = None

    def enable_tensorboard(self, log_dir: Path) -> None:
        self.tb = require_tensorboard()(str(log_dir))

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self.path is not None:
            append_metrics(self.path, record)
        if self.tb is not None and "iteration" in record and "split" in record:
            for key, value in record.items():
                if key not in ("iteration", "split") and isinstance(value, int | float):
                    self.tb.add_scalar(f"{record['split']}/{key}", value, record["iteration"])

    def close(self) -> None:
        """Flush and close the TensorBoard writer (safe to call more than once)."""
        if self.tb is not None:
            self.tb.close()
            self.tb = None
