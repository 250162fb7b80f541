"""What travels with weights: one typed, validated description, read and written the same way everywhere.

Checkpoints, ``config.json``, safetensors headers, ONNX ``metadata_props`` and TorchScript's extra file carry
it (model, classes, preprocessing, input size, resize and crop); :func:`resnet.interop.pretrained.timm_cfg`
is timm's flat ``pretrained_cfg`` of it. Older forms are migrated on read; torch is imported only to convert tensors.
"""

from __future__ import annotations

import dataclasses
import math
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from resnet.errors import UserError
from resnet.safe_json import load_json

KINDS = ("pixel_mean", "channel_mean_std")
#: How our pipeline resizes (torch's antialiased bilinear, which Pillow's BILINEAR matches within a grey level).
INTERPOLATIONS = ("bilinear",)
CROP_MODES = ("center",)
#: Bounds on what a description may hold: ImageNet-21k has 21,841 classes, the longest of its names 200 chars.
MAX_CLASSES = 1_000_000
MAX_NAME_CHARS = 1_000
MAX_SIDE = 65_536
MAX_CHANNELS = 4_096
#: JSON of one description: a million class names of ~60 bytes, and never nested deeper than a recipe.
MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_JSON_DEPTH = 32
#: Smallest std: the estimator floors a constant channel's at 1e-6 (data/preprocess.py); 1e-30 would turn
#: every input into values that overflow float32 in the first convolution.
MIN_STD = 1e-7
#: Model keywords with their type (``create_model`` checks names and choices; ranges are the budget's).
_INT_KWARGS = {"num_classes": MAX_CLASSES, "in_channels": MAX_CHANNELS}
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
#: The ONNX / TorchScript keys of the form written before this schema.
LEGACY_ONNX_KEYS = ("resnet.model_name", "resnet.input_size", "resnet.preprocessing", "resnet.classes")
ONNX_KEY = "resnet.metadata"


def _fail(where: str, key: str, must: str) -> UserError:  # noqa: D103
    return UserError(f"{where}: damaged model description: {key!r} {must}")


def _whole(v: Any, lo: int, hi: int) -> bool:
    return type(v) is int and lo <= v <= hi


def _shape_of(nested: Any, where: str, key: str) -> tuple[tuple[int, ...], list[float]]:
    """Shape and flat values of a rectangular nested list of numbers (the legacy ``tolist()`` form)."""
    if not isinstance(nested, list):
        if type(nested) in (int, float):
            return (), [float(nested)]
        raise _fail(where, key, "must be numbers")
    if not nested:
        raise _fail(where, key, "must not be empty")
    parts = [_shape_of(v, where, key) for v in nested]
    if len({s for s, _ in parts}) != 1:
        raise _fail(where, key, "must be a rectangular array")
    return (len(nested), *parts[0][0]), [x for _, flat in parts for x in flat]


