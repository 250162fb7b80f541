"""resnet: the reference implementation of *Deep Residual Learning for Image Recognition* (He et al., 2016).

Quick use::

    import resnet
    model = resnet.create_model("resnet56")          # CIFAR-10 ResNet-56, option A
    resnet.count_params(model), resnet.count_macs(model, (3, 32, 32))
    model = resnet.load("resnet20.pt")               # any weights `resnet convert` accepts, eval mode
    model = resnet.create_model("resnet20", checkpoint_path="resnet20.pt", num_classes=5)   # fine-tuning
    backbone = resnet.create_model("resnet50", features_only=True, out_indices=(2, 3, 4))
    resnet.save_pretrained(model, "my-model/")       # config.json + model.safetensors
    model = resnet.from_pretrained("my-model/")

``resnet.create_model`` is timm's signature (``pretrained``, ``checkpoint_path``, ``num_classes``,
``in_chans``, ``features_only``, ``out_indices``); ``resnet.models.create_model`` is the plain builder.
No weights are ever downloaded.
"""

from resnet.checkpoint import Checkpoint, load_checkpoint
from resnet.interop.convert import convert_file
from resnet.interop.library import create_model, from_pretrained, load, save_pretrained
from resnet.models import ResNet, list_models, model_info
from resnet.models.complexity import count_macs, count_params
from resnet.models.features import FeatureExtractor
from resnet.version import __version__

__all__ = [
    "Checkpoint",
    "FeatureExtractor",
    "ResNet",
    "__version__",
    "convert_file",
    "count_macs",
    "count_params",
    "create_model",
    "from_pretrained",
    "list_models",
    "load",
    "load_checkpoint",
    "model_info",
    "save_pretrained",
]
