"""The run directory's format: the files a run writes, how each is written and how it reads back.

A run directory holds ``config.yaml`` (the resolved recipe), ``invocations.jsonl`` (every invocation:
command line, git commit, versions, device, time; append-only, one JSON object a line, so a kill mid-write
tears at most its own last line) and ``run.json`` (the same list as one JSON document, rewritten from the
log each time), ``metrics.jsonl``, ``checkpoint.pt``, ``train.log`` and, once finished, ``summary.json``.
Run directories written before the log existed keep their ``run.json``; it seeds the log on the next start.

``metrics.jsonl`` holds one JSON object per line: training records (``split: "train"``: loss, error %, lr,
img/s), evaluation records (``split: "val"`` / ``"test"``: loss, error %) and events (the end of the
ResNet-110 warm-up, ...).

Training writes through this module and analysis reads through it, so neither imports the other; it sits
below both (torch-free: a report or a plot of finished runs needs no training code). Every write goes
through :func:`resnet.io.write_output` (the run directory's own files, ``owned=True``), every read through
:func:`resnet.io.read_input_text` and :mod:`resnet.safe_json`.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet.config import read_yaml
from resnet.io import read_input_text, write_output
from resnet.safe_json import JSONError, load_json, parse_json

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
INVOCATIONS = "invocations.jsonl"
RUN_RECORD = "run.json"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.pt"
LOG = "train.log"
LOCK = ".lock"

#: Files that mark a folder as a run directory (any one of them).
RUN_MARKERS = (LOCK, INVOCATIONS, RUN_RECORD, CHECKPOINT)
#: Files only ``resnet train`` writes into a run directory (a recipe beside a checkpoint is not a run: that is
#: how a fine-tuning project with ``model.init_from: checkpoint.pt`` looks).
RUN_RECORDS = (INVOCATIONS, RUN_RECORD)
#: The files ``resnet train`` writes in a run directory: a link, FIFO or folder planted under one of these
#: names is refused before anything in the run is read or written.
RUN_FILES = (CHECKPOINT, METRICS, CONFIG, RUN_RECORD, INVOCATIONS, SUMMARY, LOG)
#: Largest metrics.jsonl read: a 600k-iteration run logged every 10 iterations is ~10 MB.
MAX_METRICS_BYTES = 256 << 20
#: Largest run record read (invocations.jsonl of ~10,000 invocations; a metrics log is read by its own reader).
MAX_RECORD_BYTES = 16 << 20


@dataclass(frozen=True)
class RunDir:
    """The paths of a run directory's files."""

    root: Path

    @property
    def checkpoint(self) -> Path:
        return self.root / CHECKPOINT

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def info(self) -> Path:
        return self.root / RUN_RECORD

    @property
    def invocations(self) -> Path:
        return self.root / INVOCATIONS

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY

    @property
    def log(self) -> Path:
        return self.root / LOG


def read_run_config(root: str | Path) -> Any:
    """The data of a run directory's ``config.yaml`` (safe YAML, bounded size); callers check its shape."""
    return read_yaml(RunDir(Path(root)).config)


# The metrics log.


def write_metrics(path: Path, records: list[dict[str, Any]]) -> None:
    """Rewrite ``metrics.jsonl`` to hold exactly ``records`` (on resume: drops what a killed run wrote after
    its last checkpoint)."""
    write_output(path, "".join(json.dumps(r) + "\n" for r in records), owned=True)


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    """Append one record to ``metrics.jsonl`` (a torn last line is closed first, not glued onto)."""
    write_output(path, json.dumps(record) + "\n", owned=True, append=True)


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


# The invocation records.


def append_invocation(run: RunDir, record: dict[str, Any]) -> None:
    """Append one invocation to the run's log, then rewrite ``run.json`` from it.

    The log is only ever appended to; ``run.json`` is then rewritten from it (atomically), so a torn or
    hand-damaged ``run.json`` loses nothing.
    """
    if not run.invocations.exists():  # a run directory of an earlier version: its run.json seeds the log
        old = _invocations_of_run_json(run.info)
        if old is None and run.info.is_file():  # damaged: kept aside for a person to read, never overwritten
            os.replace(run.info, run.root / f"{RUN_RECORD}.damaged")
        _append_lines(run.invocations, old or [])
    _append_lines(run.invocations, [record])
    everything = read_invocations(run.root)
    write_output(run.info, json.dumps({"invocations": everything}, indent=2) + "\n", owned=True)


def _append_lines(path: Path, records: list[dict[str, Any]]) -> None:
    """Append JSON lines durably (a torn last line, a kill mid-write, is closed first, not glued onto)."""
    write_output(path, "".join(json.dumps(r) + "\n" for r in records), owned=True, append=True)


def _invocations_of_run_json(path: Path) -> list[dict[str, Any]] | None:
    """The invocations an old-style run.json lists; None when it is missing or damaged (torn, not a dict)."""
    try:
        data = load_json(read_input_text(path, max_bytes=MAX_RECORD_BYTES, errors="replace"), str(path))
    except (OSError, ValueError):  # UserError is a ValueError
        return None
    invs = data.get("invocations") if isinstance(data, dict) else None
    return [i for i in invs if isinstance(i, dict)] if isinstance(invs, list) else None


def read_invocations(root: Path) -> list[dict[str, Any]]:
    """Every recorded invocation of a run directory (damaged lines skipped), oldest first."""
    log = RunDir(root).invocations
    if not log.exists():
        return _invocations_of_run_json(RunDir(root).info) or []
    found = []
    for line in read_input_text(log, max_bytes=MAX_RECORD_BYTES, errors="replace").splitlines():
        with contextlib.suppress(JSONError):
            rec = parse_json(line)
            if isinstance(rec, dict):
                found.append(rec)
    return found
