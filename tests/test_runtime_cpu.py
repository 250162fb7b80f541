"""The CPU training fast path is opt-in: fp32 NCHW by default; bf16 warns on CPUs that would emulate it."""

from __future__ import annotations

import warnings

import pytest
import torch

from resnet.config import load_config
from resnet.train import runtime


def cfg(**sets: str):
    return load_config("cifar10/resnet20", [f"{k}={v}" for k, v in sets.items()])


def test_cpu_default_stays_fp32_nchw():
    rt = runtime.resolve_runtime(cfg(), torch.device("cpu"))
    assert rt.autocast_dtype is None and not rt.channels_last


def test_cpu_bf16_is_autocast_and_follows_the_measured_layout(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    for measured in (False, True):
        monkeypatch.setattr(runtime, "CPU_BF16_CHANNELS_LAST", measured)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            rt = runtime.resolve_runtime(cfg(**{"train.precision": "bf16"}), torch.device("cpu"))
        assert rt.autocast_dtype == torch.bfloat16 and rt.channels_last is measured
    explicit = runtime.resolve_runtime(
        cfg(**{"train.precision": "bf16", "train.channels_last": "false"}), torch.device("cpu")
    )
    assert not explicit.channels_last


def test_cpu_bf16_without_the_instructions_warns(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    with pytest.warns(UserWarning, match="AVX512_BF16/AMX"):
        runtime.resolve_runtime(cfg(**{"train.precision": "bf16"}), torch.device("cpu"))
