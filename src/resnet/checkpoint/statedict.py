"""State dicts of other origins: wrapper prefixes, the architecture their shapes describe, readable diffs.

- ``module.`` (DataParallel / DistributedDataParallel) and ``_orig_mod.`` (``torch.compile``) prefixes are
  stripped.
- :func:`infer_architecture` names the net a state_dict belongs to from its tensors alone: the stem's kernel
  (7x7 ImageNet, 3x3 CIFAR), the block type (a ``conv3`` means bottlenecks), the blocks and width per stage
  (each registered family says which of its names have them: Table 1 for ImageNet, three stages of n for
  CIFAR depth 6n+2), the projection shortcuts (where there are
  ``downsample`` tensors: only at stage starts is option B, on every block option C), the classes (``fc``)
  and input channels (``conv1``). Two things shapes cannot tell: a plain net and its option-A twin have
  identical tensors (section 3.3: option A adds no parameters), and the bottleneck's stride placement
  (1x1 or 3x3) changes no shape.
- :class:`StateDictDiff` lists missing, unexpected and wrong-shape keys, folding whole blocks into one
  entry (``layer3.6-22.*``) so that a depth mismatch reads in one line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from resnet.errors import UserError
from resnet.models.arch import Architecture as ModelLayout
from resnet.models.registry import model_info, models_with_layout

WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_BLOCK_KEY = re.compile(r"^layer(\d+)\.(\d+)\.")


def strip_wrapper_prefixes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove DataParallel/DDP (``module.``) and ``torch.compile`` (``_orig_mod.``) prefixes, nested in any order.

    Two keys that become one (``k`` and ``module.k``: two models saved into one dict) are refused: keeping
    either would be a guess, and the wrong one loads without a word.
    """
    out: dict[str, torch.Tensor] = {}
    original: dict[str, str] = {}
    for key, value in state_dict.items():
        bare = key
        stripped = True
        while stripped:
            stripped = False
            for prefix in WRAPPER_PREFIXES:
                if bare.startswith(prefix):
                    bare, stripped = bare[len(prefix) :], True
        if bare in out:
            raise UserError(
                f"the weights hold both {original[bare]!r} and {key!r}, the same tensor with and without a "
                "wrapper prefix (two models saved together?); keep one set of keys and convert again"
            )
        out[bare], original[bare] = value, key
    return out


@dataclass
class Architecture:
    """What a state_dict's shapes say: candidate model names (more than one when ambiguous) and kwargs."""

    names: list[str]
    kwargs: dict[str, object]
    bottleneck: bool
    note: str = ""


def _stage_layout(state_dict: Mapping[str, torch.Tensor]) -> tuple[list[int], set[tuple[int, int]]]:
    """Blocks per stage (``layer1``, ``layer2``, ...) and the blocks that have a projection shortcut."""
    blocks: dict[int, set[int]] = {}
    projected = set()
    for key in state_dict:
        m = _BLOCK_KEY.match(key)
        if m:
            stage, block = int(m.group(1)), int(m.group(2))
            blocks.setdefault(stage, set()).add(block)
            if key.startswith(f"layer{stage}.{block}.downsample."):
                projected.add((stage, block))
    stages = sorted(blocks)
    if stages != list(range(1, len(stages) + 1)) or any(blocks[s] != set(range(len(blocks[s]))) for s in stages):
        raise UserError("the weights' layerN.i blocks are not numbered consecutively; not a ResNet state_dict")
    return [len(blocks[s]) for s in stages], projected


def _layout(state_dict: Mapping[str, torch.Tensor], layers: list[int], projected: bool) -> ModelLayout:
    """The torch-free description of what the tensors fix: stem, block, blocks and width per stage, head."""
    conv1, fc = state_dict["conv1.weight"], state_dict["fc.weight"]
    kernel = tuple(conv1.shape[-2:])
    stems: dict[tuple[int, ...], str] = {(7, 7): "imagenet", (3, 3): "cifar"}
    stem = stems.get(kernel)
    first = [state_dict.get(f"layer{i + 1}.0.conv1.weight") for i in range(len(layers))]
    if stem is None or not layers or any(w is None or w.ndim != 4 for w in first):
        raise UserError(f"conv1 is {kernel[0]}x{kernel[1]} with {layers} blocks per stage: no ResNet of this project")
    block = "bottleneck" if "layer1.0.conv3.weight" in state_dict else "basic"
    widths = tuple(int(w.shape[0]) for w in first if w is not None)  # none is (checked above)
    try:
        return ModelLayout(block, tuple(layers), widths, stem, residual=projected, shortcut="B",
                           num_classes=int(fc.shape[0]), in_channels=int(conv1.shape[1]))  # fmt: skip
    except ValueError as e:
        raise UserError(f"the weights' layers fit no ResNet: {e}") from None


