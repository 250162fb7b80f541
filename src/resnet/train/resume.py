"""Resuming a run: the checkpoint must describe the same data, and its train state must fit this run.

A run continued on other data would go on silently (another CIFAR copy with other labels) or crash on
another class count; so every checkpoint stores a fingerprint of its training data (dataset, classes, split
sizes, a hash of every label; :meth:`resnet.data.sources.ArraySource.fingerprint`) and a resume on data with
another fingerprint is refused. The data may move (``data.data_dir`` is a resumable key): only what it holds
counts. Checkpoints of earlier versions, which lack the fingerprint, are compared on dataset and classes.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch

from resnet.checkpoint import Checkpoint
from resnet.errors import UserError
from resnet.rundir_format import RunDir
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
        problem = restored_problem(state)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
        problem = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"
    if problem:
        raise UserError(
            f"{where}: damaged checkpoint: its training state does not fit this run ({problem}); "
            "restore the file from a backup or train into a new --out"
        )


def _number(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def restored_problem(state: TrainState) -> str | None:
    """What is wrong with a train state that loaded without an error (torch checks shapes, not values)."""
    opt = state.optimizer
    for group in opt.param_groups:
        for key in ("lr", "momentum", "dampening", "weight_decay"):
            if not _number(group.get(key)) or group[key] < 0:
                return f"optimizer {key} is {group.get(key)!r}"
        for key in ("nesterov", "maximize", "differentiable", "foreach", "fused"):
            if group.get(key) is not None and not isinstance(group[key], bool):
                return f"optimizer {key} is {group[key]!r}"
        for p in group["params"]:
            st = opt.state.get(p, {})
            buf = st.get("momentum_buffer") if isinstance(st, dict) else "?"
            if buf is not None and not (
                isinstance(buf, torch.Tensor) and buf.shape == p.shape and buf.is_floating_point()
            ):
                return "optimizer momentum buffers do not fit the model"
    sch = state.schedule
    if sch.warming_up and sch.cfg.warmup_lr is None:
        return "the schedule is warming up, but the recipe has no warm-up"
    if not (sch.warmup_ended_at is None or type(sch.warmup_ended_at) is int) or not all(
        type(d) is int for d in sch.drops
    ):
        return "the schedule's iterations are not whole numbers"
    if not (sch.best is None or _number(sch.best)):
        return f"the schedule's best error is {sch.best!r}"
    loader = state.loader.state_dict()
    if any(type(v) is not int or v < 0 for v in loader.values()):
        return f"the data position is {loader}"
    return None
