"""How the math runs on a device: the fast path on CUDA (bf16 autocast, channels_last), fp32 NCHW on CPU.

``train.precision`` and ``train.channels_last`` choose explicitly; "auto" means the fast path on CUDA only
(bf16 keeps BN and the loss in fp32 under autocast; on CPU, fp32 keeps runs bit-reproducible and exact to
the paper's recipe).

The CPU fast path is opt-in: ``train.precision=bf16`` (with ``train.compile=default`` for the compiled
step) on CPUs that compute bf16 natively (AVX512_BF16 or AMX; oneDNN emulates it elsewhere, slower than
fp32, so a warning says so). There ``train.channels_last=auto`` follows :data:`CPU_BF16_CHANNELS_LAST`,
chosen by benchmarks/train_throughput.py (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from resnet.config import Config

#: channels_last under bf16 on CPU: measured with benchmarks/train_throughput.py --bf16 (docs/benchmarks.md).
CPU_BF16_CHANNELS_LAST = False


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512_BF16 or AMX), which oneDNN needs to gain from it."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: do not guess
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


@dataclass
class Runtime:
    """How the math runs on this device: the fast path on CUDA, fp32 NCHW eager on CPU by default."""

    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)


def resolve_runtime(cfg: Config, device: torch.device) -> Runtime:
    cuda = device.type == "cuda"
    precision = cfg.train.precision if cfg.train.precision != "auto" else ("bf16" if cuda else "fp32")
    cpu_bf16 = device.type == "cpu" and precision == "bf16"
    if cpu_bf16 and not cpu_has_bf16():
        warnings.warn(
            "train.precision=bf16 on a CPU without AVX512_BF16/AMX: bf16 is emulated there and slower than fp32",
            stacklevel=2,
        )
    auto_layout = cuda or (cpu_bf16 and CPU_BF16_CHANNELS_LAST)
    channels_last = cfg.train.channels_last == "true" or (cfg.train.channels_last == "auto" and auto_layout)
    return Runtime(device, torch.bfloat16 if precision == "bf16" else None, channels_last)
