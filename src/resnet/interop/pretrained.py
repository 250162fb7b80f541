"""The Hugging Face-style model folder: ``config.json`` (the model's description) + ``model.safetensors``.

Written by ``resnet.save_pretrained``; read by ``resnet.from_pretrained``, ``resnet.load`` and every command
that takes weights (``convert``, ``predict``, ``export``, ``eval``). ``config.json`` is the model's
:class:`~resnet.metadata.ModelMetadata` (model name and keywords, class names, preprocessing, input size,
resize and crop) in timm's flat ``pretrained_cfg`` form with this project's fields beside it; the same dict
is ``model.pretrained_cfg`` in Python, so ``timm.data.resolve_model_data_config(model)`` reproduces our
preprocessing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from resnet.checkpoint import FORMAT, Checkpoint
from resnet.checkpoint.typed import resize_for
from resnet.errors import UserError
from resnet.io import open_input
from resnet.metadata import MAX_JSON_BYTES, ModelMetadata, load_json_field

PRETRAINED_FORMAT = "resnet-pretrained/1"
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


def is_pretrained_dir(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / CONFIG_FILE).is_file()


def pretrained_cfg(ckpt: Checkpoint) -> dict[str, Any]:
    """The JSON-able description of a checkpoint's model and inputs (``model.pretrained_cfg``, config.json):
    timm's flat keys (``input_size``, ``mean``, ``std``, ``interpolation``, ``crop_pct``, ...) and ours."""
    return ckpt.metadata().timm_cfg()


def metadata_of(cfg: Any, where: str) -> ModelMetadata:
    """The validated description in a :func:`pretrained_cfg` dict (or an older ``config.json``: no resize)."""
    return ModelMetadata.from_json(cfg, where, resize_for)


def checkpoint_dict(cfg: dict[str, Any], state: dict[str, torch.Tensor], where: str) -> dict[str, Any]:
    """A :func:`pretrained_cfg` dict and weights in our checkpoint's on-disk layout (validated by the reader)."""
    return {**Checkpoint.from_metadata(metadata_of(cfg, where), state).to_dict(), "format": FORMAT}


def config_json(meta: ModelMetadata) -> str:
    """The text of ``config.json`` for ``meta``."""
    return json.dumps({"format": PRETRAINED_FORMAT, **meta.timm_cfg()}, indent=2) + "\n"


def read_config(root: str | Path) -> dict[str, Any]:
    """``root/config.json``, checked to be ours; ``UserError`` in one line otherwise."""
    root = Path(root)
    if not (root / CONFIG_FILE).is_file() or not (root / WEIGHTS_FILE).is_file():
        raise UserError(f"{root}: expected {CONFIG_FILE} and {WEIGHTS_FILE} (written by resnet.save_pretrained)")
    try:
        with open_input(root / CONFIG_FILE) as f:  # a regular file: a FIFO swapped in is refused, never waited on
            data = f.read(MAX_JSON_BYTES + 1)  # a larger file is refused by the reader, unread
    except OSError as e:
        raise UserError(f"{root / CONFIG_FILE}: not readable ({e.strerror})") from None
    cfg = load_json_field(data, str(root / CONFIG_FILE))
    if not isinstance(cfg, dict) or cfg.get("format") != PRETRAINED_FORMAT:
        raise UserError(f"{root / CONFIG_FILE}: not a resnet-paper model folder (format {PRETRAINED_FORMAT!r})")
    return cfg
