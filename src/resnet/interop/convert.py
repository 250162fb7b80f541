"""Weights in and out: read any ResNet weights safely, turn them into our checkpoint, write .pt or .safetensors.

Accepted inputs (``resnet convert``, and ``--checkpoint`` of ``predict`` / ``export``):

- our checkpoints (training runs, converted files; a run directory means its ``checkpoint.pt``);
- torchvision ResNet state_dicts (``.pth``) for resnet18..152, whose bottlenecks carry the stride on the
  3x3 conv (``bottleneck_stride="3x3"``, torchvision's "v1.5");
- bare state_dicts of this project's nets, and ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers;
- any of these with DataParallel/DDP ``module.`` or ``torch.compile`` ``_orig_mod.`` prefixes;
- ``.safetensors`` files (ours carry the checkpoint's metadata in the header; others are bare state_dicts);
- with ``source="akamaster"`` (``--from akamaster``): akamaster/pytorch_resnet_cifar10's CIFAR nets, mapped
  exactly into our layout (:mod:`resnet.interop.akamaster`).

Two things the tensors cannot tell are never guessed silently: a plain net and its option-A twin need
``--model``; where option A pads the new channels (ours after the existing ones, akamaster's on both sides)
and where a bottleneck carries its stride (``--bottleneck-stride``, 3x3 assumed) are stated in the notes.

Nothing is unpickled beyond tensors and plain containers: ``torch.load(weights_only=True)`` (see
:mod:`resnet.checkpoint`) or safetensors, which holds no code at all. Weights must fit the model exactly
(strict loading); when they do not, the error names the missing, unexpected and wrong-shape keys.

Bare state_dicts carry no preprocessing or class names (``preprocessing=`` / ``--mean --std`` or
``--preprocessing imagenet|cifar10`` set them for any source). ImageNet-stem weights get torchvision's ImageNet
normalisation and (with 1000 classes) the bundled ImageNet names, at 224x224. CIFAR-stem weights get the
usual CIFAR-10 per-channel mean/std and (with 10 classes) the CIFAR-10 names, at 32x32; that is an
assumption, reported in the result's ``notes``. Each comes from the model's registry entry (its
``preprocessing``, ``dataset`` and ``input_size``; an entry naming no preprocessing takes its dataset's
description's preset), so a user's family states its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from resnet.checkpoint import FORMAT, Checkpoint, load_file
from resnet.checkpoint.statedict import infer_architecture, kwargs_for, strip_wrapper_prefixes
from resnet.data.classes import IMAGENET_MEAN, IMAGENET_STD, default_classes, resolve_classes
from resnet.data.datasets import dataset_preprocessing
from resnet.errors import UserError
from resnet.interop import akamaster
from resnet.interop.pretrained import WEIGHTS_FILE, checkpoint_dict, is_pretrained_dir, metadata_of, read_config
from resnet.interop.stats import PRESETS, Stats, stats_entry
from resnet.io import open_input, refuse_overwriting, write_output
from resnet.metadata import load_json_field
from resnet.models import model_info

SAFETENSORS_FORMAT = "resnet-safetensors/1"
#: Fields of our checkpoint that describe the model and its inputs (what a converted checkpoint keeps).
#: Where foreign weights come from (``--from``): ``auto`` reads the layout from the keys and shapes.
SOURCES = ("auto", "torchvision", akamaster.SOURCE)
META_KEYS = ("model_name", "model_kwargs", "iteration", "preprocessing", "classes", "input_size", "dataset", "config")


def require_safetensors() -> Any:
    try:
        import safetensors.torch
    except ImportError:
        raise UserError("safetensors is not installed; pip install 'resnet-paper[export]'") from None
    return safetensors


def read_weights(path: str | Path) -> dict[str, Any]:
    """The dict a weights file holds, read without running code (``.safetensors``, a torch file, a model folder)."""
    path = Path(path)
    if is_pretrained_dir(path):  # a save_pretrained folder: config.json + model.safetensors
        return checkpoint_dict(read_config(path), read_weights(path / WEIGHTS_FILE), str(path))
    if path.suffix != ".safetensors":
        if Path(path).is_dir():
            path = Path(path) / "checkpoint.pt"
        return load_file(path)
    st = require_safetensors()
    if not path.is_file():
        raise UserError(f"no weights file at {path}")
    with open_input(path):  # a regular file, checked on a descriptor: a FIFO or device never reaches safe_open,
        pass  # which takes a name (it maps the file) and bounds the header it reads itself
    try:
        with st.safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            meta = f.metadata() or {}
    except (st.SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0][:160]})") from None
    if meta.get("format") != SAFETENSORS_FORMAT:
        return tensors
    return {"format": FORMAT, **_header_checkpoint(meta, tensors, f"{path}: safetensors header")}


def _header_checkpoint(meta: dict[str, str], tensors: dict[str, torch.Tensor], where: str) -> dict[str, Any]:
    """Our checkpoint's fields from a safetensors header: the description under ``metadata`` (earlier files:
    one JSON value per field, migrated), the iteration and the recipe."""
    fields = {k: load_json_field(v, f"{where}: {k}") for k, v in meta.items() if k in (*META_KEYS, "metadata")}
    desc = fields.pop("metadata", None)
    if desc is None:  # written before the one description: its fields side by side, and no resize
        desc = {k: fields.pop(k) for k in list(fields) if k not in ("iteration", "config")}
    ckpt = Checkpoint.from_metadata(metadata_of(desc, where), tensors)
    extra = {k: fields[k] for k in ("iteration", "config") if fields.get(k) is not None}
    return {**ckpt.to_dict(), **extra}


def bare_state_dict(obj: dict[str, Any], where: str) -> dict[str, torch.Tensor]:
    """The state_dict of a foreign weights dict (``{"state_dict": ...}`` / ``{"model": ...}`` wrappers unwrapped,
    wrapper prefixes stripped)."""
    if isinstance(obj.get("state_dict"), dict):
        state = obj["state_dict"]
    elif isinstance(obj.get("model"), dict):
        state = obj["model"]
    else:
        state = obj
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad or not state:
        what = f"non-tensor entries such as {bad[0]!r}" if bad else "no tensors"
        raise UserError(f"{where}: not a state_dict ({what}); expected our checkpoint or a ResNet state_dict")
    return strip_wrapper_prefixes(state)


def default_meta(name: str, kwargs: dict[str, Any], stats: Stats | None = None) -> tuple[dict[str, Any], str]:
    """Preprocessing, classes and input size for a state_dict that came without them, and what was assumed.

    All of it is the model's entry's own description (its ``preprocessing`` preset, ``dataset`` and native
    ``input_size``), whatever family it belongs to; an entry that names no preprocessing gets the preset its
    dataset's description names (CIFAR-10's where neither names one).
    """
    info = model_info(name)
    num_classes, channels = int(kwargs.get("num_classes", info.num_classes)), int(kwargs.get("in_channels", 3))
    dataset = info.dataset if num_classes == info.num_classes else "unknown"
    preset = info.preprocessing
    if preset is None:  # the inputs are the entry's dataset's, whatever head the weights have
        preset = dataset_preprocessing(info.dataset) or "cifar10"
    if isinstance(preset, str) and preset not in PRESETS:
        raise UserError(f"{name}: its entry names preprocessing {preset!r}; presets: {', '.join(PRESETS)}")
    default = PRESETS[preset] if isinstance(preset, str) else preset
    what = f"the {preset}" if isinstance(preset, str) else f"{name}'s"
    note = f"preprocessing: assumed {what} per-channel mean/std (the weights carry none; --preprocessing sets it)"
    if stats is not None:
        note = f"preprocessing: mean {list(stats[0])}, std {list(stats[1])} (as given)"
    meta = {
        "iteration": None,
        "preprocessing": stats_entry(stats or default, channels, name),
        "classes": default_classes(dataset, num_classes),
        "input_size": [channels, *info.input_size[1:]],
        "dataset": dataset,
    }
    return meta, note


def _check_flags(name: str, model: str | None, bottleneck_stride: str | None, where: str) -> None:
    """Our checkpoints record their model: flags that would change it are refused, not silently ignored."""
    if model and model != name:
        raise UserError(f"{where} is a {name} checkpoint; drop --model {model} (or pass --model {name})")
    if bottleneck_stride:
        raise UserError(f"{where} records its own layout; drop --bottleneck-stride")


def _choose_model(
    state: dict[str, torch.Tensor], model: str | None, bottleneck_stride: str | None, source: str, where: str
) -> tuple[str, dict[str, Any], list[str]]:
    """Model name and kwargs of a bare state_dict (``model``, or inferred from its shapes), and what was assumed."""
    arch = infer_architecture(state)
    notes = []
    if source == akamaster.SOURCE:  # their nets are all residual
        model = model or arch.names[0]
        if not model.startswith("resnet"):
            raise UserError(f"--from akamaster: their nets are residual; drop --model {model}")
    if model is None:
        if len(arch.names) > 1:
            raise UserError(
                f"{where}: {' and '.join(arch.names)} (option A shortcuts) have identical weights; "
                f"pass --model {arch.names[0]} or --model {arch.names[1]}"
            )
        model = arch.names[0]
    kwargs = dict(arch.kwargs)
    if kwargs.get("shortcut") == "A" and model.startswith("resnet") and source == "auto":
        notes.append(
            "option A: zero channels assumed appended after the existing ones (this project's layout); shapes "
            "cannot tell: weights of akamaster/pytorch_resnet_cifar10 (zeros on both sides) need --from akamaster"
        )
    if arch.bottleneck:
        # Shapes cannot tell where the stride sits; torchvision's (3x3) is what foreign weights almost always use.
        kwargs["bottleneck_stride"] = bottleneck_stride or "3x3"
        if bottleneck_stride is None and source != "torchvision":
            notes.append(
                "bottleneck stride: assumed on the 3x3 conv (torchvision's v1.5); shapes cannot tell: "
                "pass --bottleneck-stride 1x1 for weights with the paper's layout (stride on the first 1x1)"
            )
    try:
        return model, kwargs_for(model, kwargs), notes
    except ValueError as e:
        raise UserError(f"--model: {e}") from None


def _foreign(
    obj: dict[str, Any], where: str, model: str | None, bottleneck_stride: str | None, source: str, stats: Stats | None
) -> tuple[Checkpoint, list[str]]:
    """Our checkpoint (in memory) of a foreign weights file, and the notes on what was assumed or changed."""
    state = bare_state_dict(obj, where)
    notes: list[str] = []
    if source == akamaster.SOURCE:
        state, option = akamaster.to_our_layout(state, where)
        notes.append(
            "akamaster/pytorch_resnet_cifar10: linear -> fc"
            + (", option A zero channels (both sides) mapped exactly by permuting stages 2-3" if option == "A" else "")
        )
        stats = stats or (IMAGENET_MEAN, IMAGENET_STD)
    elif akamaster.looks_like_akamaster(state):
        raise UserError(
            f"{where}: a CIFAR net with a 'linear' classifier (akamaster/pytorch_resnet_cifar10's layout?); "
            "its option A pads differently from ours, which shapes cannot show: convert it with `resnet convert "
            f"{where} --to {Path(where).stem}.pt --from akamaster` and use that file (in Python: "
            "resnet.load(..., source='akamaster') or resnet.create_model(..., source='akamaster'))"
        )
    name, kwargs, assumed = _choose_model(state, model, bottleneck_stride, source, where)
    meta, note = default_meta(name, kwargs, stats)
    if source == akamaster.SOURCE and stats == (IMAGENET_MEAN, IMAGENET_STD):
        note = "preprocessing: ImageNet mean/std on [0, 1] pixels (akamaster's training transform)"
    best = obj.get("best_prec1")
    if isinstance(best, int | float | torch.Tensor) and torch.tensor(best).numel() == 1:
        notes.append(f"the file records best_prec1 = {float(best):.2f}")
    return Checkpoint(model_name=name, model_kwargs=kwargs, state_dict=state, **meta), [*notes, *assumed, note]


class Loaded(NamedTuple):
    """Weights read by :func:`load_any`: our checkpoint, notes on what was assumed, the eval-mode model."""

    checkpoint: Checkpoint
    notes: list[str]
    model: nn.Module


def _with_defaults(obj: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A checkpoint of ours that names its model but not its inputs (hand-made, or by an early version) gets
    the defaults of a foreign state_dict of that model, and a note saying so."""
    name, kwargs = obj.get("model_name"), obj.get("model_kwargs")
    kwargs = {} if kwargs is None else kwargs
    if obj.get("preprocessing") is not None or not isinstance(name, str) or not isinstance(kwargs, dict):
        return obj, []
    try:
        meta, note = default_meta(name, kwargs)
    except (ValueError, TypeError):
        return obj, []  # an unknown model: Checkpoint.from_dict / build_model say what is wrong
    return {**meta, **{k: v for k, v in obj.items() if v is not None}}, [note]


