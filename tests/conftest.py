"""Shared fixtures: the genuine CIFAR-10 subset from ../shared, small fast recipes, run helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No test reaches the network: huggingface_hub (the [hub] extra) reads this when first imported.
os.environ["HF_HUB_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parents[1]
#: Seconds a test waits for a child process or a thread before calling it hung. A ceiling against hangs only,
#: never a speed test: a busy or slow machine must pass (the whole suite takes minutes; one wait of an hour
#: is a hang, not slowness). Waits for an event (a log line, a checkpoint) poll until it happens or this passes.
HANG = 3600.0
SUBSET = Path(os.environ.get("RESNET_CIFAR_SUBSET", ROOT.parent / "shared/data/cifar10-subset/cifar-10-batches-py"))


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """`resnet train` and `reproduce` set torch's intra-op threads (their thread policy); called in-process by
    a test, that must not change the numerics of the tests after it."""
    import sys

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None and before is not None and torch.get_num_threads() != before:
        torch.set_num_threads(before)


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


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 12-iteration ResNet-8 run directory on the digits (train once; copy it before changing it)."""
    from resnet.config import load_config
    from resnet.train.loop import fit

    out = tmp_path_factory.mktemp("trained") / "run"
    fit(load_config(None, tiny_overrides()), out, echo=False)
    return out