@dataclass(frozen=True)
class Preprocessing:
    """``x = (pixels / 255 - mean) / std``; ``mean`` is per channel ``(C, 1, 1)`` or a mean image ``(C, H, W)``."""

    kind: str
    mean: tuple[float, ...]
    mean_shape: tuple[int, ...]
    std: tuple[float, ...]
    std_shape: tuple[int, ...]

    def check(self, channels: int, where: str) -> Preprocessing:
        """Itself, or a ``UserError`` naming the first field that cannot normalise ``channels``-channel input."""
        if self.kind not in KINDS:
            raise _fail(where, "preprocessing.kind", f"must be one of {', '.join(KINDS)}")
        for key, values, shape in (("mean", self.mean, self.mean_shape), ("std", self.std, self.std_shape)):
            if len(shape) != 3 or not all(_whole(s, 1, MAX_SIDE) for s in shape):
                raise _fail(where, f"preprocessing.{key}", "must have a [channels, height, width] shape")
            if math.prod(shape) != len(values):
                raise _fail(where, f"preprocessing.{key}", f"holds {len(values)} values for the shape {list(shape)}")
            if shape[0] != channels:
                raise _fail(where, f"preprocessing.{key}", f"has {shape[0]} channel(s) but the model reads {channels}")
            if not all(type(v) in (int, float) and math.isfinite(v) for v in values):
                raise _fail(where, f"preprocessing.{key}", "must be finite numbers")
        if self.std_shape[1:] != (1, 1) or (self.kind == "channel_mean_std" and self.mean_shape[1:] != (1, 1)):
            raise _fail(where, "preprocessing", "must hold one mean and std per channel (or a mean image)")
        if min(self.std) < MIN_STD:
            raise _fail(where, "preprocessing.std", f"must be at least {MIN_STD:g} (got {min(self.std):g})")
        return self

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Preprocessing:
        """The ``{"kind", "mean", "std", "mean_shape", "std_shape"}`` dict; without shapes (the legacy ONNX
        form) the shape is the nesting of the lists; a ``scale`` other than 1/255 is refused."""
        if not isinstance(obj, Mapping):
            raise _fail(where, "preprocessing", "must be a dict")
        if "scale" in obj and not (type(obj["scale"]) is float and math.isclose(obj["scale"], 1 / 255)):
            raise _fail(where, "preprocessing.scale", "must be 1/255 (pixels scaled to [0, 1])")
        values: dict[str, tuple[float, ...]] = {}
        shapes: dict[str, tuple[int, ...]] = {}
        for key in ("mean", "std"):
            shape, flat = _shape_of(obj.get(key), where, f"preprocessing.{key}")
            given = obj.get(f"{key}_shape")
            if given is None and len(shape) == 1:  # a flat list: one value per channel
                shape = (shape[0], 1, 1)
            if given is not None:
                if not isinstance(given, list) or not all(_whole(s, 1, MAX_SIDE) for s in given):
                    raise _fail(where, f"preprocessing.{key}_shape", "must be a list of sizes")
                shape = tuple(given)
            values[key], shapes[key] = tuple(flat), tuple(shape)
        kind = obj.get("kind")
        if not isinstance(kind, str):
            raise _fail(where, "preprocessing.kind", "must be a string")
        return cls(kind, values["mean"], shapes["mean"], values["std"], shapes["std"])

    def to_json(self) -> dict[str, Any]:
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        return {**out, "mean": [_short(v) for v in self.mean], "std": [_short(v) for v in self.std]}

    @classmethod
    def from_state(cls, state: Any, where: str) -> Preprocessing:
        """From a checkpoint's ``{"kind", "mean": tensor, "std": tensor}`` (floating tensors only)."""
        import torch

        if not isinstance(state, Mapping) or not isinstance(state.get("kind"), str):
            raise _fail(where, "preprocessing", "must be a dict with a kind")
        values: dict[str, tuple[float, ...]] = {}
        shapes: dict[str, tuple[int, ...]] = {}
        for key in ("mean", "std"):
            t = state.get(key)
            if not isinstance(t, torch.Tensor) or not t.is_floating_point():
                raise _fail(where, f"preprocessing.{key}", "must be a floating-point tensor")
            if t.numel() > MAX_CHANNELS * MAX_SIDE:
                raise _fail(where, f"preprocessing.{key}", f"holds {t.numel():,} values, more than a mean image")
            values[key] = tuple(float(v) for v in t.detach().cpu().double().flatten().tolist())
            shapes[key] = tuple(int(s) for s in t.shape)
        return cls(state["kind"], values["mean"], shapes["mean"], values["std"], shapes["std"])

    def state(self) -> dict[str, Any]:
        """The checkpoint form: float32 tensors of the recorded shapes."""
        import torch

        return {
            "kind": self.kind,
            "mean": torch.tensor(self.mean, dtype=torch.float32).view(self.mean_shape),
            "std": torch.tensor(self.std, dtype=torch.float32).view(self.std_shape),
        }

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """One mean and std per channel (a mean image averaged over its pixels: timm has no mean image)."""
        c = self.mean_shape[0]
        per = len(self.mean) // c
        means = tuple(_short(sum(self.mean[i * per : (i + 1) * per]) / per) for i in range(c))
        return means, tuple(_short(v) for v in self.std)


def _f32(v: float) -> float:
    return struct.unpack("f", struct.pack("f", float(v)))[0]


def _short(v: float) -> float:
    """A float32 value as the shortest decimal that reads back to the same float32 (0.485, not 0.4850000143)."""
    f32 = _f32(v)
    return next((float(t) for d in range(6, 10) if _f32(float(t := f"{f32:.{d}g}")) == f32), f32)