def infer_architecture(state_dict: Mapping[str, torch.Tensor]) -> Architecture:
    """Name the network ``state_dict`` belongs to (see the module docstring); ``UserError`` if it is no ResNet.

    The shapes give a layout; every registered model family is asked which of its names have that layout
    (:func:`resnet.models.registry.models_with_layout`), so weights of a user's family are named too.
    """
    conv1, fc = state_dict.get("conv1.weight"), state_dict.get("fc.weight")
    if conv1 is None or fc is None or conv1.ndim != 4 or fc.ndim != 2:
        raise UserError(
            "the weights have no conv1.weight / fc.weight of a ResNet (torchvision's and this project's names); "
            "they come from another architecture or naming scheme"
        )
    layers, projected = _stage_layout(state_dict)
    layout = _layout(state_dict, layers, bool(projected))
    bottleneck = layout.block == "bottleneck"
    kwargs: dict[str, object] = {"num_classes": int(fc.shape[0])}
    if conv1.shape[1] != 3:
        kwargs["in_channels"] = int(conv1.shape[1])
    found = models_with_layout(layout)
    if projected:  # a plain net has no projections: only residual names remain
        found = [(n, k) for n, k in found if model_info(n).residual]
    if not found:
        what = "ImageNet-style" if layout.stem == "imagenet" else "CIFAR-style"
        raise UserError(
            f"{what} weights with {layers} blocks per stage of widths {list(layout.widths)} match no registered "
            "model (`resnet models` lists them)"
        )
    kwargs.update(found[0][1])
    names = [n for n, _ in found]
    if not projected:
        # Option A and plain nets hold the same tensors: both names stay candidates.
        return Architecture(names, {**kwargs, "shortcut": "A"}, bottleneck)
    all_blocks = {(s + 1, b) for s, n in enumerate(layers) for b in range(n)}
    shortcut = "C" if projected == all_blocks else "B"
    return Architecture(names, {**kwargs, "shortcut": shortcut}, bottleneck)


def kwargs_for(name: str, kwargs: Mapping[str, object]) -> dict[str, object]:
    """``kwargs`` restricted to what ``create_model(name)`` accepts (plain nets take no ``shortcut``)."""
    accepted = model_info(name).kwargs
    return {k: v for k, v in kwargs.items() if k in accepted}


def _group(prefix: str, keys: list[str], universe: Mapping[str, object]) -> list[str]:
    """``keys`` (all under ``prefix``) by their first component: ``prefix + "bn3.*"`` when every key of that child
    in ``universe`` is listed, else the keys themselves."""
    by_child: dict[str, list[str]] = {}
    for key in keys:
        by_child.setdefault(key[len(prefix) :].split(".")[0], []).append(key)
    out = []
    for child, listed in by_child.items():
        total = sum(1 for k in universe if k.startswith(f"{prefix}{child}."))
        out.extend([f"{prefix}{child}.*"] if total > 1 and len(listed) == total else listed)
    return out


def compact_keys(keys: list[str], universe: Mapping[str, object], limit: int = 6) -> str:
    """``keys`` in a short form, ``universe`` being every key of their side: a block whose keys are all listed
    becomes ``layerS.i.*`` (runs of them ``layerS.i-j.*``), a module whose keys are all listed ``...bn3.*``;
    at most ``limit`` entries, then ``(+N more)``."""
    by_block: dict[tuple[str, int], list[str]] = {}
    loose: list[str] = []
    for key in keys:
        m = _BLOCK_KEY.match(key)
        if m:
            by_block.setdefault((f"layer{m.group(1)}", int(m.group(2))), []).append(key)
        else:
            loose.append(key)
    entries = _group("", loose, universe)
    whole: dict[str, list[int]] = {}
    for (stage, index), listed in by_block.items():
        prefix = f"{stage}.{index}."
        total = sum(1 for k in universe if k.startswith(prefix))
        if len(listed) == total and total > 1:
            whole.setdefault(stage, []).append(index)
        else:
            entries.extend(_group(prefix, listed, universe))
    for stage, indices in whole.items():
        indices.sort()
        start = prev = indices[0]
        for i in [*indices[1:], None]:
            if i is not None and i == prev + 1:
                prev = i
                continue
            entries.append(f"{stage}.{start}.*" if start == prev else f"{stage}.{start}-{prev}.*")
            if i is not None:
                start = prev = i
    shown = ", ".join(entries[:limit])
    return shown + (f" (+{len(entries) - limit} more)" if len(entries) > limit else "")


def _differs(given: torch.Tensor | None, expected: torch.Tensor) -> bool:
    return given is not None and given.shape != expected.shape


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(map(str, t.shape)) + "]"


@dataclass
class StateDictDiff:
    """How a state_dict differs from what a model expects."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_shape: list[tuple[str, str, str]] = field(default_factory=list)  # key, file shape, model shape
    expected: Mapping[str, torch.Tensor] = field(default_factory=dict)
    given: Mapping[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def compare(cls, expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> StateDictDiff:
        return cls(
            missing=[k for k in expected if k not in given],
            unexpected=[k for k in given if k not in expected],
            wrong_shape=[(k, _shape(given[k]), _shape(v)) for k, v in expected.items() if _differs(given.get(k), v)],
            expected=expected,
            given=given,
        )

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.wrong_shape)

    def summary(self) -> str:
        """One line: counts and the compacted keys of each kind."""
        parts = []
        if self.missing:
            parts.append(f"missing {len(self.missing)} ({compact_keys(self.missing, self.expected)})")
        if self.unexpected:
            parts.append(f"unexpected {len(self.unexpected)} ({compact_keys(self.unexpected, self.given)})")
        if self.wrong_shape:
            shown = "; ".join(f"{k}: file {a}, model {b}" for k, a, b in self.wrong_shape[:4])
            more = f"; +{len(self.wrong_shape) - 4} more" if len(self.wrong_shape) > 4 else ""
            parts.append(f"wrong shape {len(self.wrong_shape)} ({shown}{more})")
        return "; ".join(parts)
