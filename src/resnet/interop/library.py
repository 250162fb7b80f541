"""The package as a library, by the ecosystem's conventions: timm's ``create_model``, ``load``, and a Hugging
Face-style folder (``save_pretrained`` / ``from_pretrained``).

No weights are downloaded, ever: bring them (torchvision's, akamaster's, your own runs), convert them once
with ``resnet convert``, and point ``checkpoint_path=`` or :func:`load` at the file. Every model made here
carries ``model.pretrained_cfg`` (a JSON-able dict: model name and keywords, preprocessing, class names,
input size), which :func:`save_pretrained` writes next to the weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from resnet.checkpoint import FORMAT, Checkpoint
from resnet.checkpoint.transfer import transfer_weights
from resnet.data.classes import default_classes
from resnet.errors import UserError
from resnet.interop.convert import default_meta, load_any, load_weights, read_weights, require_safetensors
from resnet.interop.pretrained import (
    CONFIG_FILE,
    PRETRAINED_FORMAT,
    WEIGHTS_FILE,
    checkpoint_dict,
    pretrained_cfg,
    read_config,
)
from resnet.io import check_folder_is_ours, write_output
from resnet.models import create_model as build_model
from resnet.models.features import FeatureExtractor

#: Keywords whose value changes the function but no tensor shape: a checkpoint's own value must not be overridden.
_LAYOUT_KWARGS = ("shortcut", "bottleneck_stride", "in_channels")

NO_DOWNLOADS = (
    "resnet-paper downloads no weights (pretrained=True): bring a weights file (torchvision's .pth, "
    "akamaster's .th, a run of `resnet train`), convert it once with `resnet convert SRC --to W.pt` "
    "(--from akamaster for theirs), then pass checkpoint_path='W.pt' or call resnet.load('W.pt')"
)


def _with_cfg(model: nn.Module, ckpt: Checkpoint) -> nn.Module:
    model.pretrained_cfg = pretrained_cfg(ckpt)  # type: ignore[assignment]
    return model


def load(path: str | Path, *, model: str | None = None, source: str = "auto") -> nn.Module:
    """The eval-mode model of any weights file ``resnet convert`` accepts, or a :func:`save_pretrained` folder.

    ``model`` names the net where the weights cannot (plain vs option A); ``source="akamaster"`` maps that
    repository's CIFAR weights exactly. ``model.pretrained_cfg`` says how to feed it and what it predicts.
    """
    ckpt, _, net = load_any(path, model=model, source=source)
    return _with_cfg(net, ckpt)


def _from_checkpoint(name: str, path: str | Path, kwargs: dict[str, Any]) -> tuple[nn.Module, Checkpoint]:
    where = str(path)
    obj = read_weights(path)
    ours = obj.get("format") == FORMAT
    loaded = load_weights(
        obj,
        where,
        model=None if ours else name,
        bottleneck_stride=None if ours else kwargs.get("bottleneck_stride"),
    )
    ckpt = loaded.checkpoint
    if ckpt.model_name != name:
        raise UserError(f"{where} holds {ckpt.model_name} weights; call create_model({ckpt.model_name!r}, ...)")
    for key in _LAYOUT_KWARGS:
        if key in kwargs and key in ckpt.model_kwargs and kwargs[key] != ckpt.model_kwargs[key]:
            raise UserError(f"{where} was built with {key}={ckpt.model_kwargs[key]!r}; drop {key}={kwargs[key]!r}")
    net = build_model(name, **{**ckpt.model_kwargs, **kwargs})
    transfer_weights(ckpt, net, where)
    classes = int(net.fc.out_features)
    if classes != len(ckpt.classes):  # a fresh head for another task: its classes have no names yet
        ckpt.model_kwargs = {**ckpt.model_kwargs, "num_classes": classes}
        ckpt.classes, ckpt.dataset = default_classes("unknown", classes), "unknown"
    ckpt.state_dict = net.state_dict()
    return net, ckpt


def create_model(
    name: str,
    pretrained: bool = False,
    *,
    checkpoint_path: str | Path | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
    features_only: bool = False,
    out_indices: tuple[int, ...] | list[int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a model by name, timm-style (``resnet.models.create_model`` is the plain builder underneath).

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
        out_indices: with ``features_only``: 0 the stem, 1..K the stages (default: all).
        **kwargs: the model's own keywords: ``shortcut`` (``"A"``, ``"B"``, ``"C"``; residual nets),
            ``bottleneck_stride`` (``"1x1"`` paper, ``"3x3"`` torchvision; ResNet-50/101/152),
            ``zero_init_residual`` (residual nets), ``in_channels``.

    The model is in training mode (as any new ``nn.Module``); ``model.pretrained_cfg`` describes its inputs.
    """
    if pretrained:
        raise UserError(NO_DOWNLOADS)
    if in_chans is not None:
        if kwargs.get("in_channels", in_chans) != in_chans:
            raise UserError(f"in_chans={in_chans} and in_channels={kwargs['in_channels']} disagree; pass one")
        kwargs["in_channels"] = in_chans
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if out_indices is not None and not features_only:
        raise UserError("out_indices selects feature maps: pass features_only=True with it")
    if checkpoint_path is not None:
        net, ckpt = _from_checkpoint(name, checkpoint_path, kwargs)
    else:
        net = build_model(name, **kwargs)
        meta, _ = default_meta(name, {**kwargs, "num_classes": int(net.fc.out_features)})  # resnet20: 10
        ckpt = Checkpoint(model_name=name, model_kwargs=dict(kwargs), state_dict={}, **meta)
    cfg = pretrained_cfg(ckpt)
    if features_only:
        net = FeatureExtractor(net, out_indices)  # type: ignore[arg-type]
    net.pretrained_cfg = cfg  # type: ignore[assignment]
    return net.train()


