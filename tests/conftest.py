"""Shared fixtures: the genuine CIFAR-10 subset from ../shared, small fast recipes, run helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No test reaches the network: huggingface_hub (the [hub] extra) reads this when first imported.
os.environ["HF_HUB_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parents[1]
SUBSET = Path(os.environ.get("RESNET_CIFAR_SUBSET", ROOT.parent / "shared/data/cifar10-subset/cifar-10-batches-py"))


@pytest.fixture(scope="session")
def cifar_subset() -> Path:
    """The first 1017 images of each official CIFAR-10 batch (../shared; see its README)."""
    if not (SUBSET / "test_batch").is_file():
        pytest.skip(f"genuine CIFAR-10 subset not found at {SUBSET} (set RESNET_CIFAR_SUBSET)")
    return SUBSET


def tiny_overrides(**extra: object) -> list[str]:
    """A fast recipe: ResNet-8 on the digits, batch 32, logging every 2 iterations."""
    base = {
        "model.name": "resnet8",
        "data.dataset": "digits",
        "data.val_fraction": 0.1,
        "data.pad": 1,
        "data.flip": False,
        "schedule.iterations": 12,
        "schedule.milestones": [8, 10],
        "train.batch_size": 32,
        "train.log_every": 2,
        "train.eval_every": 6,
        "train.checkpoint_every": 4,
        "train.device": "cpu",
        "train.eval_batch_size": 256,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]
