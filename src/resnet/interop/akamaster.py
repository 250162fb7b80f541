"""akamaster/pytorch_resnet_cifar10 weights in this project's layout, exactly.

Their CIFAR ResNets (resnet20/32/44/56/110/1202) are the most used trained CIFAR nets. Files are
``{"state_dict": ..., "best_prec1": ...}`` with DataParallel's ``module.`` prefixes; the head is called
``linear``; option B projections (rarely used) are ``shortcut.0`` / ``shortcut.1``. Their option A
shortcut is a parameter-free lambda::

    F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))

which puts the new zero channels on *both* sides of the existing ones; ours
(:class:`resnet.models.blocks.ZeroPadShortcut`) appends them after. The tensors have the same shapes either
way, so strict loading cannot tell, and a net loaded naively computes another function. The two networks
are the same up to a reordering of the channels of stages 2 and 3:
:func:`to_our_layout` finds that permutation stage by stage and applies it to every tensor that reads or
writes those channels, so that our option-A net computes their function exactly.

They trained on pixels in [0, 1] normalised with ImageNet's mean/std (their ``trainer.py``), which the
converted checkpoint records.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from resnet.errors import UserError

SOURCE = "akamaster"
_BLOCK = re.compile(r"^layer(\d+)\.(\d+)\.")
_BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


def looks_like_akamaster(state: Mapping[str, torch.Tensor]) -> bool:
    """A CIFAR-stem state_dict whose classifier is ``linear`` (their name; ours and torchvision's is ``fc``)."""
    conv1 = state.get("conv1.weight")
    return "linear.weight" in state and "fc.weight" not in state and conv1 is not None and conv1.shape[-1] == 3


def _renamed(state: Mapping[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    if "linear.weight" not in state or "linear.bias" not in state:
        raise UserError(f"{where}: no linear.weight / linear.bias: not akamaster/pytorch_resnet_cifar10 weights")
    out = {}
    for key, value in state.items():
        key = re.sub(r"^linear\.", "fc.", key)
        key = re.sub(r"\.shortcut\.(\d+)\.", r".downsample.\1.", key)
        out[key] = value
    return out


def _blocks(state: Mapping[str, torch.Tensor]) -> list[tuple[int, int]]:
    found = {(int(m.group(1)), int(m.group(2))) for k in state if (m := _BLOCK.match(k))}
    return sorted(found)


def _padded_both_sides(perm: torch.Tensor, out_planes: int) -> torch.Tensor:
    """The permutation after an option-A block that doubles the width.

    Their shortcut's channel ``c`` in ``[p/4, 3p/4)`` carries input channel ``c - p/4``; ours carries input
    channel ``k`` at ``k < p/2``. With ``perm[k]`` the index in their layout of our channel ``k`` before the
    block, our channel ``k`` after it is theirs ``perm[k] + p/4``; our zero channels are their zero channels
    ``[0, p/4)`` and ``[3p/4, p)``, in order.
    """
    quarter = out_planes // 4
    if len(perm) * 2 != out_planes:
        raise UserError(f"an option-A block goes from {len(perm)} to {out_planes} channels; akamaster's doubles them")
    zeros = torch.cat([torch.arange(quarter), torch.arange(3 * quarter, out_planes)])
    return torch.cat([perm + quarter, zeros])


def to_our_layout(state: Mapping[str, torch.Tensor], where: str = "weights") -> tuple[dict[str, torch.Tensor], str]:
    """Their state_dict (prefixes already stripped) in our key names and channel order; and the shortcut option.

    ``perm`` tracks, for the feature map between blocks, which of their channels each of our channels is:
    our tensor = their tensor indexed with ``perm`` along the channel axis. The stem and stage 1 need no
    change (identity); each width-doubling option-A block extends it (:func:`_padded_both_sides`). A block
    then reads its input through ``conv1`` (input channels permuted) and writes through ``conv2``/``bn2``
    (output channels permuted); its inner channels stay as they are. The head reads the last map.
    """
    out = _renamed(state, where)
    conv1 = out.get("conv1.weight")
    if conv1 is None or conv1.ndim != 4 or tuple(conv1.shape[-2:]) != (3, 3):
        shape = "missing" if conv1 is None else "x".join(map(str, conv1.shape[-2:]))
        raise UserError(f"{where}: conv1 is {shape}; akamaster's nets are CIFAR nets with a 3x3 stem")
    projected = any(".downsample." in k for k in out)
    if projected:  # option B: the projections carry the channel order; nothing is padded
        return out, "B"
    perm = torch.arange(out["conv1.weight"].shape[0])
    for stage, block in _blocks(out):
        p = f"layer{stage}.{block}."
        try:
            width = out[p + "conv2.weight"].shape[0]
            out[p + "conv1.weight"] = out[p + "conv1.weight"][:, perm]
        except (KeyError, IndexError) as e:
            raise UserError(f"{where}: block {p[:-1]} is not a basic block of akamaster's nets ({e})") from None
        if width != len(perm):
            perm = _padded_both_sides(perm, width)
        out[p + "conv2.weight"] = out[p + "conv2.weight"][perm]
        for t in _BN_TENSORS:
            if p + f"bn2.{t}" in out:
                out[p + f"bn2.{t}"] = out[p + f"bn2.{t}"][perm]
    if out["fc.weight"].shape[1] != len(perm):
        raise UserError(f"{where}: linear reads {out['fc.weight'].shape[1]} features, the last stage has {len(perm)}")
    out["fc.weight"] = out["fc.weight"][:, perm]
    return {k: v.contiguous() for k, v in out.items()}, "A"
