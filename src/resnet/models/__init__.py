"""The paper's networks: blocks, the stem/stages/head skeleton, CIFAR and ImageNet nets, and the registry."""

from resnet.models import cifar, imagenet  # noqa: F401  (registers the models)
from resnet.models.blocks import BasicBlock, Bottleneck, ZeroPadShortcut
from resnet.models.cifar import cifar_plain, cifar_resnet
from resnet.models.imagenet import imagenet_resnet
from resnet.models.network import ResNet
from resnet.models.registry import ModelInfo, create_model, list_models, model_info
from resnet.models.responses import response_layer_names

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ModelInfo",
    "ResNet",
    "ZeroPadShortcut",
    "cifar_plain",
    "cifar_resnet",
    "create_model",
    "imagenet_resnet",
    "list_models",
    "model_info",
    "response_layer_names",
]
