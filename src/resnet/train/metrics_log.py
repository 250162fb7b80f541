"""The run's machine-readable metrics log, and the summary of a finished run.

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

from resnet.errors import UserError
from resnet.io import read_input_text, write_output
from resnet.safe_json import JSONError, parse_json

#: Largest metrics.jsonl read: a 600k-iteration run logged every 10 iterations is ~10 MB.
MAX_METRICS_BYTES = 256 << 20


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
            write_output(path, "".join(json.dumps(r) + "\n" for r in self.records), owned=True)
        self.tb = None

    def enable_tensorboard(self, log_dir: Path) -> None:
        self.tb = require_tensorboard()(str(log_dir))

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self.path is not None:
            write_output(self.path, json.dumps(record) + "\n", owned=True, append=True)
        if self.tb is not None and "iteration" in record and "split" in record:
            for key, value in record.items():
                if key not in ("iteration", "split") and isinstance(value, int | float):
                    self.tb.add_scalar(f"{record['split']}/{key}", value, record["iteration"])

    def close(self) -> None:
        """Flush and close the TensorBoard writer (safe to call more than once)."""
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def well_formed(record: Any) -> bool:
    """Whether a metrics line is a record this project writes: a dict whose iteration is a whole number and
    whose numbers are numbers (a hand-edited or damaged line is skipped rather than crash a report)."""
    if not isinstance(record, dict):
        return False
    it = record.get("iteration")
    if ("split" in record or "event" in record or it is not None) and (type(it) is not int or it < 0):
        return False
    if "split" in record and not isinstance(record["split"], str):
        return False
    numbers = ("loss", "error", "lr", "img_per_s", "running_error")
    return all(type(record[k]) in (int, float) for k in numbers if k in record and record[k] is not None)


def read_metrics(path: str | Path, skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """All well-formed records of a metrics.jsonl; a torn last line from a killed process, or a damaged line,
    is skipped (and, when ``skipped`` is given, its line number appended there)."""
    records = []
    for n, line in enumerate(read_input_text(path, max_bytes=MAX_METRICS_BYTES, errors="replace").splitlines(), 1):
        try:
            record = parse_json(line)
        except JSONError:  # torn, damaged, nested too deeply, a key twice
            record = None
        if well_formed(record):
            records.append(record)
        elif line.strip() and skipped is not None:
            skipped.append(f"line {n}")
    return records


def summarize(records: list[dict[str, Any]], model: str, iteration: int) -> dict[str, Any]:
    """Final-iteration errors, and the val-selected test error (model selection never looks at test)."""

    def last(split: str) -> dict[str, Any] | None:
        rows = [r for r in records if r.get("split") == split]
        return rows[-1] if rows else None

    evals = {it: r for r in records if r.get("split") == "val" for it in [r["iteration"]]}
    tests = {r["iteration"]: r for r in records if r.get("split") == "test"}
    best_it = min(evals, key=lambda i: (evals[i]["error"], -i)) if evals else None
    train, val, test = last("train"), last("val"), last("test")
    warm = [r for r in records if r.get("event") == "warmup_end"]
    bn = [r for r in records if r.get("event") == "recomputed_bn" and r["iteration"] == iteration]
    return {
        "model": model,
        "iterations": iteration,
        "train_error": train["error"] if train else None,
        "val_error": val["error"] if val else None,
        "test_error": test["error"] if test else None,
        "best_val_iteration": best_it,
        "best_val_error": evals[best_it]["error"] if best_it is not None else None,
        "test_error_at_best_val": tests[best_it]["error"] if best_it in tests else None,
        "warmup_ended_at": warm[0]["iteration"] if warm else None,
        # train.recompute_bn: the final errors with BN statistics averaged over training batches
        "recomputed_bn": {k: v for k, v in bn[-1].items() if k not in ("iteration", "event", "requested")}
        if bn
        else None,
    }
