"""Weights in and out: read any ResNet weights safely, turn them into our checkpoint, write .pt or .safetensors.

Accepted inputs (``resnet convert``, and ``--checkpoint`` of ``predict`` / ``export``):

- our checkpoints (training runs, converted files; a run directory means its ``checkpoint.pt``);
- torchvision ResNet state_dicts (``.pth``) for resnet18..152, whose bottlenecks carry the stride on the
  3x3 conv (``bottleneck_stride="3x3"``, torchvision's "v1.5");
- bare state_dicts of this project's nets, and ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers;
- any of these with DataParallel/DDP ``module.`` or ``torch.compile`` ``_orig_mod.`` prefixes;
- ``.safetensors`` files (ours carry the checkpoint's metadata in the header; others are bare state_dicts).

Nothing is unpickled beyond tensors and plain containers: ``torch.load(weights_only=True)`` (see
:mod:`resnet.checkpoint`) or safetensors, which holds no code at all. Weights must fit the model exactly
(strict loading); when they do not, the error names the missing, unexpected and wrong-shape keys.

Bare state_dicts carry no preprocessing or class names. ImageNet-stem weights get torchvision's ImageNet
normalisation and (with 1000 classes) the bundled ImageNet names, at 224x224. CIFAR-stem weights get the
usual CIFAR-10 per-channel mean/std and (with 10 classes) the CIFAR-10 names, at 32x32; that is an
assumption, reported in the result's ``notes``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from resnet.checkpoint import FORMAT, atomic_write, load_checkpoint, save_checkpoint
from resnet.data.classes import IMAGENET_MEAN, IMAGENET_STD, default_classes, resolve_classes
from resnet.errors import UserError
from resnet.models import create_model, model_info
from resnet.statedict import StateDictDiff, infer_architecture, kwargs_for, strip_wrapper_prefixes

SAFETENSORS_FORMAT = "resnet-safetensors/1"
#: Per-channel mean / std of the CIFAR-10 training images (pixels in [0, 1]), the common CIFAR convention.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
#: Fields of our checkpoint that describe the model and its inputs (what a converted checkpoint keeps).
META_KEYS = ("model_name", "model_kwargs", "iteration", "preprocessing", "classes", "input_size", "dataset", "config")


def _safetensors() -> Any:
    try:
        import safetensors.torch
    except ImportError:
        raise UserError("safetensors is not installed; pip install 'resnet-paper[export]'") from None
    return safetensors


def read_weights(path: str | Path) -> dict[str, Any]:
    """The dict a weights file holds, read without running code (``.safetensors`` or a torch file)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return load_checkpoint(path)
    st = _safetensors()
    if not path.is_file():
        raise UserError(f"no weights file at {path}")
    try:
        with st.safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            meta = f.metadata() or {}
    except (st.SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0][:160]})") from None
    if meta.get("format") != SAFETENSORS_FORMAT:
        return tensors
    try:
        info = {k: json.loads(meta[k]) for k in META_KEYS if k in meta}
        pre = info["preprocessing"]
        info["preprocessing"] = {
            "kind": pre["kind"],
            **{k: torch.tensor(pre[k], dtype=torch.float32).view(pre[f"{k}_shape"]) for k in ("mean", "std")},
        }
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"{path}: damaged resnet metadata in the safetensors header ({e})") from None
    return {"format": FORMAT, "model": tensors, **info}


