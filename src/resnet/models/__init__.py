"""The paper's networks: architectures as data, blocks, the stem/stages/head skeleton, and the registry.

Names are imported on first use (PEP 562), so ``import resnet.models.arch`` and the registry load without
torch: ``resnet models`` lists the zoo with its costs in a fraction of a second.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Architecture": "resnet.models.arch",
    "BasicBlock": "resnet.models.blocks",
    "Bottleneck": "resnet.models.blocks",
    "ModelInfo": "resnet.models.registry",
    "ResNet": "resnet.models.network",
    "ZeroPadShortcut": "resnet.models.blocks",
    "build_network": "resnet.models.registry",
    "cifar_plain": "resnet.models.cifar",
    "cifar_resnet": "resnet.models.cifar",
    "imagenet_resnet": "resnet.models.imagenet",
    "list_models": "resnet.models.registry",
    "model_architecture": "resnet.models.registry",
    "model_info": "resnet.models.registry",
    "response_layer_names": "resnet.models.responses",
}

__all__ = [
    "Architecture",
    "BasicBlock",
    "Bottleneck",
    "ModelInfo",
    "ResNet",
    "ZeroPadShortcut",
    "build_network",
    "cifar_plain",
    "cifar_resnet",
    "imagenet_resnet",
    "list_models",
    "model_architecture",
    "model_info",
    "response_layer_names",
]

if TYPE_CHECKING:
    from resnet.models.arch import Architecture
    from resnet.models.blocks import BasicBlock, Bottleneck, ZeroPadShortcut
    from resnet.models.cifar import cifar_plain, cifar_resnet
    from resnet.models.imagenet import imagenet_resnet
    from resnet.models.network import ResNet
    from resnet.models.registry import ModelInfo, build_network, list_models, model_architecture, model_info
    from resnet.models.responses import response_layer_names


#: Submodules reachable as attributes (``resnet.models.cifar``), as when the package imported them eagerly.
_SUBMODULES = frozenset(
    {"arch", "blocks", "catalog", "cifar", "complexity", "cost", "features", "imagenet", "network", "registry"}
    | {"responses", "zoo"}
)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"resnet.models.{name}")
    if name == "create_model":  # renamed: one create_model remains, the library's (resnet.create_model)
        raise AttributeError(
            "resnet.models.create_model is now resnet.models.build_network (the bare network); "
            "resnet.create_model is timm's signature"
        )
    if name not in _EXPORTS:
        raise AttributeError(f"module 'resnet.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
