"""resnet: the reference implementation of *Deep Residual Learning for Image Recognition* (He et al., 2016).

Quick use::

    import resnet
    model = resnet.create_model("resnet56")          # CIFAR-10 ResNet-56, option A
    resnet.count_params(model), resnet.count_macs(model, (3, 32, 32))

The names below load on first use (PEP 562), so that ``import resnet.cli`` does not import torch: the
command line then imports it inside its error handling, and a Ctrl-C during start-up ends with one line.
"""

from __future__ import annotations

import importlib
from typing import Any

from resnet.version import __version__

_LAZY = {
    "ResNet": "resnet.models",
    "create_model": "resnet.models",
    "list_models": "resnet.models",
    "model_info": "resnet.models",
    "count_macs": "resnet.models.complexity",
    "count_params": "resnet.models.complexity",
}

__all__ = ["ResNet", "__version__", "count_macs", "count_params", "create_model", "list_models", "model_info"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'resnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
