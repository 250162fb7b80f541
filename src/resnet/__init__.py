"""resnet: the reference implementation of *Deep Residual Learning for Image Recognition* (He et al., 2016).

Quick use::

    import resnet
    model = resnet.create_model("resnet56")          # CIFAR-10 ResNet-56, option A
    resnet.count_params(model), resnet.count_macs(model, (3, 32, 32))
    model = resnet.load("resnet20.pt")               # any weights `resnet convert` accepts, eval mode
    model = resnet.create_model("resnet20", checkpoint_path="resnet20.pt", num_classes=5)   # fine-tuning
    backbone = resnet.create_model("resnet50", features_only=True, out_indices=(2, 3, 4))
    model.save_pretrained("my-model/")               # config.json + model.safetensors + README.md (card)
    model = resnet.from_pretrained("my-model/")      # or a Hugging Face Hub id, with the [hub] extra
    report = resnet.evaluate("resnet20.pt", "cifar-10-batches-py")   # a frozen EvalReport: report.top1_error

``resnet.create_model`` is timm's signature (``pretrained``, ``checkpoint_path``, ``num_classes``,
``in_chans``, ``features_only``, ``out_indices``, ``drop_rate``, ``global_pool``) and returns a
:class:`PretrainedResNet` (timm's model methods, Hugging Face's ``save_pretrained``/``from_pretrained``/
``push_to_hub``); underneath it ``resnet.models.build_network`` builds the bare network.
No weights are ever downloaded.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from resnet.version import __version__

# Quiet by default: the package logs (warnings about skipped files, progress of experiments) and leaves it
# to the program to show them; the `resnet` command does (resnet.logs). Without this handler Python's
# last-resort handler would print the warnings to stderr of every program that uses the library.
logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time the names load on first use (below)
    from resnet.checkpoint import Checkpoint, load_checkpoint
    from resnet.eval.evaluate import EvalReport
    from resnet.interop.convert import convert_file
    from resnet.interop.evaluate import evaluate
    from resnet.interop.hub import PretrainedResNet
    from resnet.interop.library import create_model, from_pretrained, load, save_pretrained
    from resnet.models import ResNet, list_models, model_info
    from resnet.models.complexity import count_macs, count_params
    from resnet.models.features import FeatureExtractor
    from resnet.models.pretrained_cfg import PretrainedCfg

__all__ = [
    "Checkpoint",
    "EvalReport",
    "FeatureExtractor",
    "PretrainedCfg",
    "PretrainedResNet",
    "ResNet",
    "__version__",
    "convert_file",
    "count_macs",
    "count_params",
    "create_model",
    "evaluate",
    "from_pretrained",
    "list_models",
    "load",
    "load_checkpoint",
    "model_info",
    "save_pretrained",
]

#: Where the public names live. They are imported on first use, so ``import resnet`` (and with it every
#: ``resnet`` command) starts without importing torch: a Ctrl-C during that import is then the command's to
#: handle ("interrupted", status 130), not a traceback from the package's import.
_LAZY = {
    "Checkpoint": "resnet.checkpoint",
    "load_checkpoint": "resnet.checkpoint",
    "convert_file": "resnet.interop.convert",
    "EvalReport": "resnet.eval.evaluate",
    "evaluate": "resnet.interop.evaluate",
    "PretrainedResNet": "resnet.interop.hub",
    "create_model": "resnet.interop.library",
    "from_pretrained": "resnet.interop.library",
    "load": "resnet.interop.library",
    "save_pretrained": "resnet.interop.library",
    "ResNet": "resnet.models",
    "list_models": "resnet.models",
    "model_info": "resnet.models",
    "count_macs": "resnet.models.complexity",
    "count_params": "resnet.models.complexity",
    "FeatureExtractor": "resnet.models.features",
    "PretrainedCfg": "resnet.models.pretrained_cfg",
}


#: Subpackages reachable as attributes (``resnet.models.cifar_resnet(20)`` after a bare ``import resnet``).
_SUBPACKAGES = frozenset({"analysis", "checkpoint", "cli", "data", "eval", "experiments", "interop", "models", "train"})


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"resnet.{name}")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'resnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__) | {n for n in globals() if n.startswith("__")})
