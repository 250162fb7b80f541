"""The values every numeric recipe key accepts: one table, checked for every key of every recipe.

Floats must also be finite: NaN and inf never pass, whatever the key (a NaN threshold or learning rate
would otherwise train silently on nonsense). ``resnet.config.validate`` applies the table.
"""

from __future__ import annotations

import math
from typing import Any

from resnet.errors import UserError

_POSITIVE = (lambda v: v >= 1), "a positive whole number"
_OPTIONAL_POSITIVE = (lambda v: v is None or v >= 1), "null or a positive whole number"
_FLOAT32_MAX = 3.4e38  # an lr above float32's range becomes inf on the device
#: Every numeric key and the values it accepts (floats must also be finite: NaN and inf never pass).
RANGES: dict[str, tuple[Any, str]] = {
    "data.val_fraction": ((lambda v: 0 <= v < 1), "in [0, 1)"),
    # The paper pads 4 (section 4.2); 64 already pads a 32-pixel image to 160 (1024 asked 6.6 GB per batch).
    "data.pad": ((lambda v: 0 <= v <= 64), "0 or more pixels, at most 64 (the paper pads 4)"),
    # 3 KB per 32x32 image: 500,000 are 1.5 GB in memory (the default, 50,000, is 150 MB).
    "data.synthetic_size": ((lambda v: 1 <= v <= 500_000), "1 to 500,000 images"),
    "data.scale_min": _POSITIVE,
    "data.scale_max": _POSITIVE,
    "data.crop": _POSITIVE,
    "data.eval_resize": _POSITIVE,
    "data.lighting": ((lambda v: v >= 0), "0 (off) or more"),
    "data.mean_samples": _POSITIVE,
    "data.workers": ((lambda v: 0 <= v <= 512), "0 to 512"),
    "optim.lr": ((lambda v: 0 < v < _FLOAT32_MAX), "a positive number (below float32's 3.4e38)"),
    "optim.momentum": ((lambda v: 0 <= v < 1), "in [0, 1)"),
    "optim.weight_decay": ((lambda v: 0 <= v < 1), "in [0, 1)"),
    "schedule.iterations": _POSITIVE,
    "schedule.epochs": _OPTIONAL_POSITIVE,
    "schedule.milestones": ((lambda v: all(m >= 1 for m in v)), "a list of positive whole numbers"),
    "schedule.gamma": ((lambda v: 0 < v <= 1), "in (0, 1] (0.1 divides the lr by 10)"),
    "schedule.plateau_patience": _POSITIVE,
    "schedule.plateau_min_delta": ((lambda v: v >= 0), "0 or more points of error"),
    "schedule.warmup_lr": ((lambda v: v is None or 0 < v < _FLOAT32_MAX), "positive or null"),
    # Above 100 the warm-up ends after its first window (the tests use 101 to end it at a known iteration).
    "schedule.warmup_until_error": ((lambda v: v > 0), "a positive training error in percent"),
    "schedule.warmup_window": _POSITIVE,
    "train.batch_size": _POSITIVE,
    "train.seed": ((lambda v: 0 <= v < 2**63), "a whole number in [0, 2^63)"),
    "train.log_every": _POSITIVE,
    "train.eval_every": _POSITIVE,
    "train.checkpoint_every": _POSITIVE,
    "train.eval_batch_size": _POSITIVE,
    "train.eval_limit": _OPTIONAL_POSITIVE,
    "train.recompute_bn": ((lambda v: 0 <= v <= 1_000_000), "0 (off) or a number of training batches"),
}


#: Command-line flags that size the work, with what fits this project's machines: a seed is a whole run (with
#: ``--seeds`` all of them are trained together in one process), a job a process training one.
FLAG_RANGES: dict[str, tuple[Any, str]] = {
    "--seeds": ((lambda v: 1 <= v <= 64), "1 to 64 seeds"),
    "--jobs": ((lambda v: 1 <= v <= 64), "1 to 64 parallel runs"),
    "--recompute-bn": ((lambda v: 1 <= v <= 1_000_000), "a number of training batches, 1 to 1,000,000"),
}


def check_flag(flag: str, value: Any) -> None:
    """A ``UserError`` when a flag's value is outside :data:`FLAG_RANGES` (``--seeds``: their count)."""
    ok, must = FLAG_RANGES[flag]
    if type(value) is not int or not ok(value):
        raise UserError(f"{flag} {value!r}: must be {must}")


def get_key(cfg: Any, key: str) -> Any:
    """The value of a dotted key."""
    target: Any = cfg
    for part in key.split("."):
        target = getattr(target, part)
    return target


def check_range(key: str, value: Any) -> None:
    """A ``UserError`` when a numeric key's value is NaN/inf or outside what the key accepts (``RANGES``)."""
    items = value if isinstance(value, list) else [value]
    if any(isinstance(v, float) and not math.isfinite(v) for v in items):
        raise UserError(f"config key {key!r} is {value!r}; it must be a finite number")
    if key in RANGES and not RANGES[key][0](value):
        raise UserError(f"config key {key!r} is {value!r}; it must be {RANGES[key][1]}")
