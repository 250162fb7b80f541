"""The package as a library, by the ecosystem's conventions: timm's ``create_model``, ``load``, and a Hugging
Face-style folder (``save_pretrained`` / ``from_pretrained``).

No weights are downloaded, ever: bring them (torchvision's, akamaster's, your own runs), convert them once
with ``resnet convert``, and point ``checkpoint_path=`` or :func:`load` at the file. Every model made here
carries ``model.pretrained_cfg`` (a JSON-able dict: model name and keywords, preprocessing, class names,
input size), which :func:`save_pretrained` writes next to the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, overload

from torch import nn

from resnet.checkpoint import FORMAT, Checkpoint
from resnet.checkpoint.transfer import transfer_weights
from resnet.data.classes import default_classes
from resnet.errors import UserError
from resnet.interop.convert import default_meta, load_any, load_weights, read_weights
from resnet.interop.hub import PretrainedResNet, as_pretrained, checkpoint_of, write_folder
from resnet.interop.pretrained import read_config
from resnet.models import build_network
from resnet.models.features import FeatureExtractor
from resnet.models.network import ResNet, check_drop_rate, check_global_pool

#: Keywords whose value changes the function but no tensor shape: a checkpoint's own value must not be overridden.
_LAYOUT_KWARGS = ("shortcut", "bottleneck_stride", "in_channels")

NO_DOWNLOADS = (
    "resnet-paper downloads no weights (pretrained=True): bring a weights file (torchvision's .pth, "
    "akamaster's .th, a run of `resnet train`), convert it once with `resnet convert SRC --to W.pt` "
    "(--from akamaster for theirs), then pass checkpoint_path='W.pt' or call resnet.load('W.pt')"
)


def load(path: str | Path, *, model: str | None = None, source: str = "auto") -> PretrainedResNet:
    """The eval-mode model of any weights file ``resnet convert`` accepts, or a :func:`save_pretrained` folder.

    ``model`` names the net where the weights cannot (plain vs option A); ``source="akamaster"`` maps that
    repository's CIFAR weights exactly. ``model.pretrained_cfg`` says how to feed it and what it predicts.
    """
    ckpt, _, net = load_any(path, model=model, source=source)
    return as_pretrained(net, ckpt)


def _build(name: str, **kwargs: Any) -> ResNet:
    """The plain builder's net, which every model this module returns is (a registered family builds one)."""
    net = build_network(name, **kwargs)
    if not isinstance(net, ResNet):
        raise TypeError(f"{name} builds a {type(net).__name__}; resnet.create_model needs a resnet.models.ResNet")
    return net


def _from_checkpoint(name: str, path: str | Path, kwargs: dict[str, Any], source: str) -> tuple[ResNet, Checkpoint]:
    where = str(path)
    obj = read_weights(path)
    ours = obj.get("format") == FORMAT
    loaded = load_weights(
        obj,
        where,
        model=None if ours else name,
        bottleneck_stride=None if ours else kwargs.get("bottleneck_stride"),
        source=source,
    )
    ckpt = loaded.checkpoint
    if ckpt.model_name != name:
        raise UserError(f"{where} holds {ckpt.model_name} weights; call create_model({ckpt.model_name!r}, ...)")
    for key in _LAYOUT_KWARGS:
        if key in kwargs and key in ckpt.model_kwargs and kwargs[key] != ckpt.model_kwargs[key]:
            raise UserError(f"{where} was built with {key}={ckpt.model_kwargs[key]!r}; drop {key}={kwargs[key]!r}")
    net = _build(name, **{**ckpt.model_kwargs, **kwargs})
    transfer_weights(ckpt, net, where)
    classes = net.fc.out_features
    if classes != len(ckpt.classes):  # a fresh head for another task: its classes have no names yet
        ckpt.model_kwargs = {**ckpt.model_kwargs, "num_classes": classes}
        ckpt.classes, ckpt.dataset = default_classes("unknown", classes), "unknown"
    ckpt.state_dict = net.state_dict()
    return net, ckpt


@overload
def create_model(
    name: str,
    pretrained: bool = ...,
    *,
    checkpoint_path: str | Path | None = ...,
    num_classes: int | None = ...,
    in_chans: int | None = ...,
    features_only: Literal[False] = ...,
    out_indices: None = ...,
    drop_rate: float = ...,
    global_pool: str = ...,
    source: str = ...,
    **kwargs: Any,
) -> PretrainedResNet: ...


@overload
def create_model(
    name: str,
    pretrained: bool = ...,
    *,
    checkpoint_path: str | Path | None = ...,
    num_classes: int | None = ...,
    in_chans: int | None = ...,
    features_only: Literal[True],
    out_indices: int | tuple[int, ...] | list[int] | None = ...,
    drop_rate: float = ...,
    global_pool: str = ...,
    source: str = ...,
    **kwargs: Any,
) -> FeatureExtractor: ...


@overload
def create_model(
    name: str,
    pretrained: bool = ...,
    *,
    checkpoint_path: str | Path | None = ...,
    num_classes: int | None = ...,
    in_chans: int | None = ...,
    features_only: bool = ...,
    out_indices: int | tuple[int, ...] | list[int] | None = ...,
    drop_rate: float = ...,
    global_pool: str = ...,
    source: str = ...,
    **kwargs: Any,
) -> PretrainedResNet | FeatureExtractor: ...


