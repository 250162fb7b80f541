"""resnet: the reference implementation of *Deep Residual Learning for Image Recognition* (He et al., 2016).

Quick use::

    import resnet
    model = resnet.create_model("resnet56")          # CIFAR-10 ResNet-56, option A
    resnet.count_params(model), resnet.count_macs(model, (3, 32, 32))
"""

from resnet.models import ResNet, create_model, list_models, model_info
from resnet.models.complexity import count_macs, count_params
from resnet.version import __version__

__all__ = ["ResNet", "__version__", "count_macs", "count_params", "create_model", "list_models", "model_info"]
