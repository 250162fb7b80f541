"""The Hugging Face-style model folder: ``config.json`` (the model's description) + ``model.safetensors``.

Written by ``resnet.save_pretrained``; read by ``resnet.from_pretrained``, ``resnet.load`` and every command
that takes weights (``convert``, ``predict``, ``export``, ``eval``). ``config.json`` holds what our
checkpoint's metadata holds, as JSON: model name and keywords, preprocessing (kind, mean and std with their
shapes), class names, input size and dataset; the same dict is ``model.pretrained_cfg`` in Python.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resnet.checkpoint import FORMAT, Checkpoint
from resnet.errors import UserError

PRETRAINED_FORMAT = "resnet-pretrained/1"
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
_FIELDS = ("model_name", "model_kwargs", "classes", "input_size", "dataset")


def is_pretrained_dir(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / CONFIG_FILE).is_file()


def _short(t: torch.Tensor) -> list[float]:
    """float32 values as the shortest decimals that read back to the same float32 (0.485, not 0.48500001...)."""
    return [float(str(np.float32(v))) for v in t.detach().cpu().float().flatten().tolist()]


def pretrained_cfg(ckpt: Checkpoint) -> dict[str, Any]:
    """The JSON-able description of a checkpoint's model and inputs (``model.pretrained_cfg``, config.json)."""
    pre = ckpt.preprocessing
    return {
        "model_name": ckpt.model_name,
        "model_kwargs": dict(ckpt.model_kwargs),
        "preprocessing": {
            "kind": pre["kind"],
            **{k: _short(pre[k]) for k in ("mean", "std")},
            **{f"{k}_shape": list(pre[k].shape) for k in ("mean", "std")},
        },
        "classes": list(ckpt.classes),
        "input_size": list(ckpt.input_size),
        "dataset": ckpt.dataset,
    }


def checkpoint_dict(cfg: dict[str, Any], state: dict[str, torch.Tensor], where: str) -> dict[str, Any]:
    """A :func:`pretrained_cfg` dict and weights in our checkpoint's on-disk layout (validated by the reader)."""
    try:
        pre = cfg["preprocessing"]
        tensors = {k: torch.tensor(pre[k], dtype=torch.float32).view(pre[f"{k}_shape"]) for k in ("mean", "std")}
        return {
            **{k: cfg[k] for k in _FIELDS},
            "format": FORMAT,
            "model": state,
            "preprocessing": {"kind": pre["kind"], **tensors},
        }
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"{where}: damaged model description ({type(e).__name__}: {e})") from None


def read_config(root: str | Path) -> dict[str, Any]:
    """``root/config.json``, checked to be ours; ``UserError`` in one line otherwise."""
    root = Path(root)
    if not (root / CONFIG_FILE).is_file() or not (root / WEIGHTS_FILE).is_file():
        raise UserError(f"{root}: expected {CONFIG_FILE} and {WEIGHTS_FILE} (written by resnet.save_pretrained)")
    try:
        cfg = json.loads((root / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{root / CONFIG_FILE}: not readable JSON ({e})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != PRETRAINED_FORMAT:
        raise UserError(f"{root / CONFIG_FILE}: not a resnet-paper model folder (format {PRETRAINED_FORMAT!r})")
    return cfg