@dataclass(frozen=True)
class Resize:
    """Shorter side resized to ``shorter_side`` (aspect kept, ``interpolation``), then the centre ``crop``."""

    shorter_side: int
    crop: tuple[int, int]
    interpolation: str = "bilinear"
    crop_mode: str = "center"

    def check(self, input_size: Sequence[int], where: str) -> Resize:
        if not _whole(self.shorter_side, 1, MAX_SIDE):
            raise _fail(where, "resize.shorter_side", f"must be a whole number in 1..{MAX_SIDE}")
        if tuple(self.crop) != tuple(input_size[1:]):
            raise _fail(where, "resize.crop", f"must be the input size {list(input_size[1:])}")
        if self.shorter_side < min(self.crop):
            raise _fail(where, "resize.shorter_side", "must be at least the crop")
        if self.interpolation not in INTERPOLATIONS or self.crop_mode not in CROP_MODES:
            raise _fail(where, "resize", f"must be {INTERPOLATIONS[0]} with a {CROP_MODES[0]} crop")
        return self

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Resize:
        crop = obj.get("crop") if isinstance(obj, Mapping) else None
        if not isinstance(crop, list) or len(crop) != 2 or not all(_whole(s, 1, MAX_SIDE) for s in crop):
            raise _fail(where, "resize.crop", "must be [height, width]")
        # The legacy ONNX key also said "filter"; this project has only ever resized bilinearly.
        interp = obj.get("interpolation", obj.get("filter", "bilinear"))
        return cls(obj.get("shorter_side"), (crop[0], crop[1]), interp, obj.get("crop_mode", "center"))

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "crop": list(self.crop)}

    def crop_pct(self) -> float:
        """timm's ``crop_pct``: ``floor(crop / crop_pct)`` is exactly ``shorter_side`` (timm floors that quotient)."""
        side = min(self.crop)
        pct = side / self.shorter_side
        while math.floor(side / pct) < self.shorter_side:  # 224 / (224 / 256) may land just below 256
            pct = math.nextafter(pct, 0.0)
        return pct


#: How the family of a net decides its resize when a description written before the schema has none.
DefaultResize = Callable[[str, tuple[int, int, int]], Resize]


@dataclass(frozen=True)
class ModelMetadata:
    """The model, its classes and how to feed it: what every weights file and export of this project carries.

    Made by the ``from_*`` readers, which validate (:meth:`check`); code that builds one directly calls
    :meth:`check` with the name of what it describes.
    """

    model_name: str
    model_kwargs: dict[str, Any]
    classes: tuple[str, ...]
    input_size: tuple[int, int, int]
    preprocessing: Preprocessing
    resize: Resize
    dataset: str = "unknown"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # e.g. the ONNX file's recipe

    def check(self, where: str) -> ModelMetadata:
        """Itself, or a ``UserError`` naming the first field that is wrong."""
        if not isinstance(self.model_name, str) or not _MODEL_NAME.match(self.model_name):
            raise _fail(where, "model_name", "must be a model name such as resnet20")
        check_model_kwargs(self.model_kwargs, where)
        size = self.input_size
        ok = isinstance(size, tuple) and len(size) == 3 and _whole(size[0], 1, MAX_CHANNELS)
        if not ok or not all(_whole(s, 1, MAX_SIDE) for s in size[1:]):
            raise _fail(where, "input_size", "must be [channels, height, width]")
        if "in_channels" in self.model_kwargs and self.model_kwargs["in_channels"] != size[0]:
            raise _fail(
                where, "input_size", f"has {size[0]} channels but the model reads {self.model_kwargs['in_channels']}"
            )
        check_classes(self.classes, where)
        want = self.model_kwargs.get("num_classes")
        if want is not None and want != len(self.classes):
            raise _fail(where, "classes", f"names {len(self.classes)} classes but the head has {want} outputs")
        self.preprocessing.check(size[0], where)
        self.resize.check(size, where)
        if not isinstance(self.dataset, str) or len(self.dataset) > MAX_NAME_CHARS:
            raise _fail(where, "dataset", "must be a name")
        return self

    def check_outputs(self, outputs: int, where: str) -> None:
        """The class list names each output of the head exactly once (a shorter or longer list mislabels)."""
        if outputs != len(self.classes):
            named = len(self.classes)
            raise UserError(f"{where}: the model has {outputs} outputs but its description names {named} classes")

    # -- the canonical JSON form: config.json, the safetensors header, ONNX, TorchScript ---------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "model_kwargs": dict(self.model_kwargs),
            "classes": list(self.classes),
            "input_size": list(self.input_size),
            "preprocessing": self.preprocessing.to_json(),
            "resize": self.resize.to_json(),
            "dataset": self.dataset,
        }

    @classmethod
    def from_json(cls, obj: Any, where: str, default_resize: DefaultResize | None = None) -> ModelMetadata:
        """Validate the JSON form; a description without ``resize`` (written before it was recorded) gets
        ``default_resize(model_name, input_size)``."""
        if not isinstance(obj, Mapping):
            raise _fail(where, "description", "must be a JSON object")
        name, size = obj.get("model_name"), obj.get("input_size")
        if not isinstance(size, list | tuple) or len(size) != 3 or not all(_whole(s, 1, MAX_SIDE) for s in size):
            raise _fail(where, "input_size", "must be [channels, height, width]")
        kwargs = obj.get("model_kwargs") or {}
        check_model_kwargs(kwargs, where)
        if "resize" in obj:
            resize = Resize.from_json(obj["resize"], where)
        elif default_resize is not None and isinstance(name, str):
            resize = default_resize(name, (size[0], size[1], size[2]))
        else:
            raise _fail(where, "resize", "is missing")
        if not isinstance(name, str):
            raise _fail(where, "model_name", "must be a model name such as resnet20")
        return cls(
            model_name=name,
            model_kwargs=dict(kwargs),
            classes=tuple(check_classes(obj.get("classes"), where)),
            input_size=(size[0], size[1], size[2]),
            preprocessing=Preprocessing.from_json(obj.get("preprocessing"), where),
            resize=resize,
            dataset=obj.get("dataset", "unknown"),
        ).check(where)

    # -- ONNX metadata_props and the TorchScript extra file ---------------------------------------------------------

    def onnx_props(self, human_resize: Mapping[str, Any] | None = None) -> dict[str, str]:
        """``metadata_props``: the description under one key; ``human_resize`` (how predict resizes, in words
        and numbers) and the recipe, if any, beside it."""
        import json

        props = {ONNX_KEY: json.dumps(self.to_json())}
        if human_resize is not None:
            props["resnet.resize"] = json.dumps(dict(human_resize))
        if self.extra.get("recipe") is not None:
            props["resnet.recipe"] = json.dumps(self.extra["recipe"])
        return props

    @classmethod
    def from_onnx_props(
        cls, props: Mapping[str, str], where: str, default_resize: DefaultResize | None = None
    ) -> ModelMetadata:
        """The description in an ONNX file's ``metadata_props`` (or TorchScript's ``resnet.json``), either form."""
        if ONNX_KEY in props:
            obj = load_json_field(props[ONNX_KEY], f"{where}: {ONNX_KEY}")
        else:
            missing = [k for k in LEGACY_ONNX_KEYS if k not in props]
            if missing:
                raise UserError(
                    f"{where}: not written by `resnet export` (no {missing[0]} in its metadata); re-export it"
                )
            obj = {k.removeprefix("resnet."): load_json_field(props[k], f"{where}: {k}") for k in LEGACY_ONNX_KEYS[1:]}
            obj["model_name"], obj["dataset"] = props["resnet.model_name"], props.get("resnet.dataset", "unknown")
            if "resnet.resize" in props:
                obj["resize"] = load_json_field(props["resnet.resize"], f"{where}: resnet.resize")
        meta = cls.from_json(obj, where, default_resize)
        if "resnet.recipe" in props:
            recipe = load_json_field(props["resnet.recipe"], f"{where}: resnet.recipe")
            if not isinstance(recipe, dict):
                raise _fail(where, "resnet.recipe", "must be a JSON object")
            meta.extra["recipe"] = recipe
        return meta