def split_weights(obj: dict[str, Any], where: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict with wrapper prefixes stripped, our metadata or ``{}``) of a loaded weights dict."""
    meta: dict[str, Any] = {}
    if obj.get("format") == FORMAT and isinstance(obj.get("model"), dict):
        state, meta = obj["model"], {k: obj[k] for k in META_KEYS if k in obj}
    elif isinstance(obj.get("state_dict"), dict):
        state = obj["state_dict"]
    elif isinstance(obj.get("model"), dict):
        state = obj["model"]
    else:
        state = obj
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad or not state:
        what = f"non-tensor entries such as {bad[0]!r}" if bad else "no tensors"
        raise UserError(f"{where}: not a state_dict ({what}); expected our checkpoint or a ResNet state_dict")
    return strip_wrapper_prefixes(state), meta


def _foreign_meta(name: str, kwargs: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Preprocessing, classes and input size for a state_dict that came without them, and what was assumed."""
    num_classes, channels = int(kwargs.get("num_classes", 1000)), int(kwargs.get("in_channels", 3))
    if model_info(name).family == "imagenet":
        dataset = "imagenet" if num_classes == 1000 else "unknown"
        mean, std, side = IMAGENET_MEAN, IMAGENET_STD, 224
        note = "preprocessing: torchvision's ImageNet mean/std (the weights carry none)"
    else:
        dataset = "cifar10" if num_classes == 10 else "unknown"
        mean, std, side = CIFAR10_MEAN, CIFAR10_STD, 32
        note = "preprocessing: assumed CIFAR-10 per-channel mean/std (the weights carry none)"
    mean_t, std_t = torch.tensor(mean), torch.tensor(std)
    if channels != 3:  # a gray (or other) input: one constant shared by every channel
        mean_t, std_t = mean_t.mean().repeat(channels), std_t.mean().repeat(channels)
    meta = {
        "iteration": None,
        "preprocessing": {"kind": "channel_mean_std", "mean": mean_t.view(-1, 1, 1), "std": std_t.view(-1, 1, 1)},
        "classes": default_classes(dataset, num_classes),
        "input_size": [channels, side, side],
        "dataset": dataset,
    }
    return meta, note


def _choose_model(
    state: dict[str, torch.Tensor], meta: dict[str, Any], model: str | None, bottleneck_stride: str | None, where: str
) -> tuple[str, dict[str, Any]]:
    """Model name and kwargs: the checkpoint's own, else ``model`` / inferred from the state_dict's shapes."""
    if meta.get("model_name"):
        name, kwargs = meta["model_name"], dict(meta.get("model_kwargs") or {})
        if model and model != name:
            raise UserError(f"{where} is a {name} checkpoint; drop --model {model} (or pass --model {name})")
        if bottleneck_stride:
            raise UserError(f"{where} records its own layout; drop --bottleneck-stride")
        return name, kwargs
    arch = infer_architecture(state)
    if model is None:
        if len(arch.names) > 1:
            raise UserError(
                f"{where}: {' and '.join(arch.names)} (option A shortcuts) have identical weights; "
                f"pass --model {arch.names[0]} or --model {arch.names[1]}"
            )
        model = arch.names[0]
    kwargs = dict(arch.kwargs)
    if arch.bottleneck:
        # Shapes cannot tell where the stride sits; torchvision's (3x3) is what foreign weights almost always use.
        kwargs["bottleneck_stride"] = bottleneck_stride or "3x3"
    try:
        return model, kwargs_for(model, kwargs)
    except ValueError as e:
        raise UserError(f"--model: {e}") from None