def create_model(
    name: str,
    pretrained: bool = False,
    *,
    checkpoint_path: str | Path | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
    features_only: bool = False,
    out_indices: int | tuple[int, ...] | list[int] | None = None,
    drop_rate: float = 0.0,
    global_pool: str = "avg",
    source: str = "auto",
    **kwargs: Any,
) -> PretrainedResNet | FeatureExtractor:
    """Build a model by name, timm-style (``resnet.models.build_network`` builds the bare network underneath).

    Args:
        name: ``resnet18/34/50/101/152``, ``resnet20/32/44/56/110/1202``, their ``plain`` twins, any CIFAR
            depth 6n+2 (``resnet38``); ``resnet.list_models()`` lists them.
        pretrained: only ``False``; no weights are downloaded (the error says how to bring them).
        checkpoint_path: weights to start from: any file ``resnet convert`` accepts (our checkpoints and run
            directories, torchvision .pth, .safetensors). With a different ``num_classes`` the classifier is
            replaced by a fresh one (fine-tuning); everything else must fit exactly.
        num_classes: outputs of the classifier (default: the checkpoint's, else 10 on CIFAR, 1000 on ImageNet).
        in_chans: timm's name of ``in_channels`` (input image channels, default 3).
        features_only: return a backbone whose forward gives feature maps (:mod:`resnet.models.features`).
        out_indices: with ``features_only``: 0 the stem, 1..K the stages (default: all; an int n: the last n).
        drop_rate: dropout before the classifier (timm's keyword); 0, the paper's, by default.
        global_pool: the head's pooling; only ``"avg"``, the paper's global average pool.
        source: origin of ``checkpoint_path``'s weights when foreign: ``"akamaster"`` maps
            akamaster/pytorch_resnet_cifar10's ``.th`` files exactly (``resnet convert --from akamaster``).
        **kwargs: the model's own keywords: ``shortcut`` (``"A"``, ``"B"``, ``"C"``; residual nets),
            ``bottleneck_stride`` (``"1x1"`` paper, ``"3x3"`` torchvision; ResNet-50/101/152),
            ``zero_init_residual`` (residual nets), ``in_channels``.

    The model is in training mode (as any new ``nn.Module``); ``model.pretrained_cfg`` describes its inputs.
    It is a :class:`~resnet.interop.hub.PretrainedResNet`: timm's model methods and Hugging Face's
    ``save_pretrained``/``push_to_hub``.
    """
    if pretrained:
        raise UserError(NO_DOWNLOADS)
    try:
        check_global_pool(global_pool)
        drop_rate = check_drop_rate(drop_rate)
    except ValueError as e:
        raise UserError(str(e)) from None
    if in_chans is not None:
        if kwargs.get("in_channels", in_chans) != in_chans:
            raise UserError(f"in_chans={in_chans} and in_channels={kwargs['in_channels']} disagree; pass one")
        kwargs["in_channels"] = in_chans
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if out_indices is not None and not features_only:
        raise UserError("out_indices selects feature maps: pass features_only=True with it")
    if checkpoint_path is not None:
        net, ckpt = _from_checkpoint(name, checkpoint_path, kwargs, source)
    else:
        if source != "auto":
            raise UserError(f"source={source!r} names the origin of checkpoint_path's weights; pass checkpoint_path")
        net = _build(name, **kwargs)
        meta, _ = default_meta(name, {**kwargs, "num_classes": net.fc.out_features})  # resnet20: 10
        ckpt = Checkpoint(model_name=name, model_kwargs=dict(kwargs), state_dict={}, **meta)
    model = as_pretrained(net, ckpt)
    model.drop_rate = drop_rate
    if features_only:
        backbone = FeatureExtractor(model, out_indices)
        backbone.pretrained_cfg = model.pretrained_cfg
        return backbone.train()
    return model.train()


def save_pretrained(
    model: nn.Module | Checkpoint, directory: str | Path, *, metrics: dict[str, Any] | None = None
) -> Path:
    """Write ``directory/config.json`` (the model's description), ``model.safetensors`` and the model card
    ``README.md`` (``metrics``: measured results to list on it); ``model.save_pretrained(directory)`` as a function.

    ``model``: one made by :func:`create_model`, :func:`load` or :func:`from_pretrained` (it carries
    ``pretrained_cfg``), or a :class:`~resnet.checkpoint.Checkpoint`. Every file is written under the output
    rule (:func:`resnet.io.write_output`): a folder holding files resnet did not write there is refused unless
    inside :func:`resnet.io.replacing` (``--force``).
    """
    if isinstance(model, Checkpoint):
        ckpt = model
    elif isinstance(model, PretrainedResNet):
        ckpt = model.checkpoint()
    else:
        cfg = getattr(model, "pretrained_cfg", None)
        if not isinstance(cfg, dict) or isinstance(model, FeatureExtractor):
            raise UserError("save_pretrained needs a classifier made by resnet.create_model / resnet.load")
        ckpt = checkpoint_of(model, cfg)
    return write_folder(directory, ckpt, metrics=metrics)


def from_pretrained(directory: str | Path, **hub_kwargs: Any) -> PretrainedResNet:
    """The eval-mode model of a :func:`save_pretrained` folder (or, with the ``hub`` extra, a Hugging Face Hub
    id), with its ``pretrained_cfg``; ``PretrainedResNet.from_pretrained`` as a function."""
    if Path(directory).exists():
        read_config(directory)  # a clear error for a folder that is not one
    return PretrainedResNet.from_pretrained(directory, **hub_kwargs)
