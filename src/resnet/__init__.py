"""resnet: the reference implementation of *Deep Residual Learning for Image Recognition* (He et al., 2016).

Quick use::

    import resnet
    model = resnet.create_model("resnet56")          # CIFAR-10 ResNet-56, option A
    resnet.count_params(model), resnet.count_macs(model, (3, 32, 32))
"""

from __future__ import annotations

import importlib
from typing import Any

from resnet.version import __version__

__all__ = ["ResNet", "__version__", "count_macs", "count_params", "create_model", "list_models", "model_info"]

#: Where the public names live. They are imported on first use, so ``import resnet`` (and with it every
#: ``resnet`` command) starts without importing torch: a Ctrl-C during that import is then the command's to
#: handle ("interrupted", status 130), not a traceback from the package's import.
_LAZY = {
    "ResNet": "resnet.models",
    "create_model": "resnet.models",
    "list_models": "resnet.models",
    "model_info": "resnet.models",
    "count_macs": "resnet.models.complexity",
    "count_params": "resnet.models.complexity",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'resnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