def save_pretrained(model: nn.Module | Checkpoint, directory: str | Path) -> Path:
    """Write ``directory/config.json`` (the model's description) and ``directory/model.safetensors``.

    ``model``: one made by :func:`create_model`, :func:`load` or :func:`from_pretrained` (it carries
    ``pretrained_cfg``), or a :class:`~resnet.checkpoint.Checkpoint`. Both files are written under the output
    rule (:func:`resnet.io.write_output`): a folder holding files resnet did not write there is refused unless
    inside :func:`resnet.io.replacing`.
    """
    st = require_safetensors()
    if isinstance(model, Checkpoint):
        cfg, state = pretrained_cfg(model), model.state_dict
    else:
        cfg = getattr(model, "pretrained_cfg", None)
        if not isinstance(cfg, dict) or isinstance(model, FeatureExtractor):
            raise UserError("save_pretrained needs a classifier made by resnet.create_model / resnet.load")
        state = model.state_dict()
        cfg = {**cfg, "model_kwargs": {**cfg["model_kwargs"], "num_classes": int(model.fc.out_features)}}
    Checkpoint.from_dict(checkpoint_dict(cfg, state, str(directory)), str(directory))  # readable back?
    out = Path(directory)
    check_folder_is_ours(out, (WEIGHTS_FILE, CONFIG_FILE))  # another tool's folder (its own config.json) is refused
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    data = st.torch.save(tensors, metadata={"format": PRETRAINED_FORMAT})
    write_output(out / WEIGHTS_FILE, data)
    write_output(out / CONFIG_FILE, json.dumps({"format": PRETRAINED_FORMAT, **cfg}, indent=2) + "\n")
    return out


def from_pretrained(directory: str | Path) -> nn.Module:
    """The eval-mode model of a :func:`save_pretrained` folder, with its ``pretrained_cfg``."""
    read_config(directory)  # a clear error for a folder that is not one
    return load(directory)