def with_bn_counters(given: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add the ``num_batches_tracked`` counters older files lack (torchvision's legacy weights, Caffe ports).

    PyTorch's own BN loading accepts their absence; the counter only matters for ``momentum=None``, which
    the models do not use. Filled with 0, as BN does for pre-1.0 state_dicts.
    """
    missing = [
        k
        for k in expected
        if k.endswith(".num_batches_tracked")
        and k not in given
        and k.replace("num_batches_tracked", "running_mean") in given
    ]  # only for BN layers the file has: anything else stays a real difference
    if not missing:
        return given
    return {**given, **{k: torch.zeros((), dtype=torch.long) for k in missing}}


def build_model(ckpt: dict[str, Any], where: str = "checkpoint") -> nn.Module:
    """The eval-mode model of one of our checkpoints, loaded strictly (a readable diff if the weights do not fit)."""
    name, kwargs = ckpt["model_name"], dict(ckpt.get("model_kwargs") or {})
    try:
        model = create_model(name, **kwargs)
    except ValueError as e:
        raise UserError(f"{where}: cannot build {name} ({e})") from None
    ckpt["model"] = with_bn_counters(ckpt["model"], model.state_dict())
    diff = StateDictDiff.compare(model.state_dict(), ckpt["model"])
    if diff:
        args = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        hint = ""
        try:
            arch = infer_architecture(ckpt["model"])
            if name not in arch.names:
                hint = f"; the weights look like {' or '.join(arch.names)}: pass --model {arch.names[0]}"
        except UserError:
            pass
        raise UserError(f"{where}: weights do not fit {name}({args}): {diff.summary()}{hint}")
    model.load_state_dict(ckpt["model"], strict=True)
    return model.eval()


class Loaded(NamedTuple):
    """Weights read by :func:`load_any`: our checkpoint dict, notes on what was assumed, the eval-mode model."""

    checkpoint: dict[str, Any]
    notes: list[str]
    model: nn.Module


def load_any(path: str | Path, *, model: str | None = None, bottleneck_stride: str | None = None) -> Loaded:
    """Any accepted weights file as our checkpoint (in memory), checked by loading it strictly into its model."""
    where = str(path)
    state, meta = split_weights(read_weights(path), where)
    name, kwargs = _choose_model(state, meta, model, bottleneck_stride, where)
    notes: list[str] = []
    if not meta.get("preprocessing"):
        foreign, note = _foreign_meta(name, kwargs)
        meta = {**foreign, **meta}
        notes.append(note)
    ckpt = {**meta, "model": state, "model_name": name, "model_kwargs": kwargs}
    net = build_model(ckpt, where)
    info = model_info(name)
    num_classes = net.fc.out_features
    ckpt["classes"] = resolve_classes(ckpt.get("classes"), ckpt.get("dataset"), num_classes)
    ckpt.setdefault("input_size", [net.conv1.in_channels, *info.input_size[1:]])
    ckpt.setdefault("dataset", "unknown")
    ckpt.setdefault("iteration", None)
    ckpt["model"] = net.state_dict()  # the model's own tensors: its key order and dtype, prefixes gone
    return Loaded(ckpt, notes, net)


def save_safetensors(path: str | Path, ckpt: dict[str, Any]) -> None:
    """Write the weights as safetensors, with the checkpoint's metadata (JSON) in the header, atomically."""
    st = _safetensors()
    pre = ckpt["preprocessing"]
    meta = {k: json.dumps(ckpt.get(k)) for k in META_KEYS if k not in ("preprocessing", "config")}
    if ckpt.get("config") is not None:
        meta["config"] = json.dumps(ckpt["config"])
    meta["preprocessing"] = json.dumps(
        {
            "kind": pre["kind"],
            **{k: pre[k].flatten().tolist() for k in ("mean", "std")},
            **{f"{k}_shape": list(pre[k].shape) for k in ("mean", "std")},
        }
    )
    tensors = {k: v.detach().cpu().contiguous() for k, v in ckpt["model"].items()}
    data = st.torch.save(tensors, metadata={"format": SAFETENSORS_FORMAT, **meta})
    atomic_write(path, lambda f: f.write(data))


def convert_file(
    src: str | Path, out: str | Path, *, model: str | None = None, bottleneck_stride: str | None = None
) -> Loaded:
    """``resnet convert``: read ``src``, check it, write ``out`` (``.safetensors`` or our ``.pt`` checkpoint)."""
    loaded = load_any(src, model=model, bottleneck_stride=bottleneck_stride)
    if Path(out).suffix == ".safetensors":
        save_safetensors(out, loaded.checkpoint)
    else:
        save_checkpoint(out, {k: v for k, v in loaded.checkpoint.items() if k != "format"})
    return loaded
