"""How the math runs on a device: the fast path on CUDA (bf16 autocast, channels_last), fp32 NCHW on CPU.

``train.precision`` and ``train.channels_last`` choose explicitly; "auto" means the fast path on CUDA only
(bf16 keeps BN and the loss in fp32 under autocast; on CPU, fp32 keeps runs bit-reproducible and exact to
the paper's recipe).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from resnet.config import Config


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
    channels_last = cfg.train.channels_last == "true" or (cfg.train.channels_last == "auto" and cuda)
    return Runtime(device, torch.bfloat16 if precision == "bf16" else None, channels_last)
