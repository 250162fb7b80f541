"""Resuming a run: the checkpoint must describe the same data, and its train state must fit this run.

A run continued on other data would go on silently (another CIFAR copy with other labels) or crash on
another class count; so every checkpoint stores a fingerprint of its training data (dataset, classes, split
sizes, a hash of every label; :meth:`resnet.data.sources.ArraySource.fingerprint`) and a resume on data with
another fingerprint is refused. The data may move (``data.data_dir`` is a resumable key): only what it holds
counts. Checkpoints of earlier versions, which lack the fingerprint, are compared on dataset and classes.
"""

from __future__ import annotations

from typing import Any, Protocol

from resnet.checkpoint import Checkpoint
from resnet.errors import UserError
from resnet.train.rundir import RunDir
from resnet.train.state import TrainState


class _Source(Protocol):
    name: str
    classes: list[str]

    def fingerprint(self) -> dict[str, Any]: ...


def data_differences(stored: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """How two data fingerprints differ, in words (empty when they agree)."""
    out = []
    if stored.get("dataset") != now.get("dataset"):
        out.append(f"dataset {stored.get('dataset')} -> {now.get('dataset')}")
    if stored.get("classes") != now.get("classes"):
        out.append(f"{stored.get('classes')} -> {now.get('classes')} classes")
    a, b = stored.get("sizes") or {}, now.get("sizes") or {}
    out += [f"{split} images {a.get(split)} -> {b.get(split)}" for split in ("train", "val", "test")
            if a.get(split) != b.get(split)]  # fmt: skip
    if not out and stored.get("labels") != now.get("labels"):
        out.append("same sizes but other labels (other images, or another order)")
    return out


def check_same_data(run: RunDir, ckpt: Checkpoint | None, source: _Source) -> None:
    """Refuse to continue ``run`` on data other than the data its checkpoint was trained on."""
    if ckpt is None:
        return
    if ckpt.data is not None:
        differences = data_differences(ckpt.data, source.fingerprint())
    else:  # written before fingerprints: what the checkpoint always recorded
        differences = [f"dataset {ckpt.dataset} -> {source.name}"] if ckpt.dataset != source.name else []
        if list(ckpt.classes) != list(source.classes):
            differences.append(f"classes {len(ckpt.classes)} -> {len(source.classes)} (or other names)")
    if differences:
        raise UserError(
            f"{run.root} was trained on other data than it would continue on now ({'; '.join(differences[:3])}); "
            "resume it with the data it was trained on (--data-dir), or train into a new --out"
        )


def restore(state: TrainState, ckpt: Checkpoint, where: str) -> None:
    """Load the checkpoint's train state; a hand-made or damaged one fails with one line, not deep in torch."""
    train = ckpt.require_training(where)
    try:
        state.load_state_dict({**train, "model": ckpt.state_dict, "iteration": ckpt.iteration or 0})
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(
            f"{where}: damaged checkpoint: its training state does not fit this run ({type(e).__name__}: {first}); "
            "restore the file from a backup or train into a new --out"
        ) from None