def load_any(
    path: str | Path,
    *,
    model: str | None = None,
    bottleneck_stride: str | None = None,
    source: str = "auto",
    preprocessing: Stats | None = None,
) -> Loaded:
    """Any accepted weights file as our checkpoint (in memory), checked by loading it strictly into its model.

    ``source``: one of :data:`SOURCES` (``"akamaster"`` maps that repository's layout exactly);
    ``preprocessing``: per-channel ``(mean, std)`` of [0, 1] pixels replacing what the file records or implies.
    """
    if source not in SOURCES:
        raise UserError(f"unknown --from {source!r}; choose one of {', '.join(SOURCES)}")
    return load_weights(
        read_weights(path),
        str(path),
        model=model,
        bottleneck_stride=bottleneck_stride,
        source=source,
        preprocessing=preprocessing,
    )


def load_weights(
    obj: dict[str, Any],
    where: str,
    *,
    model: str | None = None,
    bottleneck_stride: str | None = None,
    source: str = "auto",
    preprocessing: Stats | None = None,
) -> Loaded:
    """:func:`load_any` of a dict already read by :func:`read_weights` (``where`` names it in errors)."""
    notes: list[str] = []
    if obj.get("format") == FORMAT:
        if source != "auto":
            raise UserError(f"{where} is a checkpoint of this project; drop --from {source}")
        obj, assumed = _with_defaults(obj)
        notes += assumed
        ckpt = Checkpoint.from_dict(obj, where)
        _check_flags(ckpt.model_name, model, bottleneck_stride, where)
        ckpt.state_dict = strip_wrapper_prefixes(ckpt.state_dict)
        ckpt.training, ckpt.extra = None, {}  # the weights and their description; not the run's train state
        if preprocessing is not None:
            ckpt.preprocessing = stats_entry(preprocessing, ckpt.input_size[0], where)
            notes.append(f"preprocessing: mean {list(preprocessing[0])}, std {list(preprocessing[1])} (as given)")
    else:
        ckpt, more = _foreign(obj, where, model, bottleneck_stride, source, preprocessing)
        notes += more
    net = ckpt.build_model(where)
    fc = getattr(net, "fc", None)  # a fresh net's classifier (build_model checked the names against it)
    outputs = fc.out_features if isinstance(fc, nn.Linear) else len(ckpt.classes)
    ckpt.classes = resolve_classes(ckpt.classes, ckpt.dataset, outputs)
    ckpt.state_dict = net.state_dict()  # the model's own tensors: its key order and dtype, prefixes gone
    return Loaded(ckpt, notes, net)


