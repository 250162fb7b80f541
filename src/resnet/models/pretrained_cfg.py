"""The type of ``model.pretrained_cfg``: what a model made by ``resnet.create_model`` / ``resnet.load`` says
about itself (and what ``config.json`` holds), so that a user's ``model.pretrained_cfg["mean"]`` type-checks.

timm's flat keys (what ``timm.data.resolve_model_data_config`` reads) sit beside this project's description
(:class:`resnet.metadata.ModelMetadata` in its JSON form). Only the type lives here, below the model classes
that carry it; :func:`resnet.interop.pretrained.pretrained_cfg` builds the value.
"""

from __future__ import annotations

from typing import Any, TypedDict


class PreprocessingCfg(TypedDict):
    """``x = (pixels / 255 - mean) / std``; ``mean`` flat, of shape ``mean_shape`` (per channel or a mean image)."""

    kind: str
    mean: list[float]
    mean_shape: list[int]
    std: list[float]
    std_shape: list[int]


class ResizeCfg(TypedDict):
    """Shorter side resized to ``shorter_side``, then the ``crop`` (height, width) taken from the centre."""

    shorter_side: int
    crop: list[int]
    interpolation: str
    crop_mode: str


class PretrainedCfg(TypedDict):
    """``model.pretrained_cfg``: the model's description (first block) and timm's flat keys (second)."""

    model_name: str
    model_kwargs: dict[str, Any]
    classes: list[str]
    input_size: tuple[int, int, int]
    preprocessing: PreprocessingCfg
    resize: ResizeCfg
    dataset: str

    architecture: str
    num_classes: int
    fixed_input_size: bool
    interpolation: str
    crop_pct: float
    crop_mode: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    first_conv: str
    classifier: str
    label_names: list[str]
