"""Preprocessing constants for weights that carry none: presets and user-given per-channel mean/std.

``resnet convert --preprocessing imagenet|cifar10`` or ``--mean M1,M2,M3 --std S1,S2,S3`` set what a
converted checkpoint records (pixels scaled to [0, 1], then ``(x - mean) / std`` per channel), for any source.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from resnet.data.datasets import PREPROCESSING
from resnet.errors import UserError

#: ``--preprocessing`` presets: per-channel (mean, std) of pixels in [0, 1], registered with the datasets.
PRESETS = PREPROCESSING
#: Per-channel mean / std of the CIFAR-10 training images (pixels in [0, 1]), the common CIFAR convention.
CIFAR10_MEAN, CIFAR10_STD = PREPROCESSING["cifar10"]

Stats = tuple[tuple[float, ...], tuple[float, ...]]


def preprocessing_stats(
    preset: str | None = None, mean: str | Sequence[float] | None = None, std: str | Sequence[float] | None = None
) -> Stats | None:
    """The per-channel (mean, std) the user asks for (``--preprocessing`` or ``--mean``/``--std``), checked."""
    if preset is not None and (mean is not None or std is not None):
        raise UserError("pass either --preprocessing or --mean/--std, not both")
    if preset is not None:
        if preset not in PRESETS:
            raise UserError(f"unknown --preprocessing {preset!r}; choose one of {', '.join(PRESETS)}")
        return PRESETS[preset]
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        raise UserError("--mean and --std go together (per-channel values of pixels in [0, 1])")
    try:
        m = tuple(float(v) for v in (mean.split(",") if isinstance(mean, str) else mean))
        s = tuple(float(v) for v in (std.split(",") if isinstance(std, str) else std))
    except (TypeError, ValueError):
        raise UserError(f"--mean {mean} --std {std}: expected comma-separated numbers such as 0.5,0.5,0.5") from None
    if len(m) != len(s) or not m or not all(math.isfinite(v) for v in m + s) or min(s) <= 0:
        raise UserError(f"--mean {mean} --std {std}: need one finite mean and positive std per channel")
    return m, s


def stats_entry(stats: Stats, channels: int, where: str) -> dict[str, Any]:
    mean_t, std_t = torch.tensor(stats[0]), torch.tensor(stats[1])
    if len(mean_t) == 1 and channels > 1:
        mean_t, std_t = mean_t.repeat(channels), std_t.repeat(channels)
    elif len(mean_t) != channels and channels == 1 and len(mean_t) == 3:
        mean_t, std_t = mean_t.mean().view(1), std_t.mean().view(1)  # a gray input: one shared constant
    if len(mean_t) != channels:
        raise UserError(f"{where}: the model reads {channels} channels but {len(mean_t)} mean/std values were given")
    return {"kind": "channel_mean_std", "mean": mean_t.view(-1, 1, 1), "std": std_t.view(-1, 1, 1)}