def load_json_field(text: str | bytes, where: str) -> Any:
    """A JSON metadata field, bounded in size and depth (one line when it is not)."""
    return load_json(text, where, MAX_JSON_DEPTH, max_bytes=MAX_JSON_BYTES, allow_nan=False)


def check_classes(classes: Any, where: str) -> list[str]:
    """A list of 1..MAX_CLASSES names (strings of at most MAX_NAME_CHARS)."""
    if not isinstance(classes, list | tuple) or not classes:
        raise _fail(where, "classes", "must be a non-empty list of class names")
    if len(classes) > MAX_CLASSES:
        raise _fail(where, "classes", f"names {len(classes):,} classes, more than {MAX_CLASSES:,}")
    if not all(isinstance(c, str) and len(c) <= MAX_NAME_CHARS for c in classes):
        raise _fail(where, "classes", f"must be strings of at most {MAX_NAME_CHARS} characters")
    return list(classes)


def check_model_kwargs(kwargs: Any, where: str) -> dict[str, Any]:
    """Model keywords of plain types (whole numbers in range, true/false, names)."""
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise _fail(where, "model_kwargs", "must be a dict")
    for key, value in kwargs.items():
        if key in _INT_KWARGS:
            if not _whole(value, 1, _INT_KWARGS[key]):
                raise _fail(where, f"model_kwargs.{key}", f"must be a whole number in 1..{_INT_KWARGS[key]:,}")
        elif key == "zero_init_residual":
            if not isinstance(value, bool):
                raise _fail(where, f"model_kwargs.{key}", "must be true or false")
        elif key in ("shortcut", "bottleneck_stride") and not (value is None or isinstance(value, str)):
            raise _fail(where, f"model_kwargs.{key}", "must be a name or null")
        elif not _family_scalar(value):  # shortcut, bottleneck_stride, or a family's own keyword (create_model checks)
            raise _fail(where, f"model_kwargs.{key}", "must be a name, a finite number, true/false or null")
    return dict(kwargs)


def _family_scalar(v: Any) -> bool:
    text, finite = isinstance(v, str) and len(v) <= MAX_NAME_CHARS, isinstance(v, float) and math.isfinite(v)
    return v is None or isinstance(v, bool) or text or (isinstance(v, int) and abs(v) <= 2**53) or finite