def save_safetensors(path: str | Path, ckpt: Checkpoint) -> None:
    """Write the weights as safetensors, with the checkpoint's metadata (JSON) in the header, atomically."""
    st = require_safetensors()
    meta = {"metadata": json.dumps(ckpt.metadata(str(path)).to_json()), "iteration": json.dumps(ckpt.iteration)}
    if ckpt.config is not None:
        meta["config"] = json.dumps(ckpt.config)
    tensors = {k: v.detach().cpu().contiguous() for k, v in ckpt.state_dict.items()}
    data = st.torch.save(tensors, metadata={"format": SAFETENSORS_FORMAT, **meta})
    write_output(path, data)


def convert_file(
    src: str | Path,
    out: str | Path,
    *,
    model: str | None = None,
    bottleneck_stride: str | None = None,
    source: str = "auto",
    preprocessing: Stats | None = None,
) -> Loaded:
    """``resnet convert``: read ``src``, check it, write ``out`` (``.safetensors`` or our ``.pt`` checkpoint).

    ``convert_file("resnet20-12fca82f.th", "resnet20.pt", source="akamaster")`` converts akamaster's weights.
    """
    refuse_overwriting(out, Path(src) / "checkpoint.pt" if Path(src).is_dir() else src, flag="--to")
    loaded = load_any(src, model=model, bottleneck_stride=bottleneck_stride, source=source, preprocessing=preprocessing)
    if Path(out).suffix == ".safetensors":
        save_safetensors(out, loaded.checkpoint)
    else:
        loaded.checkpoint.save(out)
    return loaded
