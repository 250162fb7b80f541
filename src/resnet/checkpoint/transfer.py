"""Weights of one checkpoint into a model built for another task: everything but a head that does not fit.

Fine-tuning (``create_model(name, checkpoint_path=..., num_classes=...)`` and the recipe key
``model.init_from``) keeps every tensor of the stem and stages, strictly, and gives the model a fresh
classifier when the class count differs. Anything else that does not fit (another depth, shortcut option or
input channels) is an error naming the keys, never a partial load.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from resnet.checkpoint.statedict import StateDictDiff
from resnet.checkpoint.typed import Checkpoint, check_weights, load_checkpoint, with_bn_counters
from resnet.data.preprocess import Normalizer
from resnet.errors import UserError

HEAD_KEYS = ("fc.weight", "fc.bias")


def transfer_weights(ckpt: Checkpoint, model: nn.Module, where: str = "checkpoint") -> str:
    """Load ``ckpt``'s weights into ``model`` (built with its own ``num_classes``); a line saying what happened.

    The head is taken when its shape fits, else ``model`` keeps its freshly initialised ``fc``.
    """
    check_weights(ckpt.state_dict, where)  # refused even where a fresh classifier would replace the bad tensor
    own = model.state_dict()
    state = with_bn_counters(ckpt.state_dict, own)
    new_head = any(k in state and k in own and state[k].shape != own[k].shape for k in HEAD_KEYS)
    if new_head and not _is_classifier(state, own["fc.weight"].shape[1]):
        shapes = ", ".join(f"{k} {list(state[k].shape)}" for k in HEAD_KEYS if k in state)
        raise UserError(
            f"{where}: damaged classifier ({shapes or 'missing'}): a classifier over "
            f"{own['fc.weight'].shape[1]} features has a [classes, {own['fc.weight'].shape[1]}] weight and a "
            "[classes] bias; convert the weights again"
        )
    if new_head:
        state = {k: v for k, v in state.items() if k not in HEAD_KEYS}
        own_body = {k: v for k, v in own.items() if k not in HEAD_KEYS}
    else:
        own_body = own
    diff = StateDictDiff.compare(own_body, state)
    if diff:
        raise UserError(f"{where}: the {ckpt.model_name} weights do not fit this model: {diff.summary()}")
    model.load_state_dict(state, strict=not new_head)
    if new_head:
        old, new = ckpt.state_dict["fc.weight"].shape[0], own["fc.weight"].shape[0]
        return f"weights of {where} ({ckpt.model_name}); new classifier: {old} -> {new} classes"
    return f"weights of {where} ({ckpt.model_name}), classifier included"


def _is_classifier(state: dict[str, torch.Tensor], features: int) -> bool:
    """Whether ``state`` holds an fc layer over ``features`` inputs (of any class count): what may be replaced."""
    weight, bias = state.get("fc.weight"), state.get("fc.bias")
    return (
        weight is not None
        and bias is not None
        and weight.ndim == 2
        and weight.shape[1] == features
        and tuple(bias.shape) == (weight.shape[0],)
    )


def init_from(path: str | Path, model: nn.Module, model_name: str) -> str:
    """The recipe key ``model.init_from``: start a run from converted (or another run's) weights.

    ``path`` is one of our checkpoints (``resnet convert`` output or a run directory); its model must be
    ``model_name``. Returns the line that says what was loaded.
    """
    ckpt = _read(path)
    if ckpt.model_name != model_name:
        raise UserError(
            f"model.init_from: {path} holds {ckpt.model_name} weights but the recipe trains {model_name}; "
            f"set model.name={ckpt.model_name}"
        )
    with torch.no_grad():
        return transfer_weights(ckpt, model, str(path))


def _read(path: str | Path) -> Checkpoint:
    try:
        return load_checkpoint(path)
    except UserError as e:
        raise UserError(f"model.init_from: {e}") from None


def init_normalizer(path: str | Path, input_size: tuple[int, ...] | list[int]) -> Normalizer | None:
    """The preprocessing the ``model.init_from`` weights were trained with, if it applies to this data.

    Fine-tuned weights see inputs normalised as in their training (timm and torchvision do the same); a
    per-pixel mean image only applies at its own resolution, otherwise the data's own constants are used.
    """
    norm = _read(path).normalizer()
    per_channel = norm.mean.shape[-1] == 1
    if norm.mean.shape[0] != input_size[0] or not (per_channel or tuple(norm.mean.shape[-2:]) == tuple(input_size[1:])):
        return None
    return norm
